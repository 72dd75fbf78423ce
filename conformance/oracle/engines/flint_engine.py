"""The fast oracle engine: Arb ball arithmetic (python-flint), with a certified radius on every value.

Values are numpy object arrays of ``flint.arb`` balls (midpoint and radius;
every operation returns a ball that contains the exact result). Elementwise
operations go through numpy's object loops into Arb's C code; matrix
products go through ``arb_mat`` (one C call per product, with Arb's accurate
dot products). Primitives are written to stay tight where a naive formula
would lose everything: sigmoid as 1 / (1 + exp(-x)) (monotone, no
cancellation), softmax and logsumexp shifted by the largest midpoint. Every
primitive of :mod:`conformance.primitives` has its ``fn_<name>`` here
(tests/test_primitives.py checks the algebra against the registry).

Certification applies the one rule of :mod:`conformance.oracle.certify`. A
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
import operator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any, Iterator, Mapping

import flint
import mpmath
import numpy as np
from flint import arb, arb_mat
from mpmath.libmp import from_man_exp, mpf_add, mpf_neg

from conformance.oracle.certify import Exact, certified_endpoints, half_ulp_inside, narrow_midpoint_mask
from conformance.oracle.engines.base import Engine
from conformance.expr import Ops
from conformance.oracle.arith import DomainError

__all__ = ["FlintEngine", "ArbOps", "to_arb", "arb_certify", "arb_approx"]

_ctx = flint.ctx
_to_arb = np.frompyfunc(arb, 1, 1)
_make_mpf = mpmath.mp.make_mpf
_FAST_MIN = 2.0 ** -960  # below this magnitude, the exact rule decides (underflow, TINY)
_REL = 2.0 ** -96  # fast path: radius at most this fraction of |hi| (the rule asks 2**-93)
_TINY = arb(2) ** -1100  # exact: certification.TINY


def _array(values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of the given balls. ``np.fromiter`` with an object dtype stores the very objects,
    and is about 8x cheaper than slice assignment (which probes every element as a possible sequence)."""
    return np.fromiter(values, dtype=object, count=len(values)).reshape(shape)


