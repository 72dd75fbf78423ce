"""From a results document to the figures a report shows: counts, worst errors, findings, grades, regimes.

Everything here is a pure function of the results document (and the spec it
names, for order and formulas), returning frozen dataclasses that the
templates print. Nothing is recomputed from inputs: every figure is an
aggregate (a count, a maximum, a sum of histograms) of numbers in the
records, so each one traces back to the results file. The counting rules
are in :mod:`.stats`, the failure groups in :mod:`.failures`, their
gathering by cause in :mod:`.findings`, the accuracy grades in
:mod:`.grades` and the words around the figures in :mod:`.context`.
"""

from __future__ import annotations

import hashlib
import shlex
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .context import (QuantityInfo, display_path, environment_rows, ordered, quantity_infos, regime_sweeps,
                      tolerance)
from .failures import FailureGroup, failure_groups
from .findings import Finding, findings
from .grades import Grade, GradeCell, TailFinding, grade_cells, overall_grade
from .numbers import num
from .reproducer import Reproducer, finding_reproducer
from .spec_source import SpecSource
from .stats import DTYPE_ORDER, FAILING, STATUSES, Stats, stats
from .sign_bias import SignBias, sign_bias_rows
from .uninformative import (UninformativeCell, UninformativeRow, uninformative_by_dtype, uninformative_cells,
                            uninformative_rows)

__all__ = ["STATUSES", "FAILING", "DTYPE_ORDER", "Stats", "stats", "Analysis", "analyse", "MatrixRow", "RegimeRow",
           "RegimeBreak", "display_path"]


@dataclass(frozen=True)
class MatrixRow:
    quantity: str
    kind: str
    cells: tuple[Stats, ...]  # one per dtype


@dataclass(frozen=True)
class RegimeRow:
    regime: str
    magnitude: float | None
    cells: tuple[Stats, ...]  # one per dtype, over every layout and quantity
    failing_quantities: tuple[str, ...]


@dataclass(frozen=True)
class RegimeBreak:
    """A regime and dtype in which some check fails, and from which magnitude."""

    regime: str
    dtype: str
    from_magnitude: float | None
    failing_magnitudes: tuple[float, ...]
    passing_above: tuple[float, ...]  # magnitudes above the first failure where everything passes
    quantities: tuple[str, ...]


@dataclass(frozen=True)
class Analysis:
    backend: str
    description: str
    spec_title: str
    spec_name: str
    spec_sha256: str
    created: str
    overall: Stats
    tests: tuple[tuple[str, int], ...]
    test_total: int
    environment: tuple[tuple[str, str], ...]
    layouts: tuple[str, ...]
    dtypes: tuple[str, ...]
    regimes: tuple[str, ...]
    quantities: Mapping[str, tuple[QuantityInfo, ...]]  # layout -> quantities in spec order
    matrix: Mapping[str, tuple[MatrixRow, ...]]  # layout -> rows
    by_layout_dtype: Mapping[tuple[str, str], Stats]
    by_quantity: Mapping[str, Stats]  # over every layout and dtype
    regime_rows: tuple[RegimeRow, ...]
    regime_breaks: tuple[RegimeBreak, ...]
    regime_descriptions: Mapping[str, str]
    regime_sweeps: Mapping[str, str]  # regime -> what its magnitude scales ("b2: spike of +magnitude")
    failures: tuple[FailureGroup, ...]
    findings: tuple[Finding, ...]
    grades: tuple[GradeCell, ...]
    grade: Grade
    ulp_hists: Mapping[tuple[str, str, str], tuple[int, ...]]  # (layout, dtype, quantity) -> summed histogram
    ratio_by_magnitude: Mapping[tuple[str, str, str], tuple[tuple[float, float], ...]]  # (regime, dtype, q)
    tolerance: Mapping[str, Any]
    spec_source: SpecSource
    results_name: str
    results_sha256: str
    results_display: str
    uninformative: Mapping[str, tuple[int, int]]  # dtype -> (components with a bound >= |exact|, components)
    uninformative_cells: tuple[UninformativeCell, ...]  # quantity x dtype x regime cells with any (.uninformative)
    sign_bias: tuple[SignBias, ...] = ()  # per dtype; those with .finding are grade findings (.sign_bias)
    rerun_all: str = ""
    partial: str = ""  # why the run is partial (a selection of the suite), "" for a whole run
    tail_findings: tuple[TailFinding, ...] = ()  # filled in by the build, which sees every backend
    available: bool = True
    unavailable_reason: str = ""
    reproducers: Mapping[str, Reproducer] = field(default_factory=dict)  # finding anchor -> its reproducer

    @property
    def uninformative_rows(self) -> tuple[UninformativeRow, ...]:
        """The uninformative cells as quantity x dtype rows, a column per regime."""
        return uninformative_rows(self.uninformative_cells, self.regimes)

    @property
    def sign_findings(self) -> tuple[SignBias, ...]:
        return tuple(b for b in self.sign_bias if b.finding)

    @property
    def verdict(self) -> str:
        """The overall verdict; ``unavailable`` when the backend could not even be loaded (never a pass)."""
        return "unavailable" if not self.available else self.overall.verdict


