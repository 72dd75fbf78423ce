"""The scoreboard: one row per backend (and variant), from the analyses of their results files.

Columns are grouped so the page stays readable with many backends: an
overview (every status counted), layout × dtype (pass rates and worst
error/allowed), and a quantity table (rows are the quantities, columns the
backends) that names the dtypes in which a quantity fails. Backends judged
against different specs are flagged: their numbers are not comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .analysis import DTYPE_ORDER, Analysis, Stats, stats
from .grades import grade_text
from .uninformative import scoreboard_note

__all__ = ["BackendRow", "Scoreboard", "scoreboard"]


@dataclass(frozen=True)
class BackendRow:
    name: str
    description: str
    versions: str
    device: str
    created: str
    spec_sha256: str
    html: str  # link to the backend's report
    md: str
    overall: Stats
    by_ld: Mapping[tuple[str, str], Stats]
    by_q: Mapping[str, Stats]
    failing_dtypes: Mapping[str, tuple[str, ...]]  # quantity -> dtypes where it fails
    breaks: tuple[str, ...]  # per regime: "large_logits: float64 ≥ 1000, float16 ≥ 10"
    #: one line per finding (conformance/report/findings.py): (anchor of its card, sentence, failing checks)
    findings: tuple[tuple[str, str, int], ...] = ()
    grade: str = ""  # "p99 ≤ 3 ulp · 97.1% correctly rounded" (conformance/report/grades.py)
    verdict: str = "pass"  # Stats.verdict, or "unavailable"
    unavailable_reason: str = ""
    sign_bias: tuple[str, ...] = ()  # grade findings: one sentence per dtype (conformance/report/sign_bias.py)
    uninformative: str = ""  # the 16-bit share of uninformative checks (conformance/report/uninformative.py)


@dataclass(frozen=True)
class Scoreboard:
    rows: tuple[BackendRow, ...]
    layouts: tuple[str, ...]
    dtypes: tuple[str, ...]
    quantities: tuple[tuple[str, str], ...]  # (quantity, kind) in spec order
    spec_names: tuple[str, ...]
    spec_hashes: tuple[str, ...]
    spec_title: str


def _versions(env: Sequence[tuple[str, str]]) -> str:
    for k, v in env:
        if k == "backend libraries":
            return v
    return ""


def _device(env: Sequence[tuple[str, str]]) -> str:
    for k, v in env:
        if k == "device":
            return v
    return ""


def scoreboard(analyses: Sequence[tuple[Analysis, str]]) -> Scoreboard:
    """``analyses``: (analysis, directory of its report relative to the scoreboard), in any order."""
    rows: list[BackendRow] = []
    layouts: list[str] = []
    dtypes: list[str] = []
    quantities: list[tuple[str, str]] = []
    for a, rel in sorted(analyses, key=lambda t: t[0].backend):
        for l in a.layouts:
            if l not in layouts:
                layouts.append(l)
        for d in a.dtypes:
            if d not in dtypes:
                dtypes.append(d)
        for lname in a.layouts:
            for q in a.quantities.get(lname, ()):
                if (q.id, q.kind) not in quantities and any(r.quantity == q.id for r in a.matrix.get(lname, ())):
                    quantities.append((q.id, q.kind))
        failing: dict[str, list[str]] = {}
        for lname, mrows in a.matrix.items():
            for r in mrows:
                for d, s in zip(a.dtypes, r.cells):
                    if s.failing and d not in failing.setdefault(r.quantity, []):
                        failing[r.quantity].append(d)
        per_regime: dict[str, list[str]] = {}
        for b in a.regime_breaks:
            per_regime.setdefault(b.regime, []).append(
                b.dtype + (f" ≥ {b.from_magnitude:g}" if b.from_magnitude is not None else ""))
        breaks = tuple(f"{reg}: {', '.join(parts)}" for reg, parts in per_regime.items())
        rows.append(BackendRow(
            name=a.backend, description=a.description, versions=_versions(a.environment), device=_device(a.environment),
            created=a.created, spec_sha256=a.spec_sha256, html=f"{rel}/index.html", md=f"{rel}/REPORT.md",
            overall=a.overall, by_ld=dict(a.by_layout_dtype), by_q=dict(a.by_quantity),
            failing_dtypes={q: tuple(sorted(ds, key=lambda d: a.dtypes.index(d))) for q, ds in failing.items()},
            breaks=breaks, findings=tuple((f.anchor, f.short or f.sentence, f.bad) for f in a.findings), grade=_grade_text(a), verdict=a.verdict, unavailable_reason=a.unavailable_reason,
            uninformative=scoreboard_note(a.uninformative), sign_bias=tuple(b.sentence for b in a.sign_findings)))
    dt = [d for d in DTYPE_ORDER if d in dtypes] + [d for d in dtypes if d not in DTYPE_ORDER]
    kind_order = {"value": 0, "gradient": 1, "jacobian": 2, "jvp": 3, "vjp": 4, "hessian": 5, "hvp": 6}
    quantities.sort(key=lambda qk: kind_order.get(qk[1], 3))  # stable: spec order within a kind
    return Scoreboard(
        rows=tuple(rows), layouts=tuple(layouts), dtypes=tuple(dt), quantities=tuple(quantities),
        spec_names=tuple(sorted({a.spec_name for a, _ in analyses})),
        spec_hashes=tuple(sorted({a.spec_sha256 for a, _ in analyses})),
        spec_title=next((a.spec_title for a, _ in sorted(analyses, key=lambda t: t[0].backend)), ""),
    )


def _grade_text(a: Analysis) -> str:
    return grade_text(a.grade)


def empty_stats() -> Stats:
    """The figures of a cell with no records (printed as "not checked")."""
    return stats([])
