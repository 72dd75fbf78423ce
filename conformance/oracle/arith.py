"""Exact and certified algebras for the oracle: mpmath intervals, dual numbers, rationals.

Values are 2-D numpy object arrays whose entries are mpmath intervals
(``mpmath.iv.mpf``) or ``fractions.Fraction``; numpy supplies broadcasting
and ``@``, mpmath (or Python's integers) the arithmetic. Interval arithmetic
makes every result an enclosure of the exact value: cancellation (h - h*h with
h within 1e-300 of 1) shows up as a wide interval instead of a confident wrong
digit, and the oracle raises the precision until the enclosure is narrow. The
working precision is ``mpmath.iv.prec``, set by the caller.

The dual-number algebra carries, beside each value, its derivatives along K
directions at once (a leading axis of length K). It is the *independent*
derivative the oracle checks every identity against: it knows only the
forward definitions and the textbook derivative of each primitive.

Each algebra implements the primitives of :mod:`conformance.primitives` as
``fn_<name>`` methods (all of them; the rational algebra the ones marked
``rational``); tests/test_primitives.py checks every algebra against the registry.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from conformance.expr import Ops, UnsupportedPrimitive
from conformance.primitives import PRIMITIVES, primitive

__all__ = ["IvOps", "Dual", "DualOps", "FractionOps", "to_iv", "to_fraction", "iv_mid_float", "endpoints",
           "DomainError"]

iv = mpmath.iv
_ivmpf = iv.mpf
_make_mpf = mpmath.mp.make_mpf


class DomainError(ArithmeticError):
    """A primitive was applied outside its domain (log of a negative number...)."""


def _array(values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out.reshape(shape)


def to_iv(arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float array (any binary format numpy knows) to point intervals."""
    a = np.asarray(arr).astype(np.float64)
    return _array([_ivmpf(v) for v in a.reshape(-1).tolist()], a.shape)


def to_fraction(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr).astype(np.float64)
    return _array([Fraction(v) for v in a.reshape(-1).tolist()], a.shape)


def endpoints(x: Any) -> tuple[Any, Any]:
    """The two endpoints of an interval as ``mpmath.mpf`` (exact)."""
    lo, hi = x._mpi_
    return _make_mpf(lo), _make_mpf(hi)


def _mid_float(x: Any) -> float:
    a, b = endpoints(x)
    if a == b:
        return float(a)
    return float((a + b) / 2) if mpmath.isfinite(a) and mpmath.isfinite(b) else float(a if mpmath.isfinite(a) else b)


_mid = np.frompyfunc(_mid_float, 1, 1)


def iv_mid_float(arr: np.ndarray) -> np.ndarray:
    """Approximate float64 of each interval (for error *bounds*, where a relative 2**-52 does not matter)."""
    return np.asarray(_mid(arr), dtype=np.float64)


def _ufunc(f: Any) -> Any:
    return np.frompyfunc(f, 1, 1)


def _iv_log(x: Any) -> Any:
    a, b = endpoints(x)
    if b < 0 or (b == 0 and a == 0):
        if b < 0:
            raise DomainError(f"log of a negative number ({mpmath.nstr(b, 5)})")
        return _ivmpf("-inf")
    if a <= 0:
        return _ivmpf(["-inf", iv.log(_ivmpf(b)).b])
    return iv.log(x)


#: the largest magnitude whose exponential the oracle takes (beyond float64's range: exp of anything larger is
#: 0 or an overflow in every format, and computing it exactly needs memory in proportion to the magnitude;
#: ``exp(exp(exp(x)))`` would need gigabytes)
MAX_EXP_ARGUMENT = mpmath.mpf(2) ** 1024


def _iv_exp(x: Any) -> Any:
    for end in endpoints(x):
        if mpmath.isfinite(end) and abs(end) > MAX_EXP_ARGUMENT:
            raise DomainError(f"exp of a value beyond 2**1024 in magnitude ({mpmath.nstr(end, 3)}), outside the "
                              "range of every float format; the oracle does not evaluate it")
    return iv.exp(x)


