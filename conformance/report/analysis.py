"""From a results document to the figures a report shows: counts, worst errors, failures, regimes.

Everything here is a pure function of the results document (and the spec it
names, for order and formulas), returning frozen dataclasses that the
templates print. Nothing is recomputed from inputs: every figure is an
aggregate (a count, a maximum, a sum of histograms) of numbers in the
records, so each one traces back to the results file.

Counting rules, the same everywhere in the reports:

* a check is one record, i.e. one quantity on one case;
* ``pass`` is the only status that counts as a pass; ``not_supported`` is
  counted apart (never as a pass, never as a failure); ``fail``, ``error``,
  ``crashed`` and ``timed_out`` are failures, each counted under its own name;
* a worst error is the maximum over the records that carry one (a pass or a
  graded fail); NaN counts as infinite.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from conformance.formats import DTYPES, get_format

from conformance.results.naming import case_rerun_command

from .commands import display_path, pytest_command
from .environment import environment_rows
from .numbers import fmt_value, num, worst
from .spec_source import SpecSource

__all__ = [
    "STATUSES", "FAILING", "Stats", "stats", "Analysis", "analyse", "FailureGroup", "WorstCase", "Counterexample",
    "QuantityInfo", "MatrixRow", "RegimeRow", "RegimeBreak", "case_inputs_text",
]

#: Every status, in the order reports list them.
from conformance.statuses import STATUSES  # noqa: E402  (one vocabulary)
#: Statuses that make a check fail.
FAILING = ("fail", "error", "crashed", "timed_out")


# ---------------------------------------------------------------------------- aggregate of records

@dataclass(frozen=True)
class Stats:
    """Counts per status and worst errors over a set of records."""

    counts: tuple[int, ...]  # in STATUSES order
    worst_ulp: float | None
    worst_rel: float | None
    worst_ratio: float | None
    worst_abs: float | None = None

    def n(self, status: str) -> int:
        return self.counts[STATUSES.index(status)]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def passed(self) -> int:
        return self.n("pass")

    @property
    def failing(self) -> int:
        return sum(self.n(s) for s in FAILING)

    @property
    def not_supported(self) -> int:
        return self.n("not_supported")

    @property
    def verdict(self) -> str:
        """pass | fail | not_supported | partial (passes, with some checks not supported) | empty."""
        if self.total == 0:
            return "empty"
        if self.failing:
            return "fail"
        if self.not_supported == self.total:
            return "not_supported"
        if self.not_supported:
            return "partial"
        return "pass"

    def nonpass(self) -> list[tuple[str, int]]:
        """(status, count) of every status other than pass that occurred, in STATUSES order."""
        return [(s, c) for s, c in zip(STATUSES, self.counts) if s != "pass" and c]


def stats(records: Iterable[Mapping[str, Any]]) -> Stats:
    counts = Counter()
    ulp: list[Any] = []
    rel: list[Any] = []
    ratio: list[Any] = []
    abs_: list[Any] = []
    for r in records:
        counts[r["status"]] += 1
        ulp.append(r.get("max_ulp"))
        rel.append(r.get("max_rel_err"))
        ratio.append(r.get("max_ratio"))
        abs_.append(r.get("max_abs_err"))
    return Stats(tuple(counts.get(s, 0) for s in STATUSES), worst(ulp), worst(rel), worst(ratio), worst(abs_))


# ---------------------------------------------------------------------------- report pieces

@dataclass(frozen=True)
class QuantityInfo:
    """A checked quantity as the report presents it (formula present only when the spec was verified)."""

    id: str
    kind: str  # value | gradient | jacobian
    layout: str
    mathml: str = ""
    latex: str = ""
    text: str = ""
    shape: str = ""
    requires: tuple[str, ...] = ()
    when: str = ""
    description: str = ""
    verified: int = 0
    verifications: int = 0
    refuted_reason: str = ""


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
class WorstCase:
    case: str
    family: str
    magnitude: float | None
    status: str
    detail: str
    message: str
    index: str
    got: str
    exact: str
    abs_err: float | None
    rel_err: float | None
    ulp: float | None
    bound: str
    allowed: str
    ratio: float | None
    inputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Counterexample:
    case: str
    family: str
    magnitude: float | None
    status: str
    detail: str
    got: str
    exact: str
    ratio: float | None
    inputs: tuple[tuple[str, str], ...]
    rerun: str


@dataclass(frozen=True)
class FailureGroup:
    quantity: str
    kind: str
    layout: str
    dtype: str
    regime: str
    anchor: str
    bad: int
    total: int
    breakdown: tuple[tuple[str, int], ...]  # ("fail (nonfinite)", 16)
    failing_magnitudes: tuple[float, ...]
    magnitudes: tuple[float, ...]
    families: tuple[str, ...]
    worst: WorstCase
    counterexample: Counterexample | None
    rerun: str
    pytest: str


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
    ulp_hists: Mapping[tuple[str, str, str], tuple[int, ...]]  # (layout, dtype, quantity) -> summed histogram
    ratio_by_magnitude: Mapping[tuple[str, str, str], tuple[tuple[float, float], ...]]  # (regime, dtype, q)
    tolerance: Mapping[str, Any]
    spec_source: SpecSource
    results_name: str
    results_sha256: str
    results_display: str
    uninformative: Mapping[str, tuple[int, int]]  # dtype -> (components with a bound >= |exact|, components)
    available: bool = True
    unavailable_reason: str = ""

    @property
    def verdict(self) -> str:
        """The overall verdict; ``unavailable`` when the backend could not even be loaded (never a pass)."""
        return "unavailable" if not self.available else self.overall.verdict


# ---------------------------------------------------------------------------- helpers

def _ordered(seen: Iterable[str], preferred: Sequence[str]) -> tuple[str, ...]:
    seen_set = list(dict.fromkeys(seen))
    out = [x for x in preferred if x in seen_set]
    out += sorted(x for x in seen_set if x not in out)
    return tuple(out)


def _matrix_text(shape: Sequence[int], values: Sequence[str]) -> str:
    """A row-major matrix as a Python literal, one row per line: copyable, and exact (shortest round-trip)."""
    rows, cols = (list(shape) + [1, 1])[:2] if shape else (1, len(values))
    rows, cols = int(rows), int(cols)
    lines = []
    for i in range(rows):
        lines.append("[" + ", ".join(values[i * cols:(i + 1) * cols]) + "]")
    return "[" + ",\n ".join(lines) + "]"


def case_inputs_text(case: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Each input of a case as (name with shape, exact values): decoded from the hex floats of the results file."""
    out = []
    for name, v in case.get("inputs", {}).items():
        vals = []
        for h in v.get("hex", []):
            try:
                vals.append(repr(float.fromhex(h)))
            except (TypeError, ValueError):
                vals.append(str(h))
        shape = v.get("shape", [])
        out.append((f"{name} ({' × '.join(str(s) for s in shape)})", _matrix_text(shape, vals)))
    return tuple(out)


