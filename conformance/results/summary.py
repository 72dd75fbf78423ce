"""The results file's ``summary``: aggregates of the records that a reader must see beside the verdict.

A pass says a result is within what a correct evaluation may produce; it does
not always say the result is accurate. Where a component's bound B is at
least as large as the exact value itself (``|B| >= |exact|``), *any* answer
between 0 and twice the exact value passes, so the check is **uninformative**
about relative accuracy: this is common in float16 and bfloat16, where the
bound of a cancelling gradient can exceed the gradient. The summary counts
those components per quantity x dtype x regime, so that a report can say how
much of a pass is accuracy and how much is only "not absurd".

The summary is a pure function of the records (:func:`summarize`): it is
written with the document, recomputed when documents are merged, and a
reader of an older file without one can compute it the same way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

__all__ = ["summarize", "uninformative_cells"]

#: Records whose components were compared (the others carry no counts).
_COMPARED = ("pass", "fail")


def uninformative_cells(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (quantity, dtype, regime), in first-seen order: the compared records and components, the components
    whose bound is at least their exact value (``uninformative``), and the passing records with any."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        if r.get("status") not in _COMPARED or not r.get("components"):
            continue
        key = (str(r["quantity"]), str(r["dtype"]), str(r["regime"]))
        c = cells.get(key)
        if c is None:
            c = cells[key] = {"quantity": key[0], "dtype": key[1], "regime": key[2], "records": 0,
                              "components": 0, "uninformative": 0, "passing_records_with_uninformative": 0}
        u = int(r.get("uninformative") or 0)
        c["records"] += 1
        c["components"] += int(r["components"])
        c["uninformative"] += u
        if u and r["status"] == "pass":
            c["passing_records_with_uninformative"] += 1
    return list(cells.values())


def _by_dtype(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        acc[c["dtype"]][0] += int(c["uninformative"])
        acc[c["dtype"]][1] += int(c["components"])
    return [{"dtype": d, "uninformative": u, "components": n} for d, (u, n) in acc.items()]


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``summary`` section of a results document (docs/results.md, "Summary")."""
    records = list(records)
    cells = uninformative_cells(records)
    return {"uninformative": cells, "uninformative_by_dtype": _by_dtype(cells)}
