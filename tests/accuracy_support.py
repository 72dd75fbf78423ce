"""Running the accuracy tests' implementations over the spec, with the cases and the oracle shared.

The oracle's evaluation depends on the case only, so every implementation is
judged on the same cases, and each case is evaluated by the oracle once per
process (:class:`conformance.run.run.RunCache`).
"""

from __future__ import annotations

import os

from conformance.backend import DTYPES, FIRST_ORDER_KINDS
from conformance.results.document import Record
from conformance.run.run import Run, RunCache
from conformance.spec.model import Spec

from .accuracy_backends import target

__all__ = ["EXAMPLES", "SHARED_CACHE", "sweep"]


#: Cases per (shape family, magnitude) cell in the accuracy tests. The default keeps the suite's run time
#: sane (about 20 000 judged components per dtype per implementation); set GRADCONFORM_ACCURACY_EXAMPLES
#: to 2, 4, 8... for a larger sweep (the spec's own counts are 2 to 4).
EXAMPLES = int(os.environ.get("GRADCONFORM_ACCURACY_EXAMPLES", "1"))

#: Cases and oracle evaluations, shared by every implementation run in this process.
SHARED_CACHE = RunCache()
_RECORDS: dict[tuple[str, int, int, tuple[str, ...]], tuple[Spec, list[Record]]] = {}


def sweep(spec: Spec, name: str, *, examples: int = EXAMPLES, cache: RunCache | None = None,
          dtypes: tuple[str, ...] = DTYPES) -> list[Record]:
    """Every record of implementation ``name`` over every layout, dtype and regime of ``spec`` (of the kinds it
    computes: the kinds it does not list are declined, and those records are left out), but the wide regimes
    (slow, and the FMA emulation takes minutes there; tests/test_wide.py checks the implementations at width)."""
    key = (name, examples, id(spec), dtypes)  # the spec is kept alive in the value: its id stays unique
    if key not in _RECORDS:
        out: list[Record] = []
        with Run(spec, target(name), isolate=False, examples=examples, cache=cache or SHARED_CACHE) as run:
            for layout in spec.layouts:
                for dtype in dtypes:
                    for regime in (r for r in spec.regimes if not spec.is_wide(r)):  # width: tests/test_wide.py
                        # the implementations are hand-written first order (no quantity_kinds): their records of
                        # the forward-mode and second-order kinds are "not supported, never asked", left out here
                        out.extend(r for r in run.group(layout, dtype, regime).records
                                   if r.kind in FIRST_ORDER_KINDS or r.detail != "declined")
        _RECORDS[key] = (spec, out)
    return _RECORDS[key][1]
