"""Splitting a run across machines (``--shard i/N``) and across xdist workers, by whole groups.

The unit of work is a group: one (layout, dtype, regime), whose cases are
generated, evaluated by the oracle and sent to the backend once for all of
its tests; or one spec identity (its backend-free verification). Splitting a
group would compute it twice, so shards and xdist workers get whole units.

The split is deterministic: it depends only on the spec and the examples
setting, so every machine computes the same assignment without talking to
the others. Units are weighed by their number of cases (what dominates their
cost) and dealt out greedily, heaviest first, each to the least loaded shard
(ties to the lowest shard, then by name), which keeps the shards within one
group's weight of each other.
"""

from __future__ import annotations

import re
from typing import Mapping

from conformance.formats import DTYPES
from conformance.spec.model import Spec
from conformance.spec.predicates import identity_applies_to_regime

__all__ = ["Shard", "parse_shard", "group_units", "assign", "unit_of"]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: weight of one spec identity's verification, in cases (measured: about as costly as 4 seed-shape cases)
SPEC_IDENTITY_WEIGHT = 4


class Shard(tuple):
    """(index, count), 1-based: ``Shard(1, 3)`` is the first of three."""

    def __new__(cls, index: int, count: int) -> "Shard":
        return super().__new__(cls, (index, count))

    @property
    def index(self) -> int:
        return self[0]

    @property
    def count(self) -> int:
        return self[1]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/5"`` -> Shard(2, 5). Raises ValueError with a message a person can act on."""
    m = _SHARD.match(text or "")
    if not m:
        raise ValueError(f"--shard expects i/N (for example 1/4), not {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text}: the index must be between 1 and the number of shards ({n})")
    return Shard(i, n)


def group_units(spec: Spec, examples: int | None = None) -> dict[tuple[str, ...], int]:
    """Every unit of work of the spec with its weight (its number of cases)."""
    units: dict[tuple[str, ...], int] = {}
    dtypes = [d for d in DTYPES if d in spec.tolerance.accumulate]
    for lname, lay in spec.layouts.items():
        for dtype in dtypes:
            for regime, reg in spec.regimes.items():
                n = examples if examples is not None else reg.examples
                units[("group", lname, dtype, regime)] = max(1, n * len(spec.families_for(reg)) * len(reg.magnitudes))
        for ident in lay.identities:
            if any(identity_applies_to_regime(spec, ident, r) for r in spec.regimes):
                units[("spec", ident.id, lname)] = SPEC_IDENTITY_WEIGHT
            else:
                units[("spec", ident.id, lname)] = 1
    return units


def assign(units: Mapping[tuple[str, ...], int], count: int) -> dict[tuple[str, ...], int]:
    """Unit -> shard index (1-based), by greedy longest-processing-time-first."""
    load = [0] * count
    out: dict[tuple[str, ...], int] = {}
    for unit, weight in sorted(units.items(), key=lambda kv: (-kv[1], kv[0])):
        k = min(range(count), key=lambda j: (load[j], j))
        load[k] += weight
        out[unit] = k + 1
    return out


def unit_of(params: Mapping[str, object]) -> tuple[str, ...] | None:
    """The unit of a generated test, from its parameters (None for a test that is not the suite's)."""
    for name in ("forward_item", "identity_item"):
        if name in params:
            _, layout, dtype, regime = params[name]  # type: ignore[misc]
            return ("group", str(layout), str(dtype), str(regime))
    if "spec_identity_item" in params:
        ident, layout = params["spec_identity_item"]  # type: ignore[misc]
        return ("spec", str(ident), str(layout))
    return None
