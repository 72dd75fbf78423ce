"""Uninformative checks: where a pass says only "not absurd", per quantity x dtype x regime.

A component's check is uninformative when its bound B is at least as large as
its exact value (``|B| >= |exact|``): then any answer between 0 and twice
the exact value, of the right sign, passes, and a pass there is no evidence of
accuracy. The results file counts them in its ``summary`` (conformance/results/
summary.py); the backend page shows the cells that have any in a table and the
scoreboard notes each backend's share in the 16-bit dtypes, so that nobody
reads a bfloat16 pass as a bfloat16 accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from conformance.results.summary import summarize

__all__ = ["UninformativeCell", "UninformativeRow", "uninformative_rows", "uninformative_cells", "uninformative_by_dtype", "scoreboard_note",
           "SIXTEEN_BIT"]

#: The dtypes whose share the scoreboard notes (where most uninformative checks are).
SIXTEEN_BIT = ("float16", "bfloat16")


@dataclass(frozen=True)
class UninformativeCell:
    quantity: str
    dtype: str
    regime: str
    records: int
    components: int
    uninformative: int
    passing_records: int  # passing records with at least one uninformative component

    @property
    def share(self) -> float:
        return self.uninformative / self.components if self.components else 0.0


@dataclass(frozen=True)
class UninformativeRow:
    """One quantity and dtype of the page's table: its cell in each regime (None: none there)."""

    quantity: str
    dtype: str
    cells: tuple[UninformativeCell | None, ...]


def uninformative_rows(cells: Sequence[UninformativeCell], regimes: Sequence[str]) -> tuple[UninformativeRow, ...]:
    """The cells as rows of quantity x dtype with a column per regime (a page stays small on a whole run),
    in the order of ``cells``."""
    rows: dict[tuple[str, str], dict[str, UninformativeCell]] = {}
    for c in cells:
        rows.setdefault((c.quantity, c.dtype), {})[c.regime] = c
    return tuple(UninformativeRow(q, d, tuple(by.get(g) for g in regimes)) for (q, d), by in rows.items())


def _summary(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document's summary; computed from its records when the file predates the summary."""
    s = doc.get("summary")
    return s if isinstance(s, Mapping) and "uninformative" in s else summarize(doc.get("records", []))


def uninformative_cells(doc: Mapping[str, Any], quantity_rank: Callable[[str], Any], dtypes: Sequence[str],
                        regimes: Sequence[str]) -> tuple[UninformativeCell, ...]:
    """The cells with at least one uninformative component, in spec, dtype and regime order."""
    d_idx = {d: i for i, d in enumerate(dtypes)}
    r_idx = {g: i for i, g in enumerate(regimes)}
    cells = [UninformativeCell(str(c["quantity"]), str(c["dtype"]), str(c["regime"]), int(c["records"]),
                               int(c["components"]), int(c["uninformative"]),
                               int(c["passing_records_with_uninformative"]))
             for c in _summary(doc)["uninformative"] if int(c["uninformative"])]
    return tuple(sorted(cells, key=lambda c: (quantity_rank(c.quantity), d_idx.get(c.dtype, 99),
                                               r_idx.get(c.regime, 99), c.quantity, c.dtype, c.regime)))


def uninformative_by_dtype(doc: Mapping[str, Any], dtypes: Sequence[str]) -> dict[str, tuple[int, int]]:
    """dtype -> (uninformative components, compared components), in dtype order."""
    d_idx = {d: i for i, d in enumerate(dtypes)}
    rows = _summary(doc).get("uninformative_by_dtype")
    if rows is None:
        rows = summarize(doc.get("records", []))["uninformative_by_dtype"]
    return {str(r["dtype"]): (int(r["uninformative"]), int(r["components"]))
            for r in sorted(rows, key=lambda r: d_idx.get(r["dtype"], 99))}


def scoreboard_note(by_dtype: Mapping[str, tuple[int, int]]) -> str:
    """One line for the scoreboard: the uninformative share of each 16-bit dtype that has any ("" if none)."""
    parts = [f"{d} {100 * u / n:.0f}%" for d in SIXTEEN_BIT
             for u, n in [by_dtype.get(d, (0, 0))] if n and u]
    if not parts:
        return ""
    return ("uninformative checks (bound ≥ |exact|, a pass there is not accuracy): " + ", ".join(parts)
            + " of components")
