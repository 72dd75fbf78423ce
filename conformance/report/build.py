"""Build reports: one backend's pages from its results file, and the scoreboard over a reports directory.

The only input is results files (and, for the formulas, the spec whose hash
they record: see :mod:`.spec_source`). No backend is imported and the oracle
is never run, so a report can be rebuilt anywhere, any time, and the same
results file always gives the same bytes.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from markupsafe import Markup

from conformance.results.document import load_results, merge, write_json_atomic

from .analysis import Analysis, analyse
from .commands import display_path
from .plots import ratio_vs_magnitude, svg_for_html, ulp_bars
from .publish import figure_name, publish
from .render import css, render
from .scoreboard import scoreboard
from .spec_source import resolve_spec

__all__ = ["build_backend_report", "write_backend_report", "build_all", "build_reports", "find_results",
           "RESULTS_NAMES"]

#: What a backend's results file in a reports directory is called (``gradconform run`` writes the compressed one).
RESULTS_NAMES = ("results.json", "results.json.gz")

#: Failure groups shown in full (worst case, inputs, counterexample, commands); the table lists every group. A backend
#: that fails everywhere would otherwise give pages of many megabytes that nobody reads to the end.
MAX_FAILURE_DETAILS = 100

_VERDICT_WORDS = {"pass": "conforms", "fail": "does not conform", "partial": "conforms where supported",
                  "not_supported": "not supported", "empty": "nothing checked", "unavailable": "unavailable"}


def build_backend_report(results_path: str | Path, out_dir: str | Path, *, scoreboard_link: str | None = None) -> Analysis:
    """Write ``out_dir/index.html``, ``out_dir/REPORT.md`` and their figures from one results file."""
    doc = load_results(results_path)
    return write_backend_report(doc, results_path, out_dir, scoreboard_link=scoreboard_link)


def write_backend_report(doc: Mapping[str, Any], results_path: str | Path, out_dir: str | Path, *,
                         scoreboard_link: str | None = None) -> Analysis:
    """The same as :func:`build_backend_report`, for a results document already loaded from ``results_path``."""
    out = Path(out_dir)
    source = resolve_spec(doc.get("spec", {}))
    a = analyse(doc, source, results_path)

    html_ulp: list[tuple[str, Markup]] = []
    md_ulp: list[tuple[str, str]] = []
    html_ratio: list[tuple[str, Markup]] = []
    md_ratio: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    for lname in a.layouts:
        qs = [q.id for q in a.quantities[lname]]
        svg = ulp_bars(lname, a.dtypes, qs, a.ulp_hists)
        if svg is None:
            continue
        name = figure_name(f"ulp-{lname}", svg)
        files[name] = svg
        md_ulp.append((lname, name))
        html_ulp.append((lname, Markup(svg_for_html(svg, f"ulp distribution per quantity and dtype, {lname} layout"))))
    all_q: list[str] = []
    for lname in a.layouts:
        for q in a.quantities[lname]:
            if q.id not in all_q:
                all_q.append(q.id)
    for reg in a.regimes:
        svg = ratio_vs_magnitude(reg, a.dtypes, all_q, a.ratio_by_magnitude, a.regime_sweeps.get(reg, ""))
        if svg is None:
            continue
        name = figure_name(f"ratio-{reg}", svg)
        files[name] = svg
        md_ratio.append((reg, name))
        html_ratio.append((reg, Markup(svg_for_html(svg, f"error over allowed against magnitude, regime {reg}"))))

    reports_dir = display_path(out.parent) if out.name == a.backend else display_path(out)
    common = dict(a=a, scoreboard_link=scoreboard_link, reports_dir=reports_dir, rerun_all=_rerun_all(doc, reports_dir),
                  max_details=MAX_FAILURE_DETAILS)
    html = render("backend.html.j2", css=Markup(css()), figures={"ulp": html_ulp, "ratio": html_ratio}, **common)
    md = render("backend.md.j2", figures={"ulp": md_ulp, "ratio": md_ratio}, **common)
    publish(out, {"index.html": html, "REPORT.md": md}, files)
    return a


def _rerun_all(doc: Mapping[str, Any], reports_dir: str) -> str:
    backend = doc.get("backend", {})
    name = backend.get("target") if backend.get("source") == "module:attr" else (backend.get("requested") or backend.get("name"))
    args = ["gradconform", "run", "--backend", str(name), "--out", reports_dir]
    settings = doc.get("settings", {})
    if settings.get("examples") is not None:
        args += ["--examples", str(settings["examples"])]
    return " ".join(shlex.quote(a) for a in args)


def find_results(reports_dir: str | Path) -> list[Path]:
    """The results file of each backend directory under ``reports_dir``; where both a plain and a compressed
    file exist, the newer one (the last run wrote it)."""
    root = Path(reports_dir)
    out: list[Path] = []
    if not root.is_dir():
        return out
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = [sub / n for n in RESULTS_NAMES if (sub / n).is_file()]
        if found:
            out.append(max(found, key=lambda p: (p.stat().st_mtime_ns, p.name)))
    return out


def build_all(reports_dir: str | Path) -> list[Analysis]:
    """Rebuild every backend report under ``reports_dir`` (``<backend>/results.json[.gz]``) and the scoreboard
    (``index.html``, ``README.md``)."""
    root = Path(reports_dir)
    analyses: list[tuple[Analysis, str]] = []
    for path in find_results(root):
        doc = load_results(path)
        a = write_backend_report(doc, path, path.parent, scoreboard_link="../index.html")
        del doc
        analyses.append((a, path.parent.name))
    if analyses:
        write_scoreboard(root, analyses)
    return [a for a, _ in analyses]


def write_scoreboard(root: Path, analyses: Sequence[tuple[Analysis, str]]) -> None:
    from .scoreboard import empty_stats

    sb = scoreboard(analyses)
    ctx = dict(sb=sb, empty=empty_stats(), reports_dir=display_path(root), m_verdict=_VERDICT_WORDS)
    html = render("scoreboard.html.j2", css=Markup(css()), **ctx)
    md = render("scoreboard.md.j2", **ctx)
    publish(root, {"index.html": html, "README.md": md}, {})


def build_reports(out_dir: str | Path, results: Iterable[str | Path] = ()) -> list[Analysis]:
    """``gradconform report``: place the given results files under ``out_dir/<backend>/`` (merging several files
    of one backend, e.g. CI shards), then rebuild every report there and the scoreboard."""
    root = Path(out_dir)
    by_backend: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    for p in results:
        path = Path(p)
        doc = load_results(path)
        by_backend[str(doc.get("backend", {}).get("name", "unknown"))].append((path, doc))
    for name, items in sorted(by_backend.items()):
        target_dir = root / name
        if len(items) == 1 and _inside(items[0][0], target_dir):
            continue  # already in place
        merged = merge([doc for _, doc in items]) if len(items) > 1 else items[0][1]
        write_json_atomic(target_dir / "results.json.gz", merged)
    return build_all(root)


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().parent == directory.resolve() and path.name in RESULTS_NAMES
    except OSError:
        return False
