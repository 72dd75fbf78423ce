"""Reference values are right: single rounding into every format, ulp distance, and the oracle itself.

Each rounding test compares with an independent reference: round-to-nearest-even
of an exact rational (``fractions.Fraction``), written here from the IEEE 754
definition and sharing no code with ``conformance.formats``. The double-rounding
traps are values for which rounding twice (to 53 bits, or to float32, first)
gives a different answer than rounding once; the tests check that each chosen
value really is such a trap, so they cannot pass vacuously.

The oracle's values are cross-checked against python-flint's arb ball
arithmetic (an independent multiple-precision engine with its own error
radii), evaluating the same spec expressions.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance.oracle import evaluate as oracle
from conformance.cases.generate import generate_cases
from conformance.expr import Ops, interpret
from conformance.formats import DTYPES, FORMATS, FloatFormat, round_hilo, round_mpf, split_mpf, ulp_distance

F64, F32, F16, BF16 = (FORMATS[n] for n in DTYPES)
ALL = (F64, F32, F16, BF16)
NARROW = (F32, F16, BF16)
# a format with float64's precision and no subnormal range: what "round to 53 bits first" means
WIDE53 = FloatFormat("float64-unbounded", p=53, emin=-100000, emax=100000, bits=64)


# --------------------------------------------------------------------------- reference rounding

def ref_round(q: Fraction, fmt: FloatFormat) -> float:
    """Round the rational ``q`` to nearest, ties to even, into ``fmt`` (subnormals, overflow to inf)."""
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # floor(log2 a) is e or e - 1
    if Fraction(2) ** e > a:
        e -= 1
    quantum = max(e, fmt.emin) - fmt.p + 1
    scaled = a / Fraction(2) ** quantum
    n = math.floor(scaled)
    rest = scaled - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
        n += 1
    if n == 0:
        return math.copysign(0.0, sign)
    if n.bit_length() - 1 + quantum > fmt.emax:
        return sign * math.inf
    return sign * float(Fraction(n) * Fraction(2) ** quantum) if quantum < 0 else sign * math.ldexp(n, quantum)


def ref_round_q(q: Fraction, fmt: FloatFormat) -> Fraction:
    """The same rounding, kept as a rational (for the 'round twice' path of the traps)."""
    if fmt is WIDE53:
        if q == 0:
            return Fraction(0)
        a = abs(q)
        e = a.numerator.bit_length() - a.denominator.bit_length()
        if Fraction(2) ** e > a:
            e -= 1
        quantum = e - 52
        scaled = a / Fraction(2) ** quantum
        n = math.floor(scaled)
        rest = scaled - n
        if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
            n += 1
        return (1 if q > 0 else -1) * Fraction(n) * Fraction(2) ** quantum
    return Fraction(ref_round(q, fmt))


def mpf_of(q: Fraction) -> mpmath.mpf:
    """An exact mpmath number for a dyadic rational (not rounded to the working precision)."""
    den = q.denominator
    assert den & (den - 1) == 0, "dyadic rationals only"
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(q.numerator, -(den.bit_length() - 1)))


def random_dyadics(rng: np.random.Generator, fmt: FloatFormat, n: int) -> list[Fraction]:
    """Random values across the whole range of ``fmt`` (subnormal, normal, near overflow), with 80-bit
    mantissas, and values within 2**-60 relative of a rounding midpoint of ``fmt``."""
    out: list[Fraction] = []
    for _ in range(n):
        e = int(rng.integers(fmt.emin - fmt.p - 3, fmt.emax + 2))
        man = int(rng.integers(1 << 62, 1 << 63)) << 17 | int(rng.integers(0, 1 << 17))
        sign = -1 if rng.random() < 0.5 else 1
        out.append(sign * Fraction(man) * Fraction(2) ** (e - 79))
    for _ in range(n):  # midpoints, exact and perturbed either way
        e = int(rng.integers(fmt.emin - 2, fmt.emax + 1))
        quantum = max(e, fmt.emin) - fmt.p + 1
        k = int(rng.integers(1 << (fmt.p - 1), 1 << fmt.p)) if e >= fmt.emin else int(rng.integers(0, 1 << (fmt.p - 1)))
        mid = (Fraction(2 * k + 1) / 2) * Fraction(2) ** quantum
        tweak = [0, 1, -1][int(rng.integers(0, 3))] * mid * Fraction(1, 1 << 60)
        out.append(mid + tweak)
    return out


# --------------------------------------------------------------------------- single rounding

@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_round_mpf_is_correct_rounding_across_the_range(fmt):
    rng = np.random.default_rng(1 + fmt.p)
    for q in random_dyadics(rng, fmt, 400):
        got = round_mpf(mpf_of(q), fmt)
        want = ref_round(q, fmt)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (q, got, want)


@pytest.mark.parametrize("fmt", NARROW + (F64,), ids=lambda f: f.name)
def test_round_hilo_agrees_with_single_rounding(fmt):
    """The vectorised path (from the double-double hi + lo) gives the single rounding of the exact value,
    including near the midpoints of the narrow format, where hi alone is ambiguous."""
    rng = np.random.default_rng(2 + fmt.p)
    qs = [q for q in random_dyadics(rng, fmt, 400) if abs(q) < Fraction(2) ** 1000]
    with mpmath.workprec(300):
        pairs = [split_mpf(mpf_of(q)) for q in qs]
    hi = np.array([p[0] for p in pairs])
    lo = np.array([p[1] for p in pairs])
    got = round_hilo(hi, lo, fmt).astype(np.float64)
    want = np.array([ref_round(q, fmt) for q in qs])
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_trap_float_of_mpf_in_the_subnormal_range():
    """2**-1075 (1 + 2**-60): rounding to 53 bits first gives the tie 2**-1075, then 0 (to even);
    the single rounding is the smallest subnormal 2**-1074."""
    q = Fraction(1, 2**1075) * (1 + Fraction(1, 2**60))
    once = ref_round(q, F64)
    twice = ref_round(ref_round_q(q, WIDE53), F64)
    assert once == 2.0**-1074 and twice == 0.0  # a genuine trap
    with mpmath.workprec(200):
        assert round_mpf(mpf_of(q), F64) == once
        assert split_mpf(mpf_of(q))[0] == once
    # and a subnormal trap away from zero: 3 * 2**-1075 (1 - 2**-70) is just below the tie 1.5 * 2**-1074,
    # which rounding to 53 bits reaches and then rounds to even (2**-1073)
    q2 = Fraction(3, 2**1075) * (1 - Fraction(1, 2**70))
    assert ref_round(q2, F64) == 2.0**-1074 != ref_round(ref_round_q(q2, WIDE53), F64)
    assert round_mpf(mpf_of(q2), F64) == 2.0**-1074


def test_trap_float32_of_float64():
    """1 + 2**-24 + 2**-80: float64 drops the 2**-80 and lands on a float32 tie (-> 1.0); once: 1 + 2**-23."""
    q = 1 + Fraction(1, 2**24) + Fraction(1, 2**80)
    assert ref_round(q, F32) == 1 + 2.0**-23
    assert ref_round(ref_round_q(q, WIDE53), F32) == 1.0  # a genuine trap
    assert float(np.float32(float(q))) == 1.0  # what np.float32(float(x)) gives
    assert round_mpf(mpf_of(q), F32) == 1 + 2.0**-23
    assert round_hilo(np.array([1 + 2.0**-24]), np.array([2.0**-80]), F32).astype(float)[0] == 1 + 2.0**-23


def test_trap_bfloat16_through_float32():
    """1 + 2**-8 + 2**-40 must become 1.0078125: through float32 it is a bfloat16 tie, rounded to 1.0."""
    q = 1 + Fraction(1, 2**8) + Fraction(1, 2**40)
    assert ref_round(q, BF16) == 1.0078125
    assert ref_round(ref_round_q(q, F32), BF16) == 1.0  # a genuine trap
    assert round_mpf(mpf_of(q), BF16) == 1.0078125
    assert round_hilo(np.array([float(q)]), np.array([0.0]), BF16).astype(float)[0] == 1.0078125
    assert round_hilo(np.array([1 + 2.0**-8]), np.array([2.0**-40]), BF16).astype(float)[0] == 1.0078125


@pytest.mark.parametrize("fmt", NARROW, ids=lambda f: f.name)
def test_exact_midpoints_with_a_tiny_remainder(fmt):
    """A midpoint of the narrow format plus or minus 2**-200 (relative) goes up or down; the exact
    midpoint goes to even. The remainder lives only in lo: hi is the midpoint itself."""
    quantum = -fmt.p + 1  # the spacing of [1, 2)
    for k in (0, 1, 2, 3):
        mid = 1 + (Fraction(2 * k + 1) / 2) * Fraction(2) ** quantum
        for sign in (-1, 0, 1):
            q = mid + sign * Fraction(1, 2**200)
            want = ref_round(q, fmt)
            with mpmath.workprec(400):
                assert round_mpf(mpf_of(q), fmt) == want
                hi, lo = split_mpf(mpf_of(q))
            assert hi == float(mid) and (lo > 0) == (sign > 0) and (lo < 0) == (sign < 0)
            assert round_hilo(np.array([hi]), np.array([lo]), fmt).astype(float)[0] == want
    # the tie itself rounds to even in every format
    assert round_mpf(mpf_of(1 + Fraction(1, 2 ** fmt.p)), fmt) == 1.0
    assert round_mpf(mpf_of(1 + Fraction(3, 2 ** fmt.p)), fmt) == 1 + 2.0 ** (2 - fmt.p)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_overflow_and_underflow_boundaries(fmt):
    big = Fraction(fmt.max_finite)
    half_ulp = Fraction(2) ** (fmt.emax - fmt.p)
    assert round_mpf(mpf_of(big + half_ulp - Fraction(2) ** (fmt.emax - fmt.p - 30)), fmt) == fmt.max_finite
    assert round_mpf(mpf_of(big + half_ulp), fmt) == math.inf  # the tie goes to "even": infinity
    assert round_mpf(mpf_of(-(big + 2 * half_ulp)), fmt) == -math.inf
    tiny = Fraction(fmt.tiny)
    assert round_mpf(mpf_of(tiny / 2), fmt) == 0.0  # tie between 0 and tiny: to even (0)
    assert math.copysign(1, round_mpf(mpf_of(-tiny / 2), fmt)) == -1  # signed zero
    assert round_mpf(mpf_of(tiny / 2 + Fraction(2) ** (fmt.emin - fmt.p - 40)), fmt) == fmt.tiny


# --------------------------------------------------------------------------- ulp distance

def _all_16bit(fmt: FloatFormat) -> np.ndarray:
    values = np.arange(1 << 16, dtype=np.uint16).view(fmt.dtype)
    with np.errstate(invalid="ignore"):
        return values[~np.isnan(values.astype(np.float64))]


@pytest.mark.parametrize("fmt", (F16, BF16), ids=lambda f: f.name)
def test_ulp_distance_matches_brute_force_enumeration(fmt):
    """Every non-NaN 16-bit value ranked by value (+0 and -0 share a rank); the distance is the rank
    difference. Checked on all neighbours and on 200 000 random pairs."""
    values = _all_16bit(fmt)
    as64 = values.astype(np.float64)
    distinct = np.unique(as64)  # -0.0 == 0.0: one entry
    rank = np.searchsorted(distinct, as64)
    order = np.argsort(as64, kind="stable")
    a, b = values[order[:-1]], values[order[1:]]
    expected_steps = np.diff(rank[order])
    assert np.array_equal(ulp_distance(a, b, fmt), expected_steps.astype(np.float64))
    rng = np.random.default_rng(3)
    i = rng.integers(0, values.size, 200_000)
    j = rng.integers(0, values.size, 200_000)
    got = ulp_distance(values[i], values[j], fmt)
    assert np.array_equal(got, np.abs(rank[i] - rank[j]).astype(np.float64))


def _walk(x: np.ndarray, k: int, direction: float) -> np.ndarray:
    out = x.copy()
    with np.errstate(over="ignore"):
        for _ in range(k):
            out = np.nextafter(out, np.asarray(direction, dtype=out.dtype))
    return out


@pytest.mark.parametrize("fmt", (F32, F64), ids=lambda f: f.name)
def test_ulp_distance_counts_nextafter_steps(fmt):
    """In float32 and float64 (too many values to enumerate) the distance equals the number of nextafter
    steps between two values, across zero, through the subnormals and up to infinity; and it is additive
    along the line, which with the step property makes it the rank difference."""
    dt = fmt.dtype
    starts = np.array([-3 * fmt.tiny, -fmt.tiny, -0.0, 0.0, fmt.eta, -fmt.eta, 1.0, -1.0,
                       fmt.max_finite, -fmt.max_finite, 2.0**-60, 1e30 if fmt is F32 else 1e300], dtype=dt)
    for k in (1, 2, 7, 25):
        up = _walk(starts, k, np.inf)
        d = ulp_distance(starts, up, fmt)
        finite_start = np.isfinite(starts)
        expected = np.where(np.abs(starts) == fmt.max_finite, np.where(starts > 0, 1, k), k)
        assert np.array_equal(d[finite_start], expected[finite_start].astype(float)), (k, d)
        assert np.array_equal(ulp_distance(up, starts, fmt), d)  # symmetric
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 1 << fmt.bits, 20_000, dtype=np.uint64).astype(fmt.uint)
    vals = bits.view(dt)
    vals = np.sort(vals[~np.isnan(vals)])
    a, b, c = vals[:-2:3], vals[1:-1:3], vals[2::3]
    dab, dbc, dac = (ulp_distance(p, q, fmt) for p, q in ((a, b), (b, c), (a, c)))
    exact = dac < 2.0**53
    assert np.array_equal((dab + dbc)[exact], dac[exact])
    assert np.allclose(dab + dbc, dac, rtol=2.0**-50, atol=0)
    # opposite signs, extremes: no overflow, and the sum of the two distances to zero
    zero = np.zeros(1, dtype=dt)
    big = np.array([fmt.max_finite], dtype=dt)
    assert ulp_distance(-big, big, fmt)[0] == 2 * ulp_distance(zero, big, fmt)[0]
    inf = np.array([np.inf], dtype=dt)
    assert ulp_distance(-inf, inf, fmt)[0] == 2 * (ulp_distance(zero, big, fmt)[0] + 1)


# --------------------------------------------------------------------------- the oracle, cross-checked

flint = pytest.importorskip("flint", reason="the ball-arithmetic cross-check needs python-flint (CI installs it)")


class ArbOps(Ops[np.ndarray]):
    """The spec's primitives in python-flint ball arithmetic (object arrays of ``flint.arb``)."""

    def const(self, value: Fraction) -> np.ndarray:
        return _obj([flint.arb(value.numerator) / value.denominator], (1, 1))

    def neg(self, x):
        return -x

    def add(self, x, y):
        return x + y

    def sub(self, x, y):
        return x - y

    def mul(self, x, y):
        return x * y

    def div(self, x, y):
        return x / y

    def matmul(self, x, y):
        return np.matmul(x, y)

    def transpose(self, x):
        return x.T

    def fn_exp(self, x):
        return np.frompyfunc(lambda v: v.exp(), 1, 1)(x)

    def fn_log(self, x):
        return np.frompyfunc(lambda v: v.log(), 1, 1)(x)

    def fn_sigmoid(self, x):
        def sig(v):  # exp of a nonpositive argument only
            if v < 0:
                e = v.exp()
                return e / (1 + e)
            return 1 / (1 + (-v).exp())
        return np.frompyfunc(sig, 1, 1)(x)

    def _shift(self, x, axis):
        mids = np.frompyfunc(lambda v: float(v.mid()), 1, 1)(x).astype(np.float64)
        m = np.max(mids, axis=axis, keepdims=True)
        return np.frompyfunc(flint.arb, 1, 1)(m)

    def fn_softmax(self, x, axis):
        e = self.fn_exp(x - self._shift(x, axis))
        return e / np.sum(e, axis=axis, keepdims=True)

    def fn_log_softmax(self, x, axis):
        m = self._shift(x, axis)
        return x - m - self.fn_log(np.sum(self.fn_exp(x - m), axis=axis, keepdims=True))

    def fn_sum(self, x, axis):
        if axis is None:
            return _obj([np.sum(x)], (1, 1))
        return np.sum(x, axis=axis, keepdims=True)

    def fn_Diag(self, x):
        v = x.reshape(-1)
        out = _obj([flint.arb(0)] * (v.size * v.size), (v.size, v.size))
        for i in range(v.size):
            out[i, i] = v[i]
        return out


