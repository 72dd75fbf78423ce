"""What the checks of a run add to its results file: typed records, collected through one interface.

Besides the records of each group (computed by the run itself), a results
file lists the outcome of each test, the shrunk counterexamples of failing
tests, the refutations of the spec's negative identities and the metamorphic
properties' outcomes. The checks and the pytest view hand these to
:meth:`ResultsCollector.record` as frozen records; each says which section of
the results file it belongs to and how it is written there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from conformance.cases.generate import Case
from conformance.results.document import Record

__all__ = ["SECTIONS", "CollectedRecord", "TestRecord", "CounterexampleRecord", "ResultsCollector"]

#: the sections of a results file that collected records go to, in the file's order
SECTIONS = ("counterexamples", "tests", "refutations", "metamorphic")


class CollectedRecord(Protocol):
    """A record for the results file: its section and its JSON form. Implemented by the records below
    and by the checks' outcomes (conformance.checks.negative.Refutation,
    conformance.checks.metamorphic.MetamorphicResult)."""

    section: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TestRecord:
    """The outcome of one test (``passed``, ``failed``, ``not_supported``...) and, unless it passed, why."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name
    section: ClassVar[str] = "tests"

    nodeid: str
    outcome: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "outcome": self.outcome, "message": self.message}


@dataclass(frozen=True)
class CounterexampleRecord:
    """The minimal case hypothesis found for a failing quantity test, its records and the rerun command."""

    section: ClassVar[str] = "counterexamples"

    quantity: str
    layout: str
    dtype: str
    regime: str
    case: Case
    records: tuple[Record, ...]
    rerun: str

    def to_json(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "layout": self.layout, "dtype": self.dtype, "regime": self.regime,
                "case": self.case.to_json(), "records": [r.to_json() for r in self.records], "rerun": self.rerun}


class ResultsCollector:
    """The collected records of a run, by section, in the order they came."""

    def __init__(self) -> None:
        self._items: dict[str, list[CollectedRecord]] = {s: [] for s in SECTIONS}

    def record(self, item: CollectedRecord) -> None:
        """Add one record to its section. Raises ValueError for a section a results file does not have."""
        if item.section not in self._items:
            raise ValueError(f"no section {item.section!r} in a results file (expected one of {', '.join(SECTIONS)})")
        self._items[item.section].append(item)

    def has(self, section: str) -> bool:
        """Whether some record of ``section`` was collected."""
        return bool(self._items[section])

    def sections_json(self) -> dict[str, list[dict[str, Any]]]:
        """Each section as the results file writes it."""
        return {s: [i.to_json() for i in items] for s, items in self._items.items()}
