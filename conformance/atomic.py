"""Atomic file writes: readers see the old file or the new one, never half of one.

The bytes go to a temporary file in the same directory, which is then renamed
over the target (``os.replace`` is atomic on POSIX and Windows). Results
files, cache entries and reports all rely on it, so that parallel workers and
a second run can never leave a torn file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes_atomic", "create_exclusive", "output_problem"]


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically, with permissions ``mode`` (mkstemp would leave 0600)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:40]}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def create_exclusive(path: str | Path, data: bytes, *, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True when this call created it.

    The file is written in full under a temporary name and then hard-linked into place, which fails
    when the name is taken: two processes creating the same file at once never see half of it, and
    neither replaces the other's (a secret key must not change under a process that already uses it).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:40]}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        try:
            os.link(tmp, p)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def output_problem(path: str | Path, *, directory: bool = False) -> str | None:
    """Why ``path`` (a file to write atomically, or with ``directory`` a folder to write into) cannot be
    written, or None when it can: checked before a long run, so that its results are not lost at the end.

    Nothing is left behind: a temporary file is made and removed in the nearest folder that exists on the way
    (the one the missing ones would be created in); that is the only test that also holds for root, for whom
    permission bits say little. A disk that fills up during the run is found only when writing; callers keep
    a fallback for that.
    """
    p = Path(path)
    if not directory and p.is_dir():
        return f"{p} is a directory, and a file is to be written there"
    folder = p if directory else p.parent
    existing = next((up for up in [folder, *folder.parents] if up.exists()), None)
    if existing is None:
        return f"no folder on the way to {folder} exists"
    if not existing.is_dir():
        return f"{existing} is a file, and a directory is wanted there"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gradconform-probe.", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"{existing} cannot be written ({exc.strerror or exc})"
    return None
