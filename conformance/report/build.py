"""Build reports: one backend's pages from its results file, and the scoreboard over a reports directory.

The only input is results files (and, for the formulas, the spec whose hash
they record: see :mod:`.spec_source`). No backend is imported and the oracle
is never run, so a report can be rebuilt anywhere, any time, and the same
results file always gives the same bytes.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from markupsafe import Markup

from conformance.atomic import write_bytes_atomic
from conformance.errors import ResultsFileError
from conformance.results.document import load_results, merge, write_json_atomic
from conformance.results.naming import report_dir_name

from .analysis import Analysis, analyse, display_path
from .grades import fmt_bin, tail_findings
from .sign_bias import with_reference
from .plots import ratio_vs_magnitude, ulp_bars
from .publish import figure_name, publish
from .render import css, render
from .scoreboard import empty_stats, scoreboard
from .spec_source import resolve_spec

__all__ = ["build_backend_report", "write_backend_report", "build_all", "build_reports", "find_results",
           "backend_dir", "RESULTS_NAMES"]

#: What a backend's results file in a reports directory is called (``gradconform run`` writes the compressed one).
RESULTS_NAMES = ("results.json", "results.json.gz")

#: Failure groups shown in full (worst case, inputs, counterexample, commands) after the findings, which summarise them
#: all; the table lists every group. A backend
#: that fails everywhere would otherwise give pages of many megabytes that nobody reads to the end.
MAX_FAILURE_DETAILS = 3
#: The page of a backend's folder that holds the table of every failing test (linked from index.html).
FAILURES_PAGE = "failures.html"

_VERDICT_WORDS = {"pass": "conforms", "fail": "does not conform", "partial": "conforms where supported",
                  "not_supported": "not supported", "empty": "nothing checked", "unavailable": "unavailable"}


def build_backend_report(results_path: str | Path, out_dir: str | Path, *, scoreboard_link: str | None = None) -> Analysis:
    """Write ``out_dir/index.html``, ``out_dir/REPORT.md`` and their figures from one results file."""
    doc = load_results(results_path)
    return write_backend_report(doc, results_path, out_dir, scoreboard_link=scoreboard_link)


def write_backend_report(doc: Mapping[str, Any], results_path: str | Path, out_dir: str | Path, *,
                         scoreboard_link: str | None = None) -> Analysis:
    """The same as :func:`build_backend_report`, for a results document already loaded from ``results_path``."""
    a = analyse(doc, resolve_spec(doc.get("spec", {})), results_path)
    render_backend_report(a, out_dir, scoreboard_link=scoreboard_link)
    return a


def render_backend_report(a: Analysis, out_dir: str | Path, *, scoreboard_link: str | None = None,
                          scoreboard_md: str | None = None) -> None:
    """Write the pages and figures of one analysis (the HTML links ``scoreboard_link``, the markdown
    ``scoreboard_md``: a code host shows README.md, not index.html)."""
    out = Path(out_dir)
    md_ulp: list[tuple[str, str]] = []
    html_ratio: list[tuple[str, Markup]] = []
    md_ratio: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    all_q: list[str] = []
    for lname in a.layouts:
        for q in a.quantities[lname]:
            if q.id not in all_q:
                all_q.append(q.id)
    # one distribution figure over both layouts, in the markdown only: the HTML page has the grades table, which
    # splits the same histograms by regime, and a page stays under 400 KB
    both: dict[tuple[str, str, str], list[int]] = {}
    for (_, d, q), h in a.ulp_hists.items():
        acc = both.setdefault(("all", d, q), [0] * len(h))
        for i, c in enumerate(h[:len(acc)]):
            acc[i] += c
    svg = ulp_bars("all", a.dtypes, all_q, both)
    if svg is not None:
        name = figure_name("ulp", svg)
        files[name] = svg
        md_ulp.append(("all", name))
    for reg in a.regimes:
        svg = ratio_vs_magnitude(reg, a.dtypes, all_q, a.ratio_by_magnitude, a.regime_sweeps.get(reg, ""))
        if svg is None:
            continue
        name = figure_name(f"ratio-{reg}", svg)
        files[name] = svg
        md_ratio.append((reg, name))
        # a shared asset of the report's folder, not inlined: with one line per quantity and dtype the four
        # regime plots are half a page's bytes (pages stay under 400 KB; the folder is still self-contained)
        html_ratio.append((reg, _figure_img(name, svg, f"error over allowed against magnitude, regime {reg}")))

    # a backend report is always a folder of the reports folder (``build_all``, ``--gc-report``); commands name
    # that folder by its name, so that they do not depend on the working directory of the build
    reports_dir = out.resolve().parent.name
    # the last "--out reports" is the option (a quoted backend name before it may hold the same text)
    head, sep, tail = a.rerun_all.rpartition(" --out reports")
    rerun_all = f"{head} --out {shlex.quote(reports_dir)}{tail}" if sep else a.rerun_all
    # the rebuild command runs in the report's own folder: it stays right wherever the folder is copied or
    # renamed, and rebuilds every page beside it (never a report nested in this one, never a scoreboard of one)
    rebuild = _command("gradconform", "report", "--out", "..", Path(a.results_name).name)
    common = dict(a=a, reports_dir=shlex.quote(reports_dir), rerun_all=rerun_all, rebuild=rebuild,
                  max_details=MAX_FAILURE_DETAILS, grade_bin=fmt_bin)
    html = render("backend.html.j2", css=Markup(css()), figures={"ratio": html_ratio},
                  scoreboard_link=scoreboard_link, **common)
    md = render("backend.md.j2", figures={"ulp": md_ulp, "ratio": md_ratio},
                scoreboard_link=scoreboard_md if scoreboard_md is not None else scoreboard_link, **common)
    pages = {"index.html": html, "REPORT.md": md}
    if a.failures:  # the table of every failing test, a page of its own: hundreds of rows for a failing backend
        pages[FAILURES_PAGE] = render("failures.html.j2", css=Markup(css()), scoreboard_link=scoreboard_link, **common)
    publish(out, pages, files)
    if not a.failures:
        (out / FAILURES_PAGE).unlink(missing_ok=True)  # a previous build's, for failures this results file has not


def _figure_img(name: str, svg: str, alt: str) -> Markup:
    """An ``<img>`` of a figure file of the report's folder, sized from the SVG's viewBox (no layout shift)."""
    m = re.search(r'viewBox="0 0 ([0-9.]+) ([0-9.]+)"', svg)
    size = f' width="{round(float(m.group(1)))}" height="{round(float(m.group(2)))}"' if m else ""
    return Markup('<img class="plot" src="{}" alt="{}"{}>').format(name, alt, Markup(size))  # name: figures/...


def _command(*args: str) -> str:
    """A command line the pages print, every argument shell-quoted (a reports path with spaces, a results file
    named ``$(...)``: the printed line still means what it says when pasted)."""
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


def build_all(reports_dir: str | Path, loaded: Mapping[Path, Mapping[str, Any]] | None = None) -> list[Analysis]:
    """Rebuild every backend report under ``reports_dir`` (``<backend>/results.json[.gz]``) and the scoreboard
    (``index.html``, ``README.md``). ``loaded``: results documents already read and validated, by path (each
    file is read and validated once). Every backend is analysed before any page is written: the accuracy
    findings compare a backend with the others."""
    root = Path(reports_dir)
    loaded = dict(loaded or {})
    paths = find_results(root)
    analyses: list[tuple[Analysis, str]] = []
    started = time.monotonic()
    for i, path in enumerate(paths, 1):
        _progress(f"report: reading {display_path(path)} ({i}/{len(paths)})", started)
        doc = loaded.pop(path.resolve(), None) or load_results(path)
        # commands name the file from the directory that holds the reports folder, whatever the working
        # directory of this build: a rebuild from anywhere gives the same bytes
        display = "/".join((root.resolve().name, path.parent.name, path.name))
        analyses.append((analyse(doc, resolve_spec(doc.get("spec", {})), path, display=display), path.parent.name))
        del doc
    grades = {a.backend: a.grades for a, _ in analyses}
    signs = {a.backend: a.sign_bias for a, _ in analyses}
    analyses = [(replace(a, tail_findings=tail_findings(a.grades, {n: g for n, g in grades.items() if n != a.backend}),
                         sign_bias=with_reference(a.sign_bias, {n: s for n, s in signs.items() if n != a.backend})),
                 rel) for a, rel in analyses]
    for i, (a, rel) in enumerate(analyses, 1):
        _progress(f"report: writing {display_path(root / rel)} ({i}/{len(analyses)})", started)
        render_backend_report(a, _checked_inside(root, root / rel), scoreboard_link="../index.html", scoreboard_md="../README.md")
    if analyses:
        write_scoreboard(root, analyses)
        _progress(f"report: scoreboard {display_path(root)} written", started)
    return [a for a, _ in analyses]


def _progress(message: str, started: float) -> None:
    """A line on stderr per step of a long build (six backends take seconds each), with the time so far."""
    print(f"{message} [{time.monotonic() - started:.1f} s]", file=sys.stderr, flush=True)


def write_scoreboard(root: Path, analyses: Sequence[tuple[Analysis, str]]) -> None:
    """The scoreboard pages of ``root`` over the analyses (and report directories) given."""
    sb = scoreboard(analyses)
    reports_dir = root.resolve().name
    ctx = dict(sb=sb, empty=empty_stats(), reports_dir=shlex.quote(reports_dir), m_verdict=_VERDICT_WORDS,
               grade_bin=fmt_bin, regen_run=_command("gradconform", "run", "--out", reports_dir),
               regen_report=_command("gradconform", "report", "--out", "."))
    html = render("scoreboard.html.j2", css=Markup(css()), **ctx)
    md = render("scoreboard.md.j2", **ctx)
    publish(root, {"index.html": html, "README.md": md}, {})


def build_reports(out_dir: str | Path, results: Iterable[str | Path] = ()) -> list[Analysis]:
    """``gradconform report``: place the given results files under ``out_dir/<backend>/`` (merging several files
    of one backend, e.g. CI shards), then rebuild every report there and the scoreboard."""
    root = Path(out_dir)
    loaded: dict[Path, Mapping[str, Any]] = {}
    by_backend: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    names: dict[str, set[str]] = defaultdict(set)
    for p in results:
        path = Path(p)
        doc = load_results(path)
        name = str(doc.get("backend", {}).get("name", "unknown"))
        by_backend[report_dir_name(name)].append((path, doc))
        names[report_dir_name(name)].add(name)
    for folder, items in sorted(by_backend.items()):
        if len(names[folder]) > 1:
            raise ResultsFileError(f"backends {', '.join(map(repr, sorted(names[folder])))} would share the report "
                                   f"folder {folder!r}: build their reports under different --out directories")
        target_dir = backend_dir(root, folder)
        if len(items) == 1 and _inside(items[0][0], target_dir):
            loaded[items[0][0].resolve()] = items[0][1]
            continue  # already in place
        merged = merge([doc for _, doc in items], [str(p) for p, _ in items]) if len(items) > 1 else items[0][1]
        raw = items[0][0].read_bytes() if len(items) == 1 else b""
        if raw[:2] == b"\x1f\x8b":  # one compressed file: its bytes, not a second compression of the same document
            write_bytes_atomic(target_dir / "results.json.gz", raw)
        else:
            write_json_atomic(target_dir / "results.json.gz", merged)
        loaded[(target_dir / "results.json.gz").resolve()] = merged
    return build_all(root, loaded)


def backend_dir(root: Path, name: str) -> Path:
    """``root/<sanitised name>``, refused unless it resolves inside ``root`` (a symlinked folder pointing out of
    it, say): nothing a results file says may make the report write outside ``--out``."""
    return _checked_inside(root, root / report_dir_name(name))


def _checked_inside(root: Path, target: Path) -> Path:
    if not target.resolve().is_relative_to(root.resolve()):
        raise ResultsFileError(f"the report folder {target} resolves outside {root} ({target.resolve()}): "
                               "remove that link or choose another --out")
    return target


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().parent == directory.resolve() and path.name in RESULTS_NAMES
    except OSError:
        return False