def _iv_sigmoid(x: Any) -> Any:
    # 1 / (1 + exp(-x)) is monotone in each step, so the interval result is a tight enclosure
    return 1 / (1 + _iv_exp(-x))


def _iv_tanh(x: Any) -> Any:
    return 1 - 2 / (_iv_exp(2 * x) + 1)


def _iv_sech(x: Any) -> Any:
    # 2 / (exp(x) + exp(-x)): no cancellation, unlike sqrt(1 - tanh^2)
    return 2 / (_iv_exp(x) + _iv_exp(-x))


def _iv_relu(x: Any) -> Any:
    a, b = endpoints(x)
    zero = mpmath.mpf(0)
    return _ivmpf([max(a, zero), max(b, zero)])


def _iv_step(x: Any) -> Any:
    a, b = endpoints(x)
    if a > 0:
        return _ivmpf(1)
    if b <= 0:
        return _ivmpf(0)
    return _ivmpf([0, 1])


_exp = _ufunc(_iv_exp)
_log = _ufunc(_iv_log)
_sigmoid = _ufunc(_iv_sigmoid)
_tanh = _ufunc(_iv_tanh)
_sech = _ufunc(_iv_sech)
_relu = _ufunc(_iv_relu)
_step = _ufunc(_iv_step)


def _shift(x: np.ndarray, axis: int | None) -> np.ndarray:
    """A point near the maximum along ``axis`` (any shift is exact for softmax; this one avoids overflow)."""
    mids = iv_mid_float(x)
    with np.errstate(all="ignore"):
        m = np.max(mids) if axis is None else np.max(mids, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return to_iv(np.full((1, 1), m) if axis is None else m)


def _sum_axis(x: np.ndarray, axis: int | None, lead: int = 0) -> np.ndarray:
    """Sum with kept dimensions; ``lead`` leading batch axes (dual tangents) are left alone."""
    if axis is None:
        axes = tuple(range(lead, x.ndim))
        return np.sum(x, axis=axes, keepdims=True)
    return np.sum(x, axis=axis + lead, keepdims=True)


def _has_zero(y: np.ndarray) -> bool:
    for v in np.asarray(y).reshape(-1).tolist():
        a, b = endpoints(v)
        if a <= 0 <= b:
            return True
    return False


class IvOps(Ops[np.ndarray]):
    """Interval arithmetic on object arrays at ``mpmath.iv.prec`` bits."""

    def const(self, value: Fraction) -> np.ndarray:
        v = _ivmpf(value.numerator) / value.denominator if value.denominator != 1 else _ivmpf(value.numerator)
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
        if _has_zero(y):
            raise DomainError("division by a quantity that is (or may be) zero")
        return x / y

    def matmul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.matmul(x, y)

    def pow(self, x: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return _array([_ivmpf(1)] * x.size, x.shape)
        return x ** n

    def transpose(self, x: np.ndarray) -> np.ndarray:
        return x.T

    def fn_exp(self, x: np.ndarray) -> np.ndarray:
        return _exp(x)

    def fn_log(self, x: np.ndarray) -> np.ndarray:
        return _log(x)

    def fn_sigmoid(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x)

    def fn_tanh(self, x: np.ndarray) -> np.ndarray:
        return _tanh(x)

    def sech(self, x: np.ndarray) -> np.ndarray:
        """Not a primitive: the dual numbers' tanh' = sech**2 (free of the cancellation in 1 - tanh**2)."""
        return _sech(x)

    def has_zero(self, x: np.ndarray) -> bool:
        """Not a primitive: whether some entry may be zero (the derivatives' domain checks)."""
        return _has_zero(x)

    def shift(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        """Not a primitive: a point near the maximum along ``axis`` (the jets' exact softmax shift)."""
        return _shift(x, axis)

    def fn_relu(self, x: np.ndarray) -> np.ndarray:
        return _relu(x)

    def fn_step(self, x: np.ndarray) -> np.ndarray:
        return _step(x)

    def fn_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        e = _exp(x - _shift(x, axis))
        return e / _sum_axis(e, axis)

    def fn_logsumexp(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        m = _shift(x, axis)
        return m + _log(_sum_axis(_exp(x - m), axis))

    def fn_log_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return x - self.fn_logsumexp(x, axis)

    def fn_sum(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return _sum_axis(x, axis)

    def fn_mean(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        count = x.size if axis is None else x.shape[axis]
        return _sum_axis(x, axis) / count

    def fn_Diag(self, x: np.ndarray) -> np.ndarray:
        v = x.reshape(-1)
        out = _array([_ivmpf(0)] * (v.size * v.size), (v.size, v.size))
        for i, val in enumerate(v.tolist()):
            out[i, i] = val
        return out

    def fn_outer(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.multiply.outer(u.reshape(-1), v.reshape(-1))


class Dual:
    """A value and its derivatives along K directions: ``t`` has shape (K, *v.shape), or is None (all zero)."""

    __slots__ = ("v", "t")

    def __init__(self, v: np.ndarray, t: np.ndarray | None) -> None:
        self.v = v
        if t is not None and t.shape[1:] != v.shape:
            t = np.broadcast_to(t, (t.shape[0],) + v.shape)
        self.t = t


def _tadd(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


class DualOps(Ops[Dual]):
    """Forward-mode derivatives over enclosures, K directions at once.

    ``base`` is the algebra of the values and tangents: mpmath intervals (:class:`IvOps`) unless an engine's
    algebra is given (the flint engine's Arb balls make a verification several times cheaper). Every value
    goes through ``base``'s primitives; the tangents are combined with numpy's elementwise operations and
    ``matmul`` over the same enclosures, so the derivative is an enclosure in either algebra.
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base if base is not None else IvOps()
        self._zero = self.base.const(Fraction(0)).item()

    def const(self, value: Fraction) -> Dual:
        return Dual(self.base.const(value), None)

    def neg(self, x: Dual) -> Dual:
        return Dual(-x.v, None if x.t is None else -x.t)

    def add(self, x: Dual, y: Dual) -> Dual:
        return Dual(x.v + y.v, _tadd(x.t, y.t))

    def sub(self, x: Dual, y: Dual) -> Dual:
        return Dual(x.v - y.v, _tadd(x.t, None if y.t is None else -y.t))

    def mul(self, x: Dual, y: Dual) -> Dual:
        return Dual(x.v * y.v, _tadd(None if x.t is None else x.t * y.v, None if y.t is None else x.v * y.t))

    def div(self, x: Dual, y: Dual) -> Dual:
        v = self.base.div(x.v, y.v)
        t = _tadd(x.t, None if y.t is None else -(v * y.t))
        return Dual(v, None if t is None else t / y.v)

    def matmul(self, x: Dual, y: Dual) -> Dual:
        t = _tadd(None if x.t is None else np.matmul(x.t, y.v), None if y.t is None else np.matmul(x.v, y.t))
        return Dual(self.base.matmul(x.v, y.v), t)

    def pow(self, x: Dual, n: int) -> Dual:
        if n == 0:
            return Dual(self.base.pow(x.v, 0), None)
        return Dual(x.v ** n, None if x.t is None else x.t * (n * x.v ** (n - 1)))

    def transpose(self, x: Dual) -> Dual:
        return Dual(x.v.T, None if x.t is None else np.swapaxes(x.t, 1, 2))

    def fn_exp(self, x: Dual) -> Dual:
        e = self.base.fn_exp(x.v)
        return Dual(e, None if x.t is None else x.t * e)

    def fn_log(self, x: Dual) -> Dual:
        return Dual(self.base.fn_log(x.v), None if x.t is None else x.t / x.v)

    def fn_sigmoid(self, x: Dual) -> Dual:
        s = self.base.fn_sigmoid(x.v)
        # sigmoid' = sigmoid(x) * sigmoid(-x): free of the cancellation in s - s*s
        return Dual(s, None if x.t is None else x.t * (s * self.base.fn_sigmoid(-x.v)))

    def fn_tanh(self, x: Dual) -> Dual:
        return Dual(self.base.fn_tanh(x.v), None if x.t is None else x.t * (self.base.sech(x.v) ** 2))

    def fn_relu(self, x: Dual) -> Dual:
        return Dual(self.base.fn_relu(x.v), None if x.t is None else x.t * self.base.fn_step(x.v))

    def fn_step(self, x: Dual) -> Dual:
        return Dual(self.base.fn_step(x.v), None)

    def fn_softmax(self, x: Dual, axis: int | None) -> Dual:
        y = self.base.fn_softmax(x.v, axis)
        if x.t is None:
            return Dual(y, None)
        return Dual(y, y * (x.t - _sum_axis(y * x.t, axis, lead=1)))

    def fn_log_softmax(self, x: Dual, axis: int | None) -> Dual:
        v = self.base.fn_log_softmax(x.v, axis)
        if x.t is None:
            return Dual(v, None)
        y = self.base.fn_softmax(x.v, axis)
        return Dual(v, x.t - _sum_axis(y * x.t, axis, lead=1))

    def fn_logsumexp(self, x: Dual, axis: int | None) -> Dual:
        v = self.base.fn_logsumexp(x.v, axis)
        if x.t is None:
            return Dual(v, None)
        if axis is None:
            y = self.base.fn_softmax(x.v.reshape(1, -1), 1).reshape(x.v.shape)
        else:
            y = self.base.fn_softmax(x.v, axis)
        return Dual(v, _sum_axis(y * x.t, axis, lead=1))

    def fn_sum(self, x: Dual, axis: int | None) -> Dual:
        return Dual(_sum_axis(x.v, axis), None if x.t is None else _sum_axis(x.t, axis, lead=1))

    def fn_mean(self, x: Dual, axis: int | None) -> Dual:
        count = x.v.size if axis is None else x.v.shape[axis]
        s = self.fn_sum(x, axis)
        return Dual(s.v / count, None if s.t is None else s.t / count)

    def fn_Diag(self, x: Dual) -> Dual:
        v = self.base.fn_Diag(x.v)
        if x.t is None:
            return Dual(v, None)
        k = x.v.size
        kk = x.t.shape[0]
        t = _array([self._zero] * (kk * k * k), (kk, k, k))
        flat = x.t.reshape(kk, k)
        for i in range(k):
            t[:, i, i] = flat[:, i]
        return Dual(v, t)

    def fn_outer(self, u: Dual, w: Dual) -> Dual:
        v = self.base.fn_outer(u.v, w.v)
        uf, wf = u.v.reshape(-1), w.v.reshape(-1)
        t1 = None if u.t is None else u.t.reshape(u.t.shape[0], -1)[:, :, None] * wf[None, None, :]
        t2 = None if w.t is None else uf[None, :, None] * w.t.reshape(w.t.shape[0], -1)[:, None, :]
        return Dual(v, _tadd(t1, t2))


#: The primitives exact over the rationals, the only ones a precondition may use (as its message lists them).
_RATIONAL = " ".join(p.name for p in PRIMITIVES.values() if p.rational)


class FractionOps(Ops[np.ndarray]):
    """Exact rational arithmetic, for preconditions ("each label row sums to exactly 1")."""

    def const(self, value: Fraction) -> np.ndarray:
        return np.full((1, 1), value, dtype=object)

    def neg(self, x: np.ndarray) -> np.ndarray:
        return -x

    def add(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x + y

    def sub(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x - y

    def mul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x * y

    def div(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if any(v == 0 for v in y.reshape(-1).tolist()):
            raise DomainError("division by zero")
        return x / y

    def matmul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.matmul(x, y)

    def transpose(self, x: np.ndarray) -> np.ndarray:
        return x.T

    def fn_sum(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return _sum_axis(x, axis)

    def fn_mean(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        count = x.size if axis is None else x.shape[axis]
        return _sum_axis(x, axis) / count

    def call(self, fn: str, args: tuple[np.ndarray, ...], axis: int | None) -> np.ndarray:
        if not primitive(fn).rational:
            raise UnsupportedPrimitive(
                f"{fn} is not rational: a precondition may use only + - * / @ .T {_RATIONAL}")
        return super().call(fn, args, axis)
