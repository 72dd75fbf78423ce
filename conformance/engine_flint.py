"""The fast oracle engine: Arb ball arithmetic (python-flint), with a certified radius on every value.

Values are numpy object arrays of ``flint.arb`` balls (midpoint and radius;
every operation returns a ball that contains the exact result). Elementwise
operations go through numpy's object loops into Arb's C code; matrix
products go through ``arb_mat`` (one C call per product, with Arb's accurate
dot products). Primitives are written to stay tight where a naive formula
would lose everything: sigmoid as 1 / (1 + exp(-x)) (monotone, no
cancellation), softmax and logsumexp shifted by the largest midpoint.

Certification applies the one rule of :mod:`conformance.certification`. A
vectorised fast path accepts a component when, from its float64 rounding
``hi`` and the ball ``x - hi``, both ends of the ball provably round to
``hi``, the ball is far narrower than 2**-93 of the value, and ``hi`` is not a
rounding midpoint of a narrower format; every other component (zeros, tiny or
non-finite values, midpoints, wide balls) goes through the exact rule on the
ball's endpoints, converted exactly to mpmath. A ball too wide for the rule is
never used: the oracle raises the precision and evaluates again.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from fractions import Fraction
from typing import Any, Iterator, Mapping

import flint
import mpmath
import numpy as np
from flint import arb, arb_mat
from mpmath.libmp import from_man_exp, mpf_add, mpf_neg

from .certification import Exact, certified_endpoints, half_ulp_inside, narrow_midpoint_mask
from .engine import Engine
from .expr import Ops
from .mparith import DomainError

__all__ = ["FlintEngine", "ArbOps", "to_arb", "arb_certify", "arb_approx"]

_ctx = flint.ctx
_float = np.frompyfunc(float, 1, 1)
_to_arb = np.frompyfunc(arb, 1, 1)
_make_mpf = mpmath.mp.make_mpf
_FAST_MIN = 2.0 ** -960  # below this magnitude, the exact rule decides (underflow, TINY)
_REL = 2.0 ** -96  # fast path: radius at most this fraction of |hi| (the rule asks 2**-93)
_TINY = arb(2) ** -1100  # exact: certification.TINY


def _array(values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def to_arb(arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float array (any binary format numpy knows) to point balls."""
    a = np.asarray(arr).astype(np.float64)
    return _array([arb(v) for v in a.reshape(-1).tolist()], a.shape)


# --------------------------------------------------------------------------- primitives on one ball

def _log(x: arb) -> arb:
    if x > 0:
        return x.log()
    if x < 0:
        raise DomainError(f"log of a negative number ({float(x.upper()):.5g})")
    if x.is_zero():
        return arb.neg_inf()
    if x <= 0:  # [-r, 0]: log is -inf or undefined; not decidable at this precision
        return arb.nan()
    return arb(0, math.inf)  # contains 0 and positive numbers: no finite enclosure; precision must rise


def _sigmoid(x: arb) -> arb:
    return 1 / (1 + (-x).exp())


def _tanh(x: arb) -> arb:
    return x.tanh()


def _relu(x: arb) -> arb:
    if x >= 0:
        return x
    if x <= 0:
        return arb(0)
    return x.max(0)


_STEP_BOTH = arb(0.5, 0.5)


def _step(x: arb) -> arb:
    if x > 0:
        return arb(1)
    if x <= 0:
        return arb(0)
    return _STEP_BOTH


_exp = np.frompyfunc(lambda x: x.exp(), 1, 1)
_logv = np.frompyfunc(_log, 1, 1)
_sigmoidv = np.frompyfunc(_sigmoid, 1, 1)
_tanhv = np.frompyfunc(_tanh, 1, 1)
_reluv = np.frompyfunc(_relu, 1, 1)
_stepv = np.frompyfunc(_step, 1, 1)


def _to_mat(x: np.ndarray) -> arb_mat:
    r, c = x.shape
    return arb_mat(r, c, x.reshape(-1).tolist())


def _from_mat(m: arb_mat) -> np.ndarray:
    return _array(m.entries(), (m.nrows(), m.ncols()))