def _shape_text(shape: Sequence[Any]) -> str:
    return " × ".join(str(s) for s in shape)


def _anchor(*parts: str) -> str:
    raw = "-".join(parts)
    safe = "".join(c if c.isalnum() else "-" for c in raw).strip("-")
    while "--" in safe:
        safe = safe.replace("--", "-")
    return "fail-" + safe.lower() + "-" + hashlib.sha256(raw.encode()).hexdigest()[:6]


def _mag_key(m: Any) -> float:
    f = num(m)
    return f if f is not None else float("-inf")


# ---------------------------------------------------------------------------- the analysis

def _quantity_infos(doc: Mapping[str, Any], source: SpecSource, layouts: Sequence[str],
                    seen: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, tuple[QuantityInfo, ...]]:
    from .latex import definition_latex, identity_latex
    from .mathml import definition_mathml, identity_mathml

    verifs: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for v in doc.get("verifications", []):
        verifs[(str(v.get("layout")), str(v.get("identity")))].append(v)
    out: dict[str, tuple[QuantityInfo, ...]] = {}
    for lname in layouts:
        infos: list[QuantityInfo] = []
        lay = source.spec.layouts.get(lname) if source.spec is not None else None
        if lay is not None:
            for d in lay.forward:
                infos.append(QuantityInfo(d.name, "value", lname, definition_mathml(d.name, d.expr),
                                          definition_latex(d.name, d.expr), d.text, _shape_text(d.shape),
                                          description=d.description))
            for i in lay.identities:
                vs = verifs.get((lname, i.id), [])
                refuted = [v for v in vs if v.get("verdict") != "holds"]
                infos.append(QuantityInfo(
                    i.id, i.kind, lname, identity_mathml(i.of, i.wrt, i.expr), identity_latex(i.of, i.wrt, i.expr),
                    i.text, _shape_text(i.shape), tuple(i.requires),
                    ", ".join(f"{k} = {v}" for k, v in i.when.items()), i.description,
                    len(vs) - len(refuted), len(vs),
                    (f"{refuted[0].get('verdict')}: {refuted[0].get('reason', '')}" if refuted else "")))
        known = {q.id for q in infos}
        for qid, kind in seen.get(lname, ()):
            if qid not in known:  # checked but not in the spec at hand (absent or different spec)
                infos.append(QuantityInfo(qid, kind, lname))
                known.add(qid)
        out[lname] = tuple(infos)
    return out


