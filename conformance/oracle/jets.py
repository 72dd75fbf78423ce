"""Second-order jets over intervals: the oracle's own forward mode for JVPs, VJPs, Hessians and HVPs.

A :class:`Jet` carries, beside a value ``v``, its first derivatives along K
directions ``a`` (shape (K, *v.shape)), along M other directions ``b``
(shape (M, *v.shape)) and the mixed second derivatives ``ab`` (shape
(K, M, *v.shape)): a hyper-dual number, v + a e1 + b e2 + ab e1 e2 with
e1**2 = e2**2 = 0, vectorised over directions. Seeding ``a`` with the
tangent gives a JVP (``a`` of the output); seeding ``a`` with the unit basis
of ``wrt`` gives the Jacobian (and, contracted with a cotangent, a VJP);
seeding both ``a`` and ``b`` with the basis gives the Hessian in ``ab``, and
``a`` with the basis and ``b`` with a tangent its product with the tangent.

Why a separate algebra and not the identities: the jets know only each
primitive's first and second derivative (sigmoid'' = s'(1 - 2 s) with
s' = s (1 - s) computed as sigmoid(x) sigmoid(-x), exp'' = exp, log'' =
-1/x**2, tanh'' = -2 tanh sech**2); softmax, log-softmax and logsumexp are
composed from exp, sum and division after an exact shift. An identity of
the spec is then checked against derivatives that share no formula with it.
Every entry is an enclosure of the base algebra (mpmath intervals, or an
engine's: Arb balls), like the rest of the oracle's, at the precision the
caller set.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from conformance.expr import Ops
from conformance.oracle.arith import DomainError, IvOps, _array, _sum_axis

__all__ = ["Jet", "JetOps", "basis", "zeros"]

_IV = IvOps()


def zeros(shape: tuple[int, ...], base: Any = None) -> np.ndarray:
    """An object array of exact zeros of ``base``'s algebra (mpmath intervals unless given)."""
    n = int(np.prod(shape)) if shape else 1
    return _array([(base or _IV).const(Fraction(0))[0, 0]] * n, shape)


def basis(shape: tuple[int, int], base: Any = None) -> np.ndarray:
    """The unit directions of a value of ``shape``, row-major: shape (k, *shape), entry i is 1 at flat index i."""
    k = shape[0] * shape[1]
    out = zeros((k, k), base)
    one = (base or _IV).const(Fraction(1))[0, 0]
    for i in range(k):
        out[i, i] = one
    return out.reshape((k,) + tuple(shape))


class Jet:
    """A value with first derivatives along two sets of directions and their mixed second derivatives.

    ``a``: (K, *v.shape), ``b``: (M, *v.shape), ``ab``: (K, M, *v.shape); None means all zero.
    """

    __slots__ = ("v", "a", "b", "ab")

    def __init__(self, v: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None,
                 ab: np.ndarray | None = None) -> None:
        self.v = v
        self.a = None if a is None else _fit(a, 1, v.shape)
        self.b = None if b is None else _fit(b, 1, v.shape)
        self.ab = None if ab is None else _fit(ab, 2, v.shape)

    @property
    def constant(self) -> bool:
        return self.a is None and self.b is None and self.ab is None


def _fit(t: np.ndarray, lead: int, shape: tuple[int, ...]) -> np.ndarray:
    want = t.shape[:lead] + tuple(shape)
    return t if t.shape == want else np.broadcast_to(t, want)