def _mag_key(m: Any) -> float:
    f = num(m)
    return f if f is not None else float("-inf")


def analyse(doc: Mapping[str, Any], source: SpecSource, results_path: str | Path, *,
            display: str | None = None) -> Analysis:
    """Every table of a backend report, from one results document. ``display``: how commands name the results
    file (default: relative to the working directory)."""
    records: list[Mapping[str, Any]] = list(doc.get("records", []))
    raw = Path(results_path).read_bytes() if Path(results_path).is_file() else b""
    results_sha = hashlib.sha256(raw).hexdigest()
    results_display = display or display_path(results_path)
    settings = doc.get("settings", {})
    spec = source.spec

    layouts = ordered((r["layout"] for r in records), list(settings.get("layouts") or (spec.layouts if spec else [])))
    dtypes = ordered((r["dtype"] for r in records), list(settings.get("dtypes") or DTYPE_ORDER))
    regimes = ordered((r["regime"] for r in records), list(settings.get("regimes") or (spec.regimes if spec else [])))

    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen_set: set[tuple[str, str]] = set()
    for r in records:
        key = (r["layout"], r["quantity"])
        if key not in seen_set:
            seen_set.add(key)
            seen[r["layout"]].append((r["quantity"], r.get("kind", "")))
    quantities = quantity_infos(doc, source, layouts, seen)
    q_order = {(lname, q.id): i for lname, qs in quantities.items() for i, q in enumerate(qs)}

    def q_rank(q: str) -> tuple[int, str]:
        """Spec order of a quantity (its first position in any layout), then its name: a total order."""
        return (min((v for (_, qq), v in q_order.items() if qq == q), default=10 ** 6), q)

    by_cell: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_ld: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_q: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_group: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_rm: dict[tuple[str, Any, str], list[Mapping[str, Any]]] = defaultdict(list)
    hists: dict[tuple[str, str, str], list[int]] = {}
    ratio_mag: dict[tuple[str, str, str], dict[float, float]] = defaultdict(dict)
    for r in records:
        by_cell[(r["layout"], r["dtype"], r["quantity"])].append(r)
        by_ld[(r["layout"], r["dtype"])].append(r)
        by_q[r["quantity"]].append(r)
        by_group[(r["quantity"], r["layout"], r["dtype"], r["regime"])].append(r)
        by_rm[(r["regime"], num(r.get("magnitude")), r["dtype"])].append(r)
        h = r.get("ulp_hist") or []
        if h:
            acc = hists.setdefault((r["layout"], r["dtype"], r["quantity"]), [0] * len(h))
            if len(acc) == len(h):
                for i, c in enumerate(h):
                    acc[i] += int(c)
        mag = num(r.get("magnitude"))
        ratio = num(r.get("max_ratio"))
        if mag is not None and ratio is not None:
            if ratio != ratio:
                ratio = float("inf")
            d = ratio_mag[(r["regime"], r["dtype"], r["quantity"])]
            d[mag] = max(d.get(mag, 0.0), ratio)

    matrix = {lname: tuple(MatrixRow(q.id, q.kind, tuple(stats(by_cell.get((lname, d, q.id), [])) for d in dtypes))
                           for q in quantities[lname] if any(by_cell.get((lname, d, q.id)) for d in dtypes))
              for lname in layouts}

    # regimes x magnitudes
    regime_rows: list[RegimeRow] = []
    breaks: list[RegimeBreak] = []
    for reg in regimes:
        mags = sorted({num(r.get("magnitude")) for r in records if r["regime"] == reg}, key=_mag_key)
        for m in mags:
            cells = tuple(stats(by_rm.get((reg, m, d), [])) for d in dtypes)
            failing_q = sorted({r["quantity"] for d in dtypes for r in by_rm.get((reg, m, d), [])
                                if r["status"] in FAILING}, key=q_rank)
            regime_rows.append(RegimeRow(reg, m, cells, tuple(failing_q)))
        for d in dtypes:
            fail_mags = [m for m in mags if any(r["status"] in FAILING for r in by_rm.get((reg, m, d), []))]
            if not fail_mags:
                continue
            first = fail_mags[0]
            above_ok = tuple(m for m in mags if m is not None and first is not None and m > first and m not in fail_mags)
            qs = sorted({r["quantity"] for m in fail_mags for r in by_rm.get((reg, m, d), []) if r["status"] in FAILING},
                        key=q_rank)
            breaks.append(RegimeBreak(reg, d, first, tuple(m for m in fail_mags if m is not None), above_ok, tuple(qs)))

    reg_index = {r: i for i, r in enumerate(regimes)}
    dt_index = {d: i for i, d in enumerate(dtypes)}
    lay_index = {l: i for i, l in enumerate(layouts)}
    failures = failure_groups(
        doc, by_group, lambda k: (q_order.get((k[1], k[0]), 10 ** 6), k[0], lay_index.get(k[1], 99),
                                  dt_index.get(k[2], 99), reg_index.get(k[3], 99), k), results_display)
    tests = Counter(str(t.get("outcome", "?")) for t in doc.get("tests", []))
    test_order = ("passed", "failed", "xfail", "xpass", "not_supported", "skipped", "error")
    test_rows = tuple((k, tests[k]) for k in list(test_order) + sorted(set(tests) - set(test_order)) if tests.get(k))

    regime_desc = {}
    if spec is not None:
        regime_desc = {n: r.description for n, r in spec.regimes.items()}
    grades = grade_cells(records, q_rank, dtypes, regimes)
    found = findings(failures, q_rank, dtypes, regimes, regime_desc)

    backend = doc.get("backend", {})
    return Analysis(
        backend=str(backend.get("name", "?")), description=str(backend.get("description", "")),
        spec_title=str(doc.get("spec", {}).get("title", "")), spec_name=str(doc.get("spec", {}).get("name", "")),
        spec_sha256=str(doc.get("spec", {}).get("sha256", "")), created=str(doc.get("created", "")),
        overall=stats(records), tests=test_rows, test_total=sum(tests.values()),
        environment=environment_rows(doc, Path(results_path).name, results_sha),
        layouts=layouts, dtypes=dtypes, regimes=regimes, quantities=quantities, matrix=matrix,
        by_layout_dtype={(l, d): stats(by_ld.get((l, d), [])) for l in layouts for d in dtypes},
        by_quantity={q: stats(v) for q, v in by_q.items()},
        regime_rows=tuple(regime_rows), regime_breaks=tuple(breaks), regime_descriptions=regime_desc,
        regime_sweeps=regime_sweeps(source), failures=failures,
        findings=found, grades=grades, grade=overall_grade(grades),
        ulp_hists={k: tuple(v) for k, v in sorted(hists.items())},
        ratio_by_magnitude={k: tuple(sorted(v.items())) for k, v in sorted(ratio_mag.items())},
        tolerance=tolerance(source, doc, dtypes), spec_source=source,
        results_name=Path(results_path).name, results_sha256=results_sha, results_display=results_display,
        uninformative=uninformative_by_dtype(doc, dtypes),
        uninformative_cells=uninformative_cells(doc, q_rank, dtypes, regimes),
        sign_bias=sign_bias_rows(doc, dtypes),
        rerun_all=rerun_all_command(doc), partial=partial_reason(doc, records, quantities),
        available=bool(backend.get("available", True)), unavailable_reason=str(backend.get("reason", "")),
        reproducers={f.anchor: finding_reproducer(doc, spec, f, results_display) for f in found},
    )


