"""The reference oracle engine: mpmath interval arithmetic over numpy object arrays.

Slow (pure Python arithmetic per component) and independent of the fast
engine: a different library, a different representation (endpoints, not
balls), a different implementation of every primitive. Its results define
what the other engines are checked against (tests/test_engines.py).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import mpmath
import numpy as np

from conformance.oracle.certify import Exact, certified_endpoints
from conformance.oracle.engines.base import Engine
from conformance.oracle.arith import IvOps, endpoints, iv_mid_float, to_iv

__all__ = ["MpmathEngine", "to_exact"]


def to_exact(arr: np.ndarray, *, waive_ties: bool = False) -> Exact | None:
    """Certify every interval of ``arr`` (inside ``mpmath.workprec`` of twice the interval precision)."""
    hi = np.empty(arr.shape, dtype=np.float64)
    lo = np.empty(arr.shape, dtype=np.float64)
    undecided = 0
    for idx, v in np.ndenumerate(arr):
        a, b = endpoints(v)
        got = certified_endpoints(a, b)
        if got is None and waive_ties:
            got = certified_endpoints(a, b, waive_ties=True)
            undecided += got is not None
        if got is None:
            return None
        hi[idx], lo[idx] = got
    return Exact(hi, lo, undecided)


class MpmathEngine(Engine):
    name = "mpmath"
    label = "mpmath-interval"
    library = "mpmath"

    def version(self) -> str:
        return str(mpmath.__version__)

    @contextmanager
    def precision(self, bits: int) -> Iterator[None]:
        iv = mpmath.iv
        saved = iv.prec
        iv.prec = bits
        try:
            yield
        finally:
            iv.prec = saved

    def ops(self) -> IvOps:
        return IvOps()

    def from_floats(self, arr: np.ndarray) -> np.ndarray:
        return to_iv(arr)

    def certify_array(self, value: Any, *, waive_ties: bool, bits: int) -> Exact | None:
        with mpmath.workprec(2 * bits):
            return to_exact(np.asarray(value), waive_ties=waive_ties)

    def approx(self, value: Any) -> np.ndarray:
        return iv_mid_float(value)

    def first_disjoint(self, a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
        for idx, x in np.ndenumerate(a):  # endpoint comparisons are exact at any precision
            (xa, xb), (ya, yb) = endpoints(x), endpoints(b[idx])
            if xb < ya or yb < xa:
                return tuple(int(i) for i in idx)
        return None

    def midpoint(self, value: Any) -> float:
        a, b = endpoints(value)
        with mpmath.workprec(2 * mpmath.iv.prec):
            return float((a + b) / 2)