def _tolerance(source: SpecSource, doc: Mapping[str, Any], dtypes: Sequence[str]) -> dict[str, Any]:
    settings = doc.get("settings", {})
    tol: dict[str, Any] = {"safety_factor": settings.get("safety_factor"), "method": None, "dtypes": [],
                           "elementary": []}
    if source.spec is not None:
        pol = source.spec.tolerance
        tol["safety_factor"] = pol.safety_factor
        tol["method"] = pol.method
        tol["elementary"] = sorted(pol.elementary_error_u.items())
    for d in dtypes:
        try:
            fmt = get_format(d)
        except Exception:
            continue
        acc = source.spec.tolerance.accumulate.get(d, "?") if source.spec is not None else "?"
        acc_u = None
        try:
            acc_u = get_format(acc).u if acc != "?" else None
        except Exception:
            pass
        tol["dtypes"].append({"dtype": d, "p": fmt.p, "u": fmt.u, "eta": fmt.eta, "emin": fmt.emin,
                              "accumulate": acc, "acc_u": acc_u})
    return tol


def _regime_sweeps(source: SpecSource) -> dict[str, str]:
    out: dict[str, str] = {}
    if source.spec is None:
        return out
    for name, reg in source.spec.regimes.items():
        parts = []
        for inp, g in reg.generators.items():
            if g.magnitude_sign:
                sign = "−" if g.magnitude_sign < 0 else "+"
                what = {"spike": f"one entry set to {sign}magnitude", "tied": "two equal entries of magnitude",
                        "signs": "entries of ±magnitude", "normal": "normal with scale magnitude"}.get(g.kind, g.kind)
                parts.append(f"{inp}: {what}")
        if parts:
            out[name] = "; ".join(parts)
    return out


