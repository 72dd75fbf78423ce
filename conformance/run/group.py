"""A group: the unit a run computes at once, one (layout, dtype, regime) with its cases and records."""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.cases.generate import Case
from conformance.results.document import Record

__all__ = ["Group"]


@dataclass
class Group:
    """The cases of one (layout, dtype, regime), the records of every quantity on them, the oracle's
    precision per case and the seconds the group took. Filled once by the run, then only read."""

    layout: str
    dtype: str
    regime: str
    cases: list[Case] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    precision: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def for_quantity(self, quantity: str) -> list[Record]:
        return [r for r in self.records if r.quantity == quantity]
