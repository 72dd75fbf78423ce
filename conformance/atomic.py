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

__all__ = ["write_bytes_atomic"]


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