def rerun_all_command(doc: Mapping[str, Any], reports_dir: str = "reports") -> str:
    """The ``gradconform run`` command that reruns the whole suite for the backend of ``doc``."""
    backend = doc.get("backend", {})
    name = backend.get("target") if backend.get("source") == "module:attr" else (backend.get("requested") or backend.get("name"))
    args = ["gradconform", "run", "--backend", str(name), "--out", reports_dir]
    settings = doc.get("settings", {})
    if settings.get("examples") is not None:
        args += ["--examples", str(settings["examples"])]
    return " ".join(shlex.quote(a) for a in args)


def partial_reason(doc: Mapping[str, Any], records: list[Mapping[str, Any]],
                   quantities: Mapping[str, tuple[QuantityInfo, ...]]) -> str:
    """Why a run checked only part of the suite ("" when it is whole): a shard, or a selection (``-k``) that
    left out a dtype, regime or layout the run's settings name, or a quantity of the spec. The results file does
    not record the selection itself, so this is read from what is missing."""
    settings = doc.get("settings", {})
    if settings.get("shard"):
        return f"shard {settings['shard']} of the suite"
    missing = []
    for key, attr in (("dtypes", "dtype"), ("regimes", "regime"), ("layouts", "layout")):
        seen = {r[attr] for r in records}
        lacking = [x for x in settings.get(key) or () if x not in seen]
        if lacking:
            missing.append(f"{key} {', '.join(lacking)}")
    checked = {(r["layout"], r["quantity"]) for r in records}
    lacking_q = [q.id for lname, qs in quantities.items() for q in qs if (lname, q.id) not in checked]
    if lacking_q and records:
        missing.append(f"{len(lacking_q)} quantity test(s) ({', '.join(sorted(set(lacking_q))[:3])}…)")
    return ("a selection of the suite (no records for " + "; ".join(missing) + ")") if missing and records else ""