def analyse(doc: Mapping[str, Any], source: SpecSource, results_path: str | Path) -> Analysis:
    """Every table of a backend report, from one results document."""
    records: list[Mapping[str, Any]] = list(doc.get("records", []))
    raw = Path(results_path).read_bytes() if Path(results_path).is_file() else b""
    results_sha = hashlib.sha256(raw).hexdigest()
    results_display = display_path(results_path)
    settings = doc.get("settings", {})
    spec = source.spec

    layouts = _ordered((r["layout"] for r in records), list(settings.get("layouts") or (spec.layouts if spec else [])))
    dtypes = _ordered((r["dtype"] for r in records), list(settings.get("dtypes") or DTYPES))
    regimes = _ordered((r["regime"] for r in records), list(settings.get("regimes") or (spec.regimes if spec else [])))

    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen_set: set[tuple[str, str]] = set()
    for r in records:
        key = (r["layout"], r["quantity"])
        if key not in seen_set:
            seen_set.add(key)
            seen[r["layout"]].append((r["quantity"], r.get("kind", "")))
    quantities = _quantity_infos(doc, source, layouts, seen)
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
    uninf: dict[str, list[int]] = defaultdict(lambda: [0, 0])
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
        if r.get("components") and r["status"] in ("pass", "fail"):
            uninf[r["dtype"]][0] += int(r.get("uninformative") or 0)
            uninf[r["dtype"]][1] += int(r["components"])

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

    # failures, grouped as the pytest tests are: (quantity, layout, dtype, regime)
    cex_by_group: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for ce in doc.get("counterexamples", []):
        key = (ce.get("quantity"), ce.get("layout"), ce.get("dtype"), ce.get("regime"))
        cex_by_group.setdefault(key, ce)  # type: ignore[arg-type]
    cases = {c["id"]: c for c in doc.get("cases", [])}
    failures: list[FailureGroup] = []
    reg_index = {r: i for i, r in enumerate(regimes)}
    dt_index = {d: i for i, d in enumerate(dtypes)}
    lay_index = {l: i for i, l in enumerate(layouts)}
    for key in sorted(by_group, key=lambda k: (q_order.get((k[1], k[0]), 10 ** 6), k[0], lay_index.get(k[1], 99),
                                                dt_index.get(k[2], 99), reg_index.get(k[3], 99), k)):
        recs = by_group[key]
        bad = [r for r in recs if r["status"] in FAILING]
        if not bad:
            continue
        q, lname, d, reg = key
        kinds = Counter(r["status"] + (f" ({r['detail']})" if r.get("detail") else "") for r in bad)
        w = max(bad, key=lambda r: (r["status"] == "fail", _ratio_key(r.get("max_ratio")), r["case"]))
        case = cases.get(w["case"], {})
        worst_case = WorstCase(
            case=w["case"], family=str(w.get("family", "")), magnitude=num(w.get("magnitude")), status=w["status"],
            detail=str(w.get("detail", "")), message=str(w.get("message", "")),
            index=str(tuple(w["worst_index"])) if w.get("worst_index") is not None else "—",
            got=fmt_value(w.get("worst_got")), exact=fmt_value(w.get("worst_exact")),
            abs_err=num(w.get("max_abs_err")), rel_err=num(w.get("max_rel_err")), ulp=num(w.get("max_ulp")),
            bound=fmt_value(w.get("worst_bound")), allowed=fmt_value(w.get("worst_allowed")),
            ratio=num(w.get("max_ratio")), inputs=case_inputs_text(case) if case else ())
        cex = None
        ce = cex_by_group.get(key)
        if ce is not None:
            crec = next((r for r in ce.get("records", []) if r.get("quantity") == q), {})
            ccase = ce.get("case", {})
            cex = Counterexample(
                case=str(ccase.get("id", "?")), family=str(ccase.get("family", "")), magnitude=num(ccase.get("magnitude")),
                status=str(crec.get("status", "?")), detail=str(crec.get("detail", "")),
                got=fmt_value(crec.get("worst_got")), exact=fmt_value(crec.get("worst_exact")),
                ratio=num(crec.get("max_ratio")), inputs=case_inputs_text(ccase),
                rerun=case_rerun_command(results_display, str(ccase.get("id", "?")), q))
        all_mags = sorted({m for m in (num(r.get("magnitude")) for r in recs) if m is not None})
        bad_mags = sorted({m for m in (num(r.get("magnitude")) for r in bad) if m is not None})
        failures.append(FailureGroup(
            quantity=q, kind=str(w.get("kind", "")), layout=lname, dtype=d, regime=reg, anchor=_anchor(q, lname, d, reg),
            bad=len(bad), total=len(recs), breakdown=tuple(sorted(kinds.items())),
            failing_magnitudes=tuple(bad_mags), magnitudes=tuple(all_mags),
            families=tuple(sorted({str(r.get("family", "")) for r in bad})), worst=worst_case, counterexample=cex,
            rerun=case_rerun_command(results_display, w["case"], q),
            pytest=pytest_command(doc, q, str(w.get("kind", "")), lname, d, reg)))

    tests = Counter(str(t.get("outcome", "?")) for t in doc.get("tests", []))
    test_order = ("passed", "failed", "xfail", "xpass", "not_supported", "skipped", "error")
    test_rows = tuple((k, tests[k]) for k in list(test_order) + sorted(set(tests) - set(test_order)) if tests.get(k))

    regime_desc = {}
    if spec is not None:
        regime_desc = {n: r.description for n, r in spec.regimes.items()}

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
        regime_sweeps=_regime_sweeps(source), failures=tuple(failures),
        ulp_hists={k: tuple(v) for k, v in sorted(hists.items())},
        ratio_by_magnitude={k: tuple(sorted(v.items())) for k, v in sorted(ratio_mag.items())},
        tolerance=_tolerance(source, doc, dtypes), spec_source=source,
        results_name=Path(results_path).name, results_sha256=results_sha, results_display=results_display,
        uninformative={d: (v[0], v[1]) for d, v in sorted(uninf.items(), key=lambda kv: dt_index.get(kv[0], 99))},
        available=bool(backend.get("available", True)), unavailable_reason=str(backend.get("reason", "")),
    )


def _ratio_key(x: Any) -> float:
    f = num(x)
    if f is None:
        return -1.0
    return float("inf") if f != f else f
