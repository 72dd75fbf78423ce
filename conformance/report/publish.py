"""Atomic publication of a report directory: a reader sees the old report or the new one, never half of either.

Everything is generated in memory, then written to a temporary directory
beside the target (same file system, so renames are atomic). Figures are
moved in first, under content-addressed names (``figures/ulp-row.1a2b3c4d.svg``):
a new figure never overwrites one the old pages still show. The pages
(index.html, REPORT.md) are renamed over the old ones last, each in one
``os.replace``; only then are figures that no page refers to any more
removed. If anything fails before the renames, the old report is untouched
and the temporary directory is removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

__all__ = ["FIGURES_DIR", "figure_name", "publish"]

FIGURES_DIR = "figures"
_OWNED = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.[0-9a-f]{10}\.svg$")


def figure_name(slug: str, content: str) -> str:
    """``figures/<slug>.<hash>.svg``: the name changes exactly when the content does."""
    safe = re.sub(r"[^a-z0-9_.-]+", "-", slug.lower()).strip("-.") or "figure"
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:10]
    return f"{FIGURES_DIR}/{safe}.{digest}.svg"


def publish(out_dir: str | Path, pages: Mapping[str, str], figures: Mapping[str, str]) -> None:
    """Write ``pages`` (name -> text, e.g. index.html) and ``figures`` (path from :func:`figure_name` -> SVG)
    into ``out_dir``, replacing a previous report atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        for name, text in list(figures.items()) + list(pages.items()):
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        if figures:
            (out / FIGURES_DIR).mkdir(exist_ok=True)
        for name in sorted(figures):
            os.replace(tmp / name, out / name)
        for name in sorted(pages):
            os.replace(tmp / name, out / name)
        _remove_stale_figures(out, set(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_figures(out: Path, keep: set[str]) -> None:
    fig_dir = out / FIGURES_DIR
    if not fig_dir.is_dir():
        return
    for p in sorted(fig_dir.iterdir()):
        rel = f"{FIGURES_DIR}/{p.name}"
        if p.is_file() and _OWNED.match(p.name) and rel not in keep:
            try:
                p.unlink()
            except OSError:
                pass
    try:
        fig_dir.rmdir()  # only if empty
    except OSError:
        pass
