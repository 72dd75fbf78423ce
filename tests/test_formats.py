"""Float formats: single rounding and ulp distance at the edges (±0, subnormals, inf, NaN)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from conformance.formats import DTYPES, FORMATS, round_hilo, round_mpf, ulp_distance

F64, F32, F16, BF16 = (FORMATS[n] for n in DTYPES)


@pytest.mark.parametrize("fmt", FORMATS.values(), ids=lambda f: f.name)
def test_ulp_distance_edges(fmt):
    d = fmt.dtype
    tiny, big = fmt.tiny, fmt.max_finite
    a = np.array([0.0, -0.0, tiny, -tiny, big, np.inf, 1.0, -1.0], dtype=np.float64).astype(d)
    b = np.array([-0.0, 0.0, 0.0, tiny, np.inf, big, -1.0, 1.0], dtype=np.float64).astype(d)
    dist = ulp_distance(a, b, fmt)
    ones_ordinal = 2 ** (fmt.bits - 2) - 2 ** (fmt.p - 1)  # ordinal of 1.0 = (bias << (p-1)) for IEEE
    assert dist[0] == 0 and dist[1] == 0  # +0 and -0 coincide
    assert dist[2] == 1 and dist[3] == 2  # smallest subnormal is one step from 0; -tiny to +tiny is two
    assert dist[4] == 1 and dist[5] == 1  # infinity is one past the largest finite value
    assert dist[6] == dist[7] == 2 * ones_ordinal  # opposite signs, no overflow
    nan = ulp_distance(np.array([np.nan]).astype(d), np.array([1.0]).astype(d), fmt)
    assert np.isinf(nan[0])


def test_ulp_distance_float64_opposite_extremes_does_not_overflow():
    a = np.array([-F64.max_finite, -np.inf])
    b = np.array([F64.max_finite, np.inf])
    dist = ulp_distance(a, b, F64)
    assert dist[0] == pytest.approx(2.0 * (2**63 - 2**52 - 1), rel=1e-15)
    assert dist[1] >= dist[0]  # float64 result: exact below 2**53, approximate (never wrapped) above


def test_round_mpf_subnormal_is_single_rounding():
    # 2**-1075 * (1 + 2**-60) lies just above the midpoint between 0 and the smallest subnormal: rounds up.
    with mpmath.workprec(200):
        x = mpmath.mpf(2) ** -1075 * (1 + mpmath.mpf(2) ** -60)
        assert round_mpf(x, F64) == 2.0**-1074
        assert round_mpf(mpmath.mpf(2) ** -1075, F64) == 0.0  # exact tie: to even (zero)
        # 1 + 2**-8 + 2**-40 -> bfloat16 1.0078125 (through float32 it would become 1.0)
        y = 1 + mpmath.mpf(2) ** -8 + mpmath.mpf(2) ** -40
        assert round_mpf(y, BF16) == 1.0078125
        assert round_mpf(mpmath.mpf(70000), F16) == math.inf
        assert round_mpf(mpmath.mpf(65519), F16) == 65504.0


def test_round_hilo_uses_the_remainder_on_ties():
    hi = np.array([1 + 2.0**-8, 1 + 2.0**-8, 1 + 2.0**-8])  # a bfloat16 midpoint, exactly a float64
    lo = np.array([2.0**-60, -(2.0**-60), 0.0])
    out = round_hilo(hi, lo, BF16).astype(np.float64)
    assert out.tolist() == [1.0078125, 1.0, 1.0]  # above: up; below: down; exact tie: to even