def _obj(values, shape):
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out.reshape(shape)


def _arb_inputs(inputs):
    return {k: _obj([flint.arb(float(v)) for v in np.asarray(a, dtype=np.float64).reshape(-1)], np.shape(a))
            for k, a in inputs.items()}


def _to_mpf(a) -> mpmath.mpf:
    man, exp = a.man_exp()
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(int(man), int(exp)))


def _arb_evaluate(layout, inputs, identities, max_prec=16384):
    """Every forward value and identity in arb, raising the precision until each ball is 2**-110 narrow
    relative to its midpoint (or exactly zero)."""
    prec = 256
    while True:
        flint.ctx.prec = prec
        env = _arb_inputs(inputs)
        ops = ArbOps()
        for d in layout.forward:
            env[d.name] = interpret(d.expr, env, ops)
        out = {d.name: env[d.name] for d in layout.forward}
        for ident in identities:
            out[ident.id] = interpret(ident.expr, env, ops)
        narrow = all(_narrow(v) for arr in out.values() for v in arr.reshape(-1))
        if narrow or prec >= max_prec:
            return out, prec
        prec *= 2


def _narrow(v) -> bool:
    rad = v.rad()
    if rad == 0:
        return True
    mid = abs(v.mid())
    return bool(mid > 0 and rad < mid * flint.arb(2) ** -110)


