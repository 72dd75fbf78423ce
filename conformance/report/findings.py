"""Findings: a backend's failure groups gathered by cause, so that a page opens with a dozen answers, not 264 rows.

A failure group is one pytest test (quantity × layout × dtype × regime). Two
groups share a cause when, in the same regime, they show the same symptom
(the commonest ``status (detail)`` of their failing records) from the same
threshold (the first failing magnitude) in each dtype: one finding then
names the set of quantities, e.g. "L, dL/dtheta, ... return NaN/inf in regime
large_logits from magnitude 1000 in float64, 100 in float32 and bfloat16".

The grouping is a partition: every failure group belongs to exactly one
finding. When the finest grouping gives more than ``MAX_FINDINGS`` findings it
is coarsened step by step (the dtype thresholds dropped, then the symptom),
never truncated. Order and content depend only on the failure groups, so the
same results file gives the same findings.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .failures import FailureGroup, ratio_key
from .numbers import fmt_magnitude

__all__ = ["Finding", "findings", "MAX_FINDINGS"]

#: About as many findings as a reader takes in before the tables.
MAX_FINDINGS = 12

_SYMPTOMS = {
    "fail (nonfinite)": "return NaN or ±inf where the exact value is finite",
    "fail (out_of_bound)": "are further from the exact value than the error bound allows",
    "fail (wrong_shape)": "have the wrong shape",
    "fail (wrong_dtype)": "have the wrong dtype",
    "fail (missing)": "are missing",
    "fail (not_array)": "are not arrays",
    "error": "raise an exception",
    "crashed": "crash the backend's worker process",
    "timed_out": "time out",
}


@dataclass(frozen=True)
class Finding:
    """Failure groups with one cause: what a finding card shows."""

    anchor: str
    regime: str
    regime_description: str
    symptom: str  # "fail (nonfinite)", or "mixed" once coarsened over symptoms
    quantities: tuple[str, ...]
    thresholds: tuple[tuple[str, float | None], ...]  # (dtype, first failing magnitude) in dtype order
    groups: tuple[FailureGroup, ...]
    sentence: str
    short: str = ""  # the sentence without the regime's description: the scoreboard's line

    @property
    def bad(self) -> int:
        return sum(g.bad for g in self.groups)

    @property
    def total(self) -> int:
        return sum(g.total for g in self.groups)

    @property
    def worst(self) -> FailureGroup:
        """The group holding the worst case (a graded fail first, then the largest error/allowed)."""
        return max(self.groups, key=lambda g: (g.worst.status == "fail", ratio_key(g.worst.ratio), g.anchor))

    @property
    def counterexample(self) -> FailureGroup | None:
        """The group whose minimal counterexample is smallest in magnitude (None when no group has one)."""
        with_cex = [g for g in self.groups if g.counterexample is not None]
        return min(with_cex, key=lambda g: (_mag(g.counterexample.magnitude), g.anchor)) if with_cex else None  # type: ignore[union-attr]


def _mag(m: float | None) -> float:
    return m if m is not None else float("-inf")


def _symptom(g: FailureGroup) -> str:
    return max(g.breakdown, key=lambda kv: (kv[1], kv[0]))[0] if g.breakdown else "fail"


def _threshold(g: FailureGroup) -> float | None:
    return g.failing_magnitudes[0] if g.failing_magnitudes else None


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(regime: str, description: str, symptom: str, quantities: Sequence[str],
              thresholds: Sequence[tuple[str, float | None]], cause: str) -> str:
    qs = _join([f"{q}" for q in quantities]) if len(quantities) <= 6 else f"{len(quantities)} quantities ({', '.join(quantities[:4])}, …)"
    what = _SYMPTOMS.get(symptom, "fail in several ways")
    if len(quantities) == 1:  # the verb agrees with one quantity
        first, _, rest = what.partition(" ")
        what = {"are": "is", "have": "has", "time": "times", "crash": "crashes"}.get(first, first + "s") + " " + rest
    by_mag: dict[float | None, list[str]] = defaultdict(list)
    for d, m in thresholds:
        by_mag[m].append(d)
    parts = [(f"from magnitude {fmt_magnitude(m)}" if m is not None else "on every case") + f" in {_join(ds)}"
             for m, ds in by_mag.items()]
    where = f"in regime {regime}" + (f" ({description})" if description else "")
    because = f": {cause}" if cause else ""
    return f"{qs} {what} {where}, {'; '.join(parts)}{because}."


def findings(groups: Sequence[FailureGroup], quantity_rank: Callable[[str], object], dtypes: Sequence[str],
             regimes: Sequence[str], regime_descriptions: Mapping[str, str] | None = None) -> tuple[Finding, ...]:
    """The failure groups gathered by cause, at most ``MAX_FINDINGS`` where the coarsest grouping allows; the
    sentence quotes the diagnosis of the worst record ("an overflow, 0/0 or log(0) on the way")."""
    descriptions = regime_descriptions or {}
    d_idx = {d: i for i, d in enumerate(dtypes)}
    r_idx = {r: i for i, r in enumerate(regimes)}
    # the cause signature of a (quantity, regime): per dtype its symptom and threshold, over layouts
    cell: dict[tuple[str, str], dict[str, list[FailureGroup]]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        cell[(g.quantity, g.regime)][g.dtype].append(g)

    def signature(q: str, reg: str, level: int) -> tuple[object, ...]:
        per_dtype = cell[(q, reg)]
        gs = [g for d in per_dtype for g in per_dtype[d]]
        symptom = Counter(_symptom(g) for g in gs).most_common()
        sym = min(s for s, n in symptom if n == symptom[0][1])
        if level == 0:
            th = tuple(sorted(((d, min((_threshold(g) for g in per_dtype[d]), key=_mag)) for d in per_dtype),
                              key=lambda t: d_idx.get(t[0], 99)))
            return (reg, sym, th)
        return (reg, sym) if level == 1 else (reg,)

    for level in (0, 1, 2):
        buckets: dict[tuple[object, ...], list[tuple[str, str]]] = defaultdict(list)
        for q, reg in cell:
            buckets[signature(q, reg, level)].append((q, reg))
        if len(buckets) <= MAX_FINDINGS:
            break
    out = []
    for sig, members in buckets.items():
        reg = str(sig[0])
        qs = sorted({q for q, _ in members}, key=lambda q: (quantity_rank(q), q))
        gs = sorted((g for q, r in members for d in cell[(q, r)] for g in cell[(q, r)][d]),
                    key=lambda g: (quantity_rank(g.quantity), g.quantity, d_idx.get(g.dtype, 99), g.layout, g.anchor))
        symptom = str(sig[1]) if len(sig) > 1 else (_symptom(gs[0]) if len({_symptom(g) for g in gs}) == 1 else "mixed")
        th: dict[str, float | None] = {}
        for g in gs:
            t = _threshold(g)
            if g.dtype not in th or _mag(t) < _mag(th[g.dtype]):
                th[g.dtype] = t
        thresholds = tuple(sorted(th.items(), key=lambda t: d_idx.get(t[0], 99)))
        worst = max(gs, key=lambda g: (g.worst.status == "fail", ratio_key(g.worst.ratio), g.anchor))
        sentence = _sentence(reg, descriptions.get(reg, ""), symptom, qs, thresholds, worst.cause)
        short = _sentence(reg, "", symptom, qs, thresholds, worst.cause)
        out.append(Finding("finding-" + worst.anchor[len("fail-"):], reg, descriptions.get(reg, ""), symptom, tuple(qs),
                           thresholds, tuple(gs), sentence, short))
    out.sort(key=lambda f: (r_idx.get(f.regime, 99), -f.bad, f.anchor))
    return tuple(out)