def to_arb(arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float array (any binary format numpy knows) to point balls."""
    a = np.asarray(arr).astype(np.float64)
    return _array(list(map(arb, a.reshape(-1).tolist())), a.shape)


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


_MAX_EXP_ARGUMENT = arb(2) ** 1024  # exact: conformance.oracle.arith.MAX_EXP_ARGUMENT


def _exp1(x: arb) -> arb:
    """exp, refused beyond 2**1024 in magnitude as the mpmath engine refuses it (such a value is outside every
    float format, and exp(exp(exp(x))) would otherwise send the precision loop to its end)."""
    if x.is_finite() and x.abs_upper() > _MAX_EXP_ARGUMENT:
        raise DomainError(f"exp of a value beyond 2**1024 in magnitude ({x.abs_upper().str(3, radius=False)}), "
                          "outside the range of every float format; the oracle does not evaluate it")
    return x.exp()


def _sigmoid(x: arb) -> arb:
    return 1 / (1 + _exp1(-x))


def _tanh(x: arb) -> arb:
    return x.tanh()


def _relu(x: arb) -> arb:
    if x >= 0:
        return x
    if x <= 0:
        return arb(0)
    return x.max(0)


_STEP_BOTH = arb(0.5, 0.5)
_ZERO = arb(0)


def _step(x: arb) -> arb:
    if x > 0:
        return arb(1)
    if x <= 0:
        return arb(0)
    return _STEP_BOTH


_exp = np.frompyfunc(_exp1, 1, 1)
_logv = np.frompyfunc(_log, 1, 1)
_sigmoidv = np.frompyfunc(_sigmoid, 1, 1)
_tanhv = np.frompyfunc(_tanh, 1, 1)
_sechv = np.frompyfunc(lambda x: x.sech(), 1, 1)
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
    """Ball arithmetic on object arrays at ``flint.ctx.prec`` bits.

    One instance serves one evaluation and remembers, per array object, its
    ``arb_mat`` form (so a weight matrix is converted once, and transposed in
    C) and, for arrays that are exact copies of float inputs (and their
    transposes and negations), those floats (so their approximations cost
    nothing).
    """

    def __init__(self) -> None:
        self._mats: dict[int, tuple[np.ndarray, arb_mat]] = {}
        self._floats: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._diags: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ memo
    def leaf(self, arr: np.ndarray) -> np.ndarray:
        """The point balls of a float array, remembered as exact."""
        floats = np.asarray(arr).astype(np.float64)
        out = to_arb(floats)
        self._floats[id(out)] = (out, floats)
        return out

    def floats_of(self, x: np.ndarray) -> np.ndarray | None:
        hit = self._floats.get(id(x))
        return hit[1] if hit is not None and hit[0] is x else None

    def _mat(self, x: np.ndarray) -> arb_mat:
        hit = self._mats.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        m = _to_mat(x)
        self._mats[id(x)] = (x, m)
        return m

    def _keep_mat(self, x: np.ndarray, m: arb_mat) -> np.ndarray:
        self._mats[id(x)] = (x, m)
        return x

    # ------------------------------------------------------------------ algebra
    def const(self, value: Fraction) -> np.ndarray:
        v = arb(value.numerator) / value.denominator if value.denominator != 1 else arb(value.numerator)
        return _array([v], (1, 1))

    def neg(self, x: np.ndarray) -> np.ndarray:
        out = -x
        f = self.floats_of(x)
        if f is not None:
            self._floats[id(out)] = (out, -f)
        return out

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
        m = self._mat(x) * self._mat(y)
        return self._keep_mat(_from_mat(m), m)

    def pow(self, x: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return _array([arb(1)] * x.size, x.shape)
        return x ** n

    def transpose(self, x: np.ndarray) -> np.ndarray:
        out = x.T
        hit = self._mats.get(id(x))
        if hit is not None and hit[0] is x:
            self._keep_mat(out, hit[1].transpose())
        f = self.floats_of(x)
        if f is not None:
            self._floats[id(out)] = (out, f.T)
        return out

    def fn_exp(self, x: np.ndarray) -> np.ndarray:
        return _exp(x)

    def fn_log(self, x: np.ndarray) -> np.ndarray:
        return _logv(x)

    def fn_sigmoid(self, x: np.ndarray) -> np.ndarray:
        return _sigmoidv(x)

    def fn_tanh(self, x: np.ndarray) -> np.ndarray:
        return _tanhv(x)

    def sech(self, x: np.ndarray) -> np.ndarray:
        """Not a primitive: the dual numbers' tanh' = sech**2 (free of the cancellation in 1 - tanh**2)."""
        return _sechv(x)

    def has_zero(self, x: np.ndarray) -> bool:
        """Not a primitive: whether some ball may contain zero (the derivatives' domain checks)."""
        return any(v.contains(0) for v in x.reshape(-1).tolist())

    def shift(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        """Not a primitive: a point near the maximum along ``axis`` (the jets' exact softmax shift)."""
        return _shift(x, axis)

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
        k = v.size
        out = np.full((k, k), _ZERO, dtype=object)  # one shared exact zero (balls are immutable)
        out[np.arange(k), np.arange(k)] = v
        m = arb_mat(k, k)  # zeros, in C; then the diagonal
        for i, d in enumerate(v.tolist()):
            m[i, i] = d
        self._diags[id(out)] = (out, x)
        return self._keep_mat(out, m)

    def diag_of(self, x: np.ndarray) -> np.ndarray | None:
        hit = self._diags.get(id(x))
        return hit[1] if hit is not None and hit[0] is x else None

    def fn_outer(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.matmul(u.reshape(-1, 1), v.reshape(1, -1))


# --------------------------------------------------------------------------- certification

def arb_approx(value: np.ndarray) -> np.ndarray:
    """The float64 nearest to each ball's midpoint."""
    v = np.asarray(value)
    return v.astype(np.float64) if v.size else np.zeros(v.shape)


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
    """Certify every ball of ``value`` under the rule of :mod:`conformance.oracle.certify`."""
    got = arb_certify_many({"": value}, waive_ties=waive_ties, bits=bits)
    return None if got is None else got[""]


def _flatten(arrays: Mapping[Any, np.ndarray]) -> np.ndarray:
    parts = [a.reshape(-1) for a in arrays.values()]
    if not parts:
        return np.empty(0, dtype=object)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _split(flat: np.ndarray, arrays: Mapping[Any, np.ndarray]) -> dict[Any, np.ndarray]:
    out: dict[Any, np.ndarray] = {}
    start = 0
    for k, a in arrays.items():
        stop = start + a.size
        out[k] = flat[start:stop].reshape(a.shape)
        start = stop
    return out


def arb_certify_many(values: Mapping[Any, np.ndarray], *, waive_ties: bool, bits: int,
                     culprit: list[Any] | None = None) -> dict[Any, Exact] | None:
    """Certify every ball of every array in one vectorised pass (numpy's per-call overhead paid once).
    Where one is not certified: None, and the key of the first such array appended to ``culprit`` if given
    (the balls are decided in order, so the first that fails is in the first array that fails).

    Fast path, per ball x with float64 rounding hi of its midpoint: d = x - hi
    is computed exactly (hi has 53 bits and lies within an ulp of the
    midpoint, which has at most ``bits`` >= 54 bits: the difference fits), so
    lo = float(d) is the rule's round(mid - hi). Arb's relative accuracy of x
    (bits of the midpoint's magnitude above the radius) bounds the radius:
    rad < |mid| 2**-acc. Accepted when acc >= 97 (the rule needs 2**-93),
    |d| + rad provably stays inside hi's rounding interval (both ends round to
    hi, ties excluded), hi is a normal number away from the underflow range,
    and hi is not a narrower format's midpoint. The rest goes to the rule.
    """
    arrays = {k: np.asarray(v) for k, v in values.items()}
    flat = _flatten(arrays)
    n = flat.size
    balls = flat.tolist()
    hi = flat.astype(np.float64) if n else np.zeros(0)
    # the same per-ball calls as a generator would make, driven by map (no Python frame per component)
    lo = np.fromiter(map(float, map(operator.sub, balls, hi.tolist())), dtype=np.float64, count=n)
    acc = np.fromiter(map(arb.rel_accuracy_bits, balls), dtype=np.float64, count=n)
    with np.errstate(all="ignore"):
        ahi = np.abs(hi)
        reach = (np.abs(lo) + ahi * 2.0 ** -96) * (1 + 2.0 ** -50)  # >= |mid - hi| + rad when acc >= 97
        fast = (np.isfinite(hi) & (ahi >= _FAST_MIN) & (acc >= 97) & (reach < half_ulp_inside(hi))
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
            if culprit is not None:
                culprit.append(_key_at(arrays, i))
            return None
        hi[i], lo[i], undecided[i] = got
    his, los, und = _split(hi, arrays), _split(lo, arrays), _split(undecided, arrays)
    return {k: Exact(his[k], los[k], int(np.count_nonzero(und[k]))) for k in arrays}


def _key_at(arrays: Mapping[Any, np.ndarray], index: int) -> Any:
    """The key of the array that holds component ``index`` of their concatenation (:func:`_flatten`)."""
    for k, a in arrays.items():
        if index < a.size:
            return k
        index -= a.size
    raise IndexError(index)  # pragma: no cover - the index comes from the concatenation


def arb_approx_many(values: Mapping[Any, np.ndarray], ops: "ArbOps | None" = None) -> dict[Any, np.ndarray]:
    """:func:`arb_approx` of every array, in one pass; arrays ``ops`` knows to be exact floats cost nothing."""
    known: dict[Any, np.ndarray] = {}
    diags: dict[Any, np.ndarray] = {}
    rest: dict[Any, np.ndarray] = {}
    for k, v in values.items():
        f = ops.floats_of(v) if ops is not None else None
        d = ops.diag_of(v) if ops is not None and f is None else None
        if f is not None:
            known[k] = f
        elif d is not None:
            diags[k] = d.reshape(-1)  # Diag(v): the approximations of v on the diagonal, exact zeros elsewhere
            rest[("diag", k)] = d.reshape(-1)
        else:
            rest[k] = np.asarray(v)
    flat = _flatten(rest)
    mids = _split(flat.astype(np.float64) if flat.size else np.zeros(0), rest)
    out: dict[Any, np.ndarray] = {}
    for k in values:
        if k in known:
            out[k] = known[k]
        elif k in diags:
            out[k] = np.diag(mids[("diag", k)])
        else:
            out[k] = mids[k]
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

    def start(self, inputs: Mapping[str, np.ndarray]) -> tuple[ArbOps, dict[str, np.ndarray]]:
        ops = ArbOps()
        return ops, {k: ops.leaf(v) for k, v in inputs.items()}

    def certify_array(self, value: Any, *, waive_ties: bool, bits: int) -> Exact | None:
        return arb_certify(value, waive_ties=waive_ties, bits=bits)

    def approx(self, value: Any) -> np.ndarray:
        return arb_approx(value)

    def first_disjoint(self, a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
        for idx, x in np.ndenumerate(a):  # a NaN ball overlaps everything: it refutes nothing
            if not x.overlaps(b[idx]):
                return tuple(int(i) for i in idx)
        return None

    def midpoint(self, value: Any) -> float:
        return float(value.mid())

    def certify_all(self, raw: Mapping[str, Any], *, waive_ties: bool, bits: int) -> dict[str, Exact] | None:
        return arb_certify_many(raw, waive_ties=waive_ties, bits=bits)

    def certify_or_locate(self, raw: Mapping[str, Any], *, waive_ties: bool,
                          bits: int) -> tuple[dict[str, Exact] | None, str | None]:
        culprit: list[Any] = []
        got = arb_certify_many(raw, waive_ties=waive_ties, bits=bits, culprit=culprit)
        return got, (culprit[0] if culprit else None)

    def approx_all(self, values: Mapping[Any, Any], ops: Any = None) -> dict[Any, np.ndarray]:
        return arb_approx_many(values, ops if isinstance(ops, ArbOps) else None)
