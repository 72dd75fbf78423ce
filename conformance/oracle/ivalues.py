"""Interval values of arbitrary expressions on one set of inputs, sharing every sub-expression.

The oracle (:mod:`conformance.oracle.evaluate`) certifies the spec's own quantities;
lint, the diagnosis and ``gradconform check`` also need the values of formulas
that are *not* in the spec (a confusion, a candidate, a formula with a term
dropped). They are evaluated here in interval arithmetic at a fixed precision
(128 bits by default), so "these two differ" is rigorous (disjoint intervals)
and a float64 approximation of each value is at hand.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import mpmath
import numpy as np

from conformance.expr import Expr, interpret
from conformance.errors import OracleError
from conformance.oracle.arith import DomainError, IvOps, endpoints, iv_mid_float, to_iv
from conformance.spec.model import Layout

__all__ = ["IntervalEnv", "precision", "first_difference", "DEFAULT_BITS"]

DEFAULT_BITS = 128


@contextmanager
def precision(bits: int) -> Iterator[None]:
    """Run a block at ``bits`` bits of interval precision (mpmath's is global state)."""
    saved = mpmath.iv.prec
    mpmath.iv.prec = bits
    try:
        yield
    finally:
        mpmath.iv.prec = saved


class IntervalEnv:
    """The inputs and forward values of one case as intervals; ``value(expr)`` for any expression over them."""

    def __init__(self, layout: Layout, inputs: Mapping[str, np.ndarray], *, bits: int = DEFAULT_BITS) -> None:
        self.layout = layout
        self.bits = bits
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        self.cache: dict[Expr, Any] = {}
        self.ops = IvOps()
        with precision(bits):
            self.env: dict[str, Any] = {k: to_iv(v) for k, v in self.inputs.items()}
            for d in layout.forward:
                try:
                    self.env[d.name] = interpret(d.expr, self.env, self.ops, self.cache)
                except (DomainError, ZeroDivisionError, OverflowError, ValueError) as exc:
                    raise OracleError(f"the forward definition {d.name} = {d.text} cannot be evaluated on generic "
                                      f"inputs: {exc}") from None

    def value(self, expr: Expr) -> np.ndarray | None:
        """Interval array of ``expr``, or None where it cannot be evaluated (not conformable, outside a domain)."""
        with precision(self.bits):
            try:
                return np.asarray(interpret(expr, self.env, self.ops, self.cache))
            except (DomainError, ValueError, ZeroDivisionError, IndexError):
                return None

    def approx(self, expr: Expr) -> np.ndarray | None:
        """float64 approximation (interval midpoints) of ``expr``."""
        v = self.value(expr)
        return None if v is None else iv_mid_float(v)

    def nodes(self) -> dict[Expr, np.ndarray]:
        """float64 approximations of every sub-expression evaluated so far (what an error bound needs)."""
        return {e: iv_mid_float(np.asarray(v)) for e, v in self.cache.items()}


def first_difference(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, ...], float, float] | None:
    """The first component where two interval arrays are disjoint (rigorously different), or None."""
    a, b = np.broadcast_arrays(a, b)
    for idx in np.ndindex(a.shape):
        (a0, a1), (b0, b1) = endpoints(a[idx]), endpoints(b[idx])
        if a1 < b0 or b1 < a0:
            return tuple(int(i) for i in idx), float((a0 + a1) / 2), float((b0 + b1) / 2)
    return None
