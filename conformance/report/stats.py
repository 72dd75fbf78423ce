"""Counting rules of every report: statuses of a set of records and their worst errors.

The same everywhere in the reports:

* a check is one record, i.e. one quantity on one case;
* ``pass`` is the only status that counts as a pass; ``not_supported`` is
  counted apart (never as a pass, never as a failure); ``fail``, ``error``,
  ``crashed`` and ``timed_out`` are failures, each counted under its own name;
* a worst error is the maximum over the records that carry one (a pass or a
  graded fail); NaN counts as infinite.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from conformance.formats import DTYPES
from conformance.statuses import STATUSES

from .numbers import worst

__all__ = ["STATUSES", "FAILING", "DTYPE_ORDER", "Stats", "stats"]

#: Statuses that make a check fail.
FAILING = ("fail", "error", "crashed", "timed_out")
DTYPE_ORDER = DTYPES  # one tuple: conformance.formats


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
    """Counts and worst errors of ``records``: the figure of every table cell."""
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

