"""Accuracy grades, as a libm accuracy table: ulps from the correctly rounded value by quantity × dtype × regime.

The grade is the second tier of a verdict: it never makes a check fail. It is
taken over the checks whose every component has an informative bound (a
record counts the components whose bound is at least the exact value itself
in ``uninformative``; a record with any is left out of the grade and counted
apart): there a large ulp count means a worse evaluation, not a cancellation
every correct backend suffers.

From the records: ``max`` is the largest ``max_ulp``; ``p99`` and
``median`` come from the summed ``ulp_hist`` and are **bin bounds** (the
records keep a histogram by powers of two, not the ulps themselves: bucket 0
is correctly rounded, bucket b in 1..31 holds [2^(b-1), 2^b), bucket 32 holds
2^31 and more, bucket 33 NaN/inf), and the share correctly rounded is bucket
0 over all components.

Tail findings compare backends: where one backend is far from the correctly
rounded value on a cell that another backend gets within a few ulps, the
difference is an accuracy finding of the first backend (never a failure).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .numbers import fmt_ulp, num

__all__ = ["GradeCell", "Grade", "TailFinding", "grade_cells", "overall_grade", "tail_findings", "fmt_bin", "grade_text",
           "NEAR_ULPS", "FAR_ULPS"]

#: Bucket indices of the records' ulp histogram (conformance.judge.compare).
_OVERFLOW_BUCKET = 32
_NONFINITE_BUCKET = 33
#: A backend "gets within a few ulps" of a cell when its worst component there is at most this far.
NEAR_ULPS = 4.0
#: A backend is "far worse" on a cell when its worst component is at least this far (and another is near).
FAR_ULPS = 2.0 ** 10


@dataclass(frozen=True)
class GradeCell:
    """The grade of one quantity in one dtype and regime."""

    quantity: str
    dtype: str
    regime: str
    checks: int  # records graded
    excluded: int  # records left out: some component's bound is uninformative
    components: int
    max_ulp: float | None
    p99_bin: int | None  # histogram bucket holding the 99th percentile component
    median_bin: int | None
    correctly_rounded: int  # components in bucket 0
    hist: tuple[int, ...] = ()  # the summed histogram the bins are read from

    @property
    def share_correct(self) -> float | None:
        return self.correctly_rounded / self.components if self.components else None


@dataclass(frozen=True)
class Grade:
    """A backend's grade over every graded component: what the scoreboard's grade column prints."""

    components: int
    correctly_rounded: int
    p99_bin: int | None  # over all graded components
    max_ulp: float | None


@dataclass(frozen=True)
class TailFinding:
    """A cell where this backend is far from the correctly rounded value and another backend is within a few ulps."""

    quantity: str
    dtype: str
    regime: str
    max_ulp: float
    better: str  # the most accurate other backend
    better_max_ulp: float


def fmt_bin(bucket: int | None) -> str:
    """A histogram bucket as the bound it guarantees: ``0``, ``≤ 1``, ``≤ 3``, ..., ``≥ 2^31``, ``∞``."""
    if bucket is None:
        return "—"
    if bucket == 0:
        return "0"
    if bucket >= _NONFINITE_BUCKET:
        return "∞"
    if bucket >= _OVERFLOW_BUCKET:
        return "≥ 2^31"
    return "≤ " + fmt_ulp(float(2 ** bucket - 1))


def _quantile_bin(hist: Sequence[int], q: float) -> int | None:
    total = sum(hist)
    if not total:
        return None
    need = math.ceil(q * total)
    run = 0
    for b, c in enumerate(hist):
        run += c
        if run >= need:
            return b
    return len(hist) - 1


def _worst(values: Iterable[Any]) -> float | None:
    out: float | None = None
    for v in values:
        f = num(v)
        if f is None:
            continue
        f = math.inf if math.isnan(f) else f
        out = f if out is None or f > out else out
    return out


def _graded(r: Mapping[str, Any]) -> bool:
    return r["status"] in ("pass", "fail") and bool(r.get("components")) and bool(r.get("ulp_hist"))


def grade_cells(records: Iterable[Mapping[str, Any]], quantity_rank: Any, dtypes: Sequence[str],
                regimes: Sequence[str]) -> tuple[GradeCell, ...]:
    """One cell per (quantity, dtype, regime) with a graded record, in spec, dtype and regime order."""
    hists: dict[tuple[str, str, str], list[int]] = {}
    maxes: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if not _graded(r):
            continue
        key = (r["quantity"], r["dtype"], r["regime"])
        if int(r.get("uninformative") or 0):
            counts[key][1] += 1
            continue
        counts[key][0] += 1
        h = r["ulp_hist"]
        acc = hists.setdefault(key, [0] * len(h))
        for i, c in enumerate(h[:len(acc)]):
            acc[i] += int(c)
        maxes[key].append(r.get("max_ulp"))
    d_idx = {d: i for i, d in enumerate(dtypes)}
    r_idx = {g: i for i, g in enumerate(regimes)}
    out = []
    for key in sorted(counts, key=lambda k: (quantity_rank(k[0]), d_idx.get(k[1], 99), r_idx.get(k[2], 99), k)):
        h = hists.get(key, [])
        out.append(GradeCell(key[0], key[1], key[2], counts[key][0], counts[key][1], sum(h), _worst(maxes[key]),
                             _quantile_bin(h, 0.99), _quantile_bin(h, 0.5), h[0] if h else 0, tuple(h)))
    return tuple(out)


def overall_grade(cells: Sequence[GradeCell]) -> Grade:
    """The grade over every graded component of every cell: components, correctly rounded, the p99 bin of all
    of them (not the worst cell's: the table shows those) and the worst max."""
    total: list[int] = []
    for c in cells:  # a cell whose every record is uninformative has no histogram: it adds nothing
        if len(c.hist) > len(total):
            total += [0] * (len(c.hist) - len(total))
        for i, n in enumerate(c.hist):
            total[i] += n
    comps = sum(c.components for c in cells)
    good = sum(c.correctly_rounded for c in cells)
    return Grade(comps, good, _quantile_bin(total, 0.99), _worst(c.max_ulp for c in cells))


def tail_findings(mine: Sequence[GradeCell], others: Mapping[str, Sequence[GradeCell]]) -> tuple[TailFinding, ...]:
    """Cells where this backend's worst component is ``FAR_ULPS`` or more off and another backend's is within
    ``NEAR_ULPS``; the most accurate other backend is named (ties: by name)."""
    best: dict[tuple[str, str, str], tuple[float, str]] = {}
    for name in sorted(others):
        for c in others[name]:
            if c.max_ulp is None:
                continue
            key = (c.quantity, c.dtype, c.regime)
            if key not in best or c.max_ulp < best[key][0]:
                best[key] = (c.max_ulp, name)
    out = []
    for c in mine:
        b = best.get((c.quantity, c.dtype, c.regime))
        if c.max_ulp is not None and b is not None and c.max_ulp >= FAR_ULPS and b[0] <= NEAR_ULPS:
            out.append(TailFinding(c.quantity, c.dtype, c.regime, c.max_ulp, b[1], b[0]))
    return tuple(out)


def grade_text(g: Grade) -> str:
    """A backend's grade in a few words ("p99 ≤ 7 ulp · 51.2% correctly rounded"), "—" when nothing was graded:
    the scoreboard's grade column and the verdict line of a page."""
    if not g.components:
        return "—"
    return f"p99 {fmt_bin(g.p99_bin)} ulp · {100 * g.correctly_rounded / g.components:.1f}% correctly rounded"