def _add(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
    if x is None:
        return y
    if y is None:
        return x
    return x + y


def _neg(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else -x


def _times(t: np.ndarray | None, f: np.ndarray) -> np.ndarray | None:
    return None if t is None else t * f


def _cross(a: np.ndarray | None, b: np.ndarray | None, op: Any = np.multiply) -> np.ndarray | None:
    """``op(a[k], b[m])`` for every pair of directions: shape (K, M, ...)."""
    if a is None or b is None:
        return None
    return op(a[:, None], b[None, :])


class JetOps(Ops[Jet]):
    """Enclosure arithmetic on :class:`Jet` values (first and second derivatives, forward mode).

    ``base``: the algebra of every entry, mpmath intervals (:class:`~conformance.oracle.arith.IvOps`) unless
    an engine's is given (the flint engine's Arb balls); values go through its primitives, directions through
    numpy's elementwise operations and ``matmul`` over the same enclosures."""

    def __init__(self, base: Any = None) -> None:
        self.base = base if base is not None else IvOps()

    # ---------------------------------------------------------------- arithmetic
    def const(self, value: Fraction) -> Jet:
        return Jet(self.base.const(value))

    def neg(self, x: Jet) -> Jet:
        return Jet(-x.v, _neg(x.a), _neg(x.b), _neg(x.ab))

    def add(self, x: Jet, y: Jet) -> Jet:
        return Jet(x.v + y.v, _add(x.a, y.a), _add(x.b, y.b), _add(x.ab, y.ab))

    def sub(self, x: Jet, y: Jet) -> Jet:
        return self.add(x, self.neg(y))

    def _bilinear(self, x: Jet, y: Jet, op: Any) -> Jet:
        v = op(x.v, y.v)
        if x.constant and y.constant:
            return Jet(v)
        a = _add(None if x.a is None else op(x.a, y.v), None if y.a is None else op(x.v, y.a))
        b = _add(None if x.b is None else op(x.b, y.v), None if y.b is None else op(x.v, y.b))
        ab = _add(_add(None if x.ab is None else op(x.ab, y.v), None if y.ab is None else op(x.v, y.ab)),
                  _add(_cross(x.a, y.b, op), _swap(_cross(x.b, y.a, op))))
        return Jet(v, a, b, ab)

    def mul(self, x: Jet, y: Jet) -> Jet:
        return self._bilinear(x, y, np.multiply)

    def matmul(self, x: Jet, y: Jet) -> Jet:
        return self._bilinear(x, y, np.matmul)

    def div(self, x: Jet, y: Jet) -> Jet:
        if self.base.has_zero(y.v):
            raise DomainError("division by a quantity that is (or may be) zero")
        if y.constant:
            return Jet(x.v / y.v, *(None if t is None else t / y.v for t in (x.a, x.b, x.ab)))
        r = 1 / y.v
        return self.mul(x, _unary(y, r, -(r * r), 2 * r * r * r))

    def pow(self, x: Jet, n: int) -> Jet:
        if n == 0:
            return Jet(self.base.pow(x.v, 0))
        if n == 1:
            return x
        d2 = n * (n - 1) * x.v ** (n - 2) if n > 2 else n * (n - 1) + 0 * x.v
        return _unary(x, x.v ** n, n * x.v ** (n - 1), d2)

    def transpose(self, x: Jet) -> Jet:
        return Jet(x.v.T, *(None if t is None else np.swapaxes(t, -1, -2) for t in (x.a, x.b, x.ab)))

    # ---------------------------------------------------------------- elementwise functions
    def fn_exp(self, x: Jet) -> Jet:
        e = self.base.fn_exp(x.v)
        return _unary(x, e, e, e)

    def fn_log(self, x: Jet) -> Jet:
        v = self.base.fn_log(x.v)
        if x.constant:
            return Jet(v)
        if self.base.has_zero(x.v):
            raise DomainError("the derivative of log at a quantity that is (or may be) zero")
        r = 1 / x.v
        return _unary(x, v, r, -(r * r))

    def fn_sigmoid(self, x: Jet) -> Jet:
        s = self.base.fn_sigmoid(x.v)
        d1 = s * self.base.fn_sigmoid(-x.v)  # s (1 - s) without the cancellation near s = 1
        return _unary(x, s, d1, d1 * (1 - 2 * s))

    def fn_tanh(self, x: Jet) -> Jet:
        t, c = self.base.fn_tanh(x.v), self.base.sech(x.v) ** 2
        return _unary(x, t, c, -2 * t * c)

    def fn_relu(self, x: Jet) -> Jet:
        return _unary(x, self.base.fn_relu(x.v), self.base.fn_step(x.v), 0 * x.v)

    def fn_step(self, x: Jet) -> Jet:
        return Jet(self.base.fn_step(x.v))

    # ---------------------------------------------------------------- reductions and structure
    def fn_sum(self, x: Jet, axis: int | None) -> Jet:
        return Jet(_sum_axis(x.v, axis), *(None if t is None else _sum_axis(t, axis, lead=lead)
                                           for t, lead in ((x.a, 1), (x.b, 1), (x.ab, 2))))

    def fn_mean(self, x: Jet, axis: int | None) -> Jet:
        count = x.v.size if axis is None else x.v.shape[axis]
        return self.div(self.fn_sum(x, axis), self.const(Fraction(count)))

    def _shifted(self, x: Jet, axis: int | None) -> Jet:
        # any constant shift is exact for softmax and adds back exactly for logsumexp; this one avoids overflow
        return self.sub(x, Jet(self.base.shift(x.v, axis)))

    def fn_softmax(self, x: Jet, axis: int | None) -> Jet:
        e = self.fn_exp(self._shifted(x, axis))
        return self.div(e, self.fn_sum(e, axis))

    def fn_logsumexp(self, x: Jet, axis: int | None) -> Jet:
        m = Jet(self.base.shift(x.v, axis))
        return self.add(m, self.fn_log(self.fn_sum(self.fn_exp(self.sub(x, m)), axis)))

    def fn_log_softmax(self, x: Jet, axis: int | None) -> Jet:
        return self.sub(x, self.fn_logsumexp(x, axis))

    def fn_Diag(self, x: Jet) -> Jet:
        return Jet(_diag(x.v, 0, self.base), *(None if t is None else _diag(t, lead, self.base)
                                               for t, lead in ((x.a, 1), (x.b, 1), (x.ab, 2))))

    def fn_outer(self, u: Jet, w: Jet) -> Jet:
        return self.mul(_reshape(u, (u.v.size, 1)), _reshape(w, (1, w.v.size)))


def _swap(t: np.ndarray | None) -> np.ndarray | None:
    """(M, K, ...) to (K, M, ...)."""
    return None if t is None else np.swapaxes(t, 0, 1)


def _unary(x: Jet, f: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> Jet:
    """f(x) by the chain rule: a = f' a, b = f' b, ab = f' ab + f'' a b."""
    if x.constant:
        return Jet(f)
    ab = _add(_times(x.ab, d1), None if x.a is None or x.b is None else _cross(x.a, x.b) * d2)
    return Jet(f, _times(x.a, d1), _times(x.b, d1), ab)


def _diag(t: np.ndarray, lead: int, base: Any) -> np.ndarray:
    """Diag of the trailing vector of ``t`` (leading ``lead`` axes of directions kept)."""
    head = t.shape[:lead]
    k = int(np.prod(t.shape[lead:]))
    flat = np.asarray(t).reshape(head + (k,))
    out = zeros(head + (k, k), base)
    for i in range(k):
        out[(..., i, i)] = flat[(..., i)]
    return out


def _reshape(x: Jet, shape: tuple[int, int]) -> Jet:
    def r(t: np.ndarray | None, lead: int) -> np.ndarray | None:
        return None if t is None else np.asarray(t).reshape(t.shape[:lead] + shape)

    return Jet(x.v.reshape(shape), r(x.a, 1), r(x.b, 1), r(x.ab, 2))
