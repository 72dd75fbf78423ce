"""An on-disk cache of error bounds, beside the oracle's results they are computed from.

A case's bounds (conformance/bounds.py) are a pure function of the oracle's
node values, the inputs, the dtype and the spec's tolerance policy, so a rerun
of the same cases can read them instead of recomputing them: this is what is
left of a case's cost, besides the backend and the comparison, once the oracle
is cached. An entry is keyed by the oracle entry's key, the dtype, the policy,
and the source of the modules that compute bounds; it holds one array per
expression, computed on first use. An expression whose bound raises is never
stored (the run records the error each time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from conformance.judge.bounds import ErrorBounds
from conformance.cache.store import BlobStore, CacheAuditError, key_digest
from conformance import expr, formats, primitives
from conformance.cache.keys import code_hash
from conformance.cache.oracle_cache import OracleCache
from conformance.judge import axes, bounds, stacked_bounds, xent_allowance
from conformance.spec import loader, model

if TYPE_CHECKING:  # pragma: no cover
    from conformance.oracle.engines.base import Engine
    from conformance.expr import Expr
    from conformance.oracle.evaluate import OracleEvaluation
    from conformance.spec.model import Identity, Layout, TolerancePolicy

__all__ = ["CachedBounds"]

# the code an error bound depends on (xent_allowance was missing until the stacked bounds: a change to it did not
# invalidate stored bounds)
_SOURCES = (bounds, xent_allowance, axes, stacked_bounds, formats, expr, primitives, model, loader)


class CachedBounds:
    """``bound(expr)`` as :class:`~conformance.judge.bounds.ErrorBounds` gives it, read from the cache where stored.

    Call :meth:`flush` once the case's bounds are computed, to store the new ones.
    """

    def __init__(self, oracle_cache: OracleCache, engine: "Engine", layout: "Layout", ev: "OracleEvaluation",
                 inputs: Mapping[str, np.ndarray], identities: Sequence["Identity"], dtype: str,
                 policy: "TolerancePolicy", start_bits: int, *, live: Callable[[], Any] | None = None) -> None:
        self.store: BlobStore = oracle_cache.bounds_store
        self._args = (layout, ev.nodes, inputs, dtype, policy)
        # what computes the bounds the cache lacks (or audits): the case's ErrorBounds unless given (one case of
        # a stack, conformance.judge.stacked_bounds, whose bounds are the same bit for bit)
        self._make_live: Callable[[], Any] = live if live is not None else (lambda: ErrorBounds(*self._args))
        self.key = {"kind": "bounds", "oracle": key_digest(oracle_cache.key(engine, layout, inputs, identities,
                                                                             start_bits)),
                    "dtype": dtype, "policy": repr(policy), "code": code_hash(*_SOURCES)}
        entry = self.store.get(self.key)
        self._stored: dict[str, np.ndarray] = {}
        if entry is not None:
            names = entry.meta.get("exprs", [])
            self._stored = {e: entry.arrays[f"b{i}"] for i, e in enumerate(names) if f"b{i}" in entry.arrays}
        self._audit = entry is not None and self.store.audit()  # re-derive this entry's bounds and compare
        self._mismatch: list[str] = []
        self._live: Any = None
        self._new: dict[str, np.ndarray] = {}

    def bound(self, expr: "Expr", kind: str | None = None) -> np.ndarray:
        second = kind in bounds.SECOND_ORDER_KINDS
        k = repr(expr) + (" [second order]" if second else "")
        hit = self._stored.get(k)
        if hit is not None and not self._audit:
            return hit
        if self._live is None:
            self._live = self._make_live()
        b = self._live.bound(expr, kind if second else None)
        if hit is None:
            self._new[k] = b
        elif not np.array_equal(np.asarray(b, dtype=np.float64), hit, equal_nan=True):
            self._mismatch.append(k)
        return b

    def flush(self) -> None:
        """Store the bounds computed since the entry was read; raise CacheAuditError where an audited stored bound
        differs from the fresh one (here, outside the per-quantity error handling, so that it stops the run)."""
        if self._mismatch:
            raise CacheAuditError(f"an audited bounds cache entry under {self.store.dir} differs from the bounds "
                                  f"computed afresh (for {len(self._mismatch)} expression(s), first "
                                  f"{self._mismatch[0][:200]}): the cache cannot be trusted; delete it")
        if not self._new:
            return
        merged = {**self._stored, **self._new}
        names = list(merged)
        self.store.put(self.key, {f"b{i}": np.asarray(merged[e], dtype=np.float64) for i, e in enumerate(names)},
                       {"exprs": names})
        self._new = {}