CROSS_CASES = [("benign", "float64"), ("large_logits", "float32"), ("saturated_sigmoid", "float64"),
               ("unlikely_class", "float16"), ("near_tied_logits", "bfloat16"), ("unnormalized_labels", "float64"),
               ("tiny_inputs", "float32")]


@pytest.mark.parametrize("regime,dtype", CROSS_CASES, ids=[f"{r}-{d}" for r, d in CROSS_CASES])
def test_oracle_agrees_with_arb_ball_arithmetic(seed_spec, regime, dtype):
    """Certified values (hi, lo) against an independent engine: hi is the float64 the arb ball rounds to,
    hi + lo lies in the ball (widened by the oracle's 2**-93 certification width), and the single rounding
    into the case's dtype agrees."""
    fmt = FORMATS[dtype]
    checked = 0
    for layout_name in ("row", "column"):
        layout = seed_spec.layouts[layout_name]
        cases = generate_cases(seed_spec, layout_name, dtype, regime, examples=1)[:3]
        for case in cases:
            sized = [i for i in layout.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
            ev = oracle.evaluate(layout, case.inputs, sized)
            idents = [i for i in sized if oracle.applicable(i, case.sizes, ev.preconditions)]
            arb, _ = _arb_evaluate(layout, case.inputs, idents)
            for key, ex in ev.values.items():
                if key not in arb:
                    continue
                balls = np.broadcast_to(arb[key], ex.hi.shape)
                for idx in np.ndindex(ex.hi.shape):
                    ball = balls[idx]
                    with mpmath.workprec(20000):
                        lo_end = _to_mpf(ball.mid()) - _to_mpf(ball.rad())
                        hi_end = _to_mpf(ball.mid()) + _to_mpf(ball.rad())
                        h, l = mpmath.mpf(ex.hi[idx]), mpmath.mpf(ex.lo[idx])
                        slack = abs(h) * mpmath.mpf(2) ** -90 + mpmath.mpf(2) ** -1100
                        assert lo_end - slack <= h + l <= hi_end + slack, (key, idx, h + l, lo_end, hi_end)
                        r64 = round_mpf(lo_end, F64)
                        if r64 == round_mpf(hi_end, F64):
                            assert ex.hi[idx] == r64, (key, idx)
                        rn = round_mpf(lo_end, fmt)
                        if rn == round_mpf(hi_end, fmt):
                            got = round_hilo(np.array([ex.hi[idx]]), np.array([ex.lo[idx]]), fmt).astype(float)[0]
                            assert got == rn, (key, idx, got, rn)
                    checked += 1
    assert checked > 100


def test_oracle_records_undecided_ties_and_stays_exact(seed_spec):
    """A logit gap of 1e4 and a label of 2**-9 + 2**-17 (a bfloat16 rounding midpoint): dL/dtheta there is
    minus that midpoint plus e**-10000, which no affordable precision resolves. The oracle certifies the
    float64 value (exactly the midpoint), records the bfloat16 rounding as undecided instead of
    chasing 14 000 bits, and everything else stays certified."""
    row = seed_spec.layouts["row"]
    y1 = 2.0**-9 + 2.0**-17
    inputs = {"x": np.zeros((1, 5)), "W1": np.zeros((5, 3)), "b1": np.zeros((1, 3)), "W2": np.zeros((3, 5)),
              "b2": np.array([[1e4, 0.0, 0.0, 0.0, 0.0]]), "y": np.array([[1 - y1, y1, 0.0, 0.0, 0.0]])}
    ev = oracle.evaluate(row, inputs, [row.identity("dL/dtheta")])
    g = ev.values["dL/dtheta"]
    assert g.hi[0, 1] == -y1  # -y1 + e**-10000: the float64 nearest is the midpoint itself
    assert g.undecided >= 1
    assert ev.precision >= oracle.TIE_BITS


def test_a_remainder_below_float64s_range_keeps_its_sign_for_narrow_rounding():
    """hi exactly a float32 midpoint and the exact value below it by e**-1000 (a logit gap of 1000 puts such a
    remainder in a sum of tangents): the remainder underflows float64, and its sign must still round down."""
    import math

    from conformance.oracle.certify import certified_endpoints

    a32 = np.float32(0.26727595925331116)
    mid = (float(a32) + float(np.nextafter(a32, np.float32(1)))) / 2
    with mpmath.workprec(4000):
        exact = mpmath.mpf(mid) - mpmath.exp(-1000)
        got = certified_endpoints(exact, exact)
        assert got is not None
        hi, lo = got
        assert hi == mid and lo < 0 and math.copysign(1.0, lo) < 0
        assert round_hilo(np.array([hi]), np.array([lo]), FORMATS["float32"])[0] == a32
        up = certified_endpoints(mpmath.mpf(mid) + mpmath.exp(-1000), mpmath.mpf(mid) + mpmath.exp(-1000))
        assert round_hilo(np.array([up[0]]), np.array([up[1]]), FORMATS["float32"])[0] == np.nextafter(a32, np.float32(1))