def _sum_axis(x: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return _array([sum(x.reshape(-1).tolist(), arb(0))], (1, 1))
    return np.sum(x, axis=axis, keepdims=True)


def _shift(x: np.ndarray, axis: int | None) -> np.ndarray:
    """A point near the maximum along ``axis`` (any shift is exact for softmax; this one avoids overflow)."""
    mids = arb_approx(x)
    with np.errstate(all="ignore"):
        m = np.max(mids) if axis is None else np.max(mids, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return to_arb(np.full((1, 1), m) if axis is None else m)


class ArbOps(Ops[np.ndarray]):
    """Ball arithmetic on object arrays at ``flint.ctx.prec`` bits."""

    def const(self, value: Fraction) -> np.ndarray:
        v = arb(value.numerator) / value.denominator if value.denominator != 1 else arb(value.numerator)
        return _array([v], (1, 1))

    def neg(self, x: np.ndarray) -> np.ndarray:
        return -x

    def add(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x + y

    def sub(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x - y

    def mul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x * y

    def div(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if any(v.contains(0) for v in y.reshape(-1).tolist()):
            raise DomainError("division by a quantity that is (or may be) zero")
        return x / y

    def matmul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if x.shape[1] != y.shape[0]:
            raise ValueError(f"matmul: shapes {x.shape} and {y.shape} are not conformable")
        return _from_mat(_to_mat(x) * _to_mat(y))

    def pow(self, x: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return _array([arb(1)] * x.size, x.shape)
        return x ** n

    def transpose(self, x: np.ndarray) -> np.ndarray:
        return x.T

    def fn_exp(self, x: np.ndarray) -> np.ndarray:
        return _exp(x)

    def fn_log(self, x: np.ndarray) -> np.ndarray:
        return _logv(x)

    def fn_sigmoid(self, x: np.ndarray) -> np.ndarray:
        return _sigmoidv(x)

    def fn_tanh(self, x: np.ndarray) -> np.ndarray:
        return _tanhv(x)

    def fn_relu(self, x: np.ndarray) -> np.ndarray:
        return _reluv(x)

    def fn_step(self, x: np.ndarray) -> np.ndarray:
        return _stepv(x)

    def fn_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        e = _exp(x - _shift(x, axis))
        return e / _sum_axis(e, axis)

    def fn_logsumexp(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        m = _shift(x, axis)
        return m + _logv(_sum_axis(_exp(x - m), axis))

    def fn_log_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return x - self.fn_logsumexp(x, axis)

    def fn_sum(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return _sum_axis(x, axis)

    def fn_mean(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        count = x.size if axis is None else x.shape[axis]
        return _sum_axis(x, axis) / count

    def fn_Diag(self, x: np.ndarray) -> np.ndarray:
        v = x.reshape(-1)
        out = _array([arb(0)] * (v.size * v.size), (v.size, v.size))
        out[np.arange(v.size), np.arange(v.size)] = v
        return out

    def fn_outer(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.matmul(u.reshape(-1, 1), v.reshape(1, -1))


# --------------------------------------------------------------------------- certification

def arb_approx(value: np.ndarray) -> np.ndarray:
    """The float64 nearest to each ball's midpoint."""
    v = np.asarray(value)
    return np.asarray(_float(v), dtype=np.float64).reshape(v.shape) if v.size else np.zeros(v.shape)


def _endpoints(x: arb) -> tuple[Any, Any] | None:
    """The ball's endpoints as exact mpmath numbers (None for a NaN ball)."""
    if x.is_nan():
        return None
    if not x.is_finite():
        mid = float(x.mid())
        r = x.rad()
        if math.isinf(mid) and r == 0:
            inf = mpmath.mpf(mid)
            return inf, inf
        return mpmath.mpf("-inf"), mpmath.mpf("inf")
    m, e = x.mid().man_exp()
    rm, re_ = x.rad().man_exp()
    mid = from_man_exp(int(m), int(e))
    rad = from_man_exp(int(rm), int(re_))
    return _make_mpf(mpf_add(mid, mpf_neg(rad), 0)), _make_mpf(mpf_add(mid, rad, 0))  # prec 0: exact


def _exact_rule(x: arb, waive_ties: bool, bits: int) -> tuple[float, float, bool] | None:
    ends = _endpoints(x)
    if ends is None:
        return None
    a, b = ends
    with mpmath.workprec(max(2 * bits, 2 * (max(a.man.bit_length() if a != 0 and mpmath.isfinite(a) else 0,
                                                   b.man.bit_length() if b != 0 and mpmath.isfinite(b) else 0)) + 64)):
        got = certified_endpoints(a, b)
        if got is not None:
            return got[0], got[1], False
        if waive_ties:
            got = certified_endpoints(a, b, waive_ties=True)
            if got is not None:
                return got[0], got[1], True
    return None


def arb_certify(value: np.ndarray, *, waive_ties: bool, bits: int) -> Exact | None:
    """Certify every ball of ``value`` under the rule of :mod:`conformance.certification`."""
    got = arb_certify_many({"": value}, waive_ties=waive_ties, bits=bits)
    return None if got is None else got[""]


def arb_certify_many(values: Mapping[Any, np.ndarray], *, waive_ties: bool, bits: int) -> dict[Any, Exact] | None:
    """Certify every ball of every array in one vectorised pass (numpy's per-call overhead paid once)."""
    arrays = {k: np.asarray(v) for k, v in values.items()}
    balls: list[Any] = []
    for a in arrays.values():
        balls.extend(a.reshape(-1).tolist())
    n = len(balls)
    hi = np.fromiter((float(x) for x in balls), dtype=np.float64, count=n)
    diff = [x - h for x, h in zip(balls, hi.tolist())]  # balls of x - hi (hi is exact)
    lo = np.fromiter((float(d) for d in diff), dtype=np.float64, count=n)
    rad = np.fromiter((float(d.rad()) for d in diff), dtype=np.float64, count=n)
    with np.errstate(all="ignore"):
        ahi = np.abs(hi)
        r_up = rad + 2.0 ** -1074  # the float of a radius is exact unless it underflowed
        reach = (np.abs(lo) * (1 + 2.0 ** -50) + r_up) * (1 + 2.0 ** -50)  # >= |mid - hi| + rad
        fast = (np.isfinite(hi) & (ahi >= _FAST_MIN) & (r_up <= ahi * _REL) & (reach < half_ulp_inside(hi))
                & ~narrow_midpoint_mask(hi))
    undecided = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~fast).tolist():
        x = balls[i]
        if hi[i] == 0 and x.is_zero():  # an exact zero: the rule's point case
            hi[i], lo[i] = 0.0, 0.0
            continue
        if abs(hi[i]) < _FAST_MIN and not x.is_exact() and x.abs_upper() < _TINY:  # the rule's tiny case
            hi[i], lo[i] = 0.0, 0.0
            continue
        got = _exact_rule(x, waive_ties, bits)
        if got is None:
            return None
        hi[i], lo[i], undecided[i] = got
    out: dict[Any, Exact] = {}
    start = 0
    for k, a in arrays.items():
        stop = start + a.size
        out[k] = Exact(hi[start:stop].reshape(a.shape), lo[start:stop].reshape(a.shape),
                       int(np.count_nonzero(undecided[start:stop])))
        start = stop
    return out


def arb_approx_many(values: Mapping[Any, np.ndarray]) -> dict[Any, np.ndarray]:
    """:func:`arb_approx` of every array, in one pass."""
    arrays = {k: np.asarray(v) for k, v in values.items()}
    flat: list[Any] = []
    for a in arrays.values():
        flat.extend(a.reshape(-1).tolist())
    mids = np.fromiter((float(x) for x in flat), dtype=np.float64, count=len(flat))
    out: dict[Any, np.ndarray] = {}
    start = 0
    for k, a in arrays.items():
        stop = start + a.size
        out[k] = mids[start:stop].reshape(a.shape)
        start = stop
    return out


class FlintEngine(Engine):
    name = "flint"
    label = "flint-arb"
    library = "python-flint"

    def version(self) -> str:
        return str(flint.__version__)

    @contextmanager
    def precision(self, bits: int) -> Iterator[None]:
        saved = _ctx.prec
        _ctx.prec = bits
        try:
            yield
        finally:
            _ctx.prec = saved

    def ops(self) -> ArbOps:
        return ArbOps()

    def from_floats(self, arr: np.ndarray) -> np.ndarray:
        return to_arb(arr)

    def certify_array(self, value: Any, *, waive_ties: bool, bits: int) -> Exact | None:
        return arb_certify(value, waive_ties=waive_ties, bits=bits)

    def approx(self, value: Any) -> np.ndarray:
        return arb_approx(value)

    def certify_all(self, raw: Mapping[str, Any], *, waive_ties: bool, bits: int) -> dict[str, Exact] | None:
        return arb_certify_many(raw, waive_ties=waive_ties, bits=bits)

    def approx_all(self, values: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        return arb_approx_many(values)
