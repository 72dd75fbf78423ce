"""The flint engine's bulk export (issue 15, wide layers) gives bit for bit what the previous export gave.

The export was made cheaper by building object arrays with ``np.fromiter`` and
driving the per-ball calls with ``map``; the certified values must not move. The
reference below is the previous code, kept verbatim (generators, slice
assignment), run on the same arrays of edge balls (ties, narrower midpoints,
powers of two, zeros, tiny, subnormal and huge values, radii around 2**-93)
in one batch, as the oracle calls it.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

flint = pytest.importorskip("flint", reason="the flint engine needs python-flint")

from conformance.oracle.certify import Exact, half_ulp_inside, narrow_midpoint_mask  # noqa: E402
from conformance.oracle.engines import flint_engine as fe  # noqa: E402
from tests.test_engines import _balls, _prec  # noqa: E402


def _old_array(values: list, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def _old_certify_many(values, *, waive_ties, bits):
    """arb_certify_many before issue 15's wide-layer change (generator expressions)."""
    arrays = {k: np.asarray(v) for k, v in values.items()}
    flat = fe._flatten(arrays)
    n = flat.size
    balls = flat.tolist()
    hi = flat.astype(np.float64) if n else np.zeros(0)
    lo = np.fromiter((float(x - h) for x, h in zip(balls, hi.tolist())), dtype=np.float64, count=n)
    acc = np.fromiter((x.rel_accuracy_bits() for x in balls), dtype=np.float64, count=n)
    with np.errstate(all="ignore"):
        ahi = np.abs(hi)
        reach = (np.abs(lo) + ahi * 2.0 ** -96) * (1 + 2.0 ** -50)
        fast = (np.isfinite(hi) & (ahi >= fe._FAST_MIN) & (acc >= 97) & (reach < half_ulp_inside(hi))
                & ~narrow_midpoint_mask(hi))
    undecided = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~fast).tolist():
        x = balls[i]
        if hi[i] == 0 and x.is_zero():
            hi[i], lo[i] = 0.0, 0.0
            continue
        if abs(hi[i]) < fe._FAST_MIN and not x.is_exact() and x.abs_upper() < fe._TINY:
            hi[i], lo[i] = 0.0, 0.0
            continue
        got = fe._exact_rule(x, waive_ties, bits)
        if got is None:
            return None
        hi[i], lo[i], undecided[i] = got
    his, los, und = fe._split(hi, arrays), fe._split(lo, arrays), fe._split(undecided, arrays)
    return {k: Exact(his[k], los[k], int(np.count_nonzero(und[k]))) for k in arrays}


def _huge_and_subnormal(count: int, seed: int) -> list:
    """Point and narrow balls at the ends of the float64 range (huge, subnormal, near the underflow cut)."""
    rnd = random.Random(seed)
    arb = flint.arb
    out = []
    for _ in range(count):
        e = rnd.choice((rnd.randrange(1000, 1024), rnd.randrange(-1080, -1020), rnd.randrange(-970, -950)))
        m = arb(math.ldexp(rnd.uniform(1, 2), e) * rnd.choice((1, -1)))
        if rnd.random() < 0.5:
            m = m / 3
        out.append(m)
    return out


@pytest.mark.parametrize("waive", [False, True])
@pytest.mark.parametrize("prec", [128, 1024])
def test_bulk_export_equals_the_previous_one(prec, waive):
    balls = _balls(prec, 4000, seed=7 * prec + waive) + _huge_and_subnormal(500, seed=prec + waive)
    with _prec(prec):
        # keep the balls the rule accepts alone (one rejected ball makes the whole batch None, checked below)
        ok = [x for x in balls if _old_certify_many({"x": _old_array([x], (1, 1))}, waive_ties=waive,
                                                    bits=prec) is not None]
        assert len(ok) > 3000
        half = len(ok) // 4 * 2  # even, so that the second half fills a 2-row matrix
        batch = {"v": _old_array(ok[:half], (half,)), "m": _old_array(ok[half:2 * half], (2, half // 2)),
                 "empty": _old_array([], (0,))}
        new = fe.arb_certify_many(batch, waive_ties=waive, bits=prec)
        old = _old_certify_many(batch, waive_ties=waive, bits=prec)
        assert new is not None and old is not None and list(new) == list(old)
        for k in old:
            assert new[k].hi.shape == old[k].hi.shape
            assert new[k].hi.tobytes() == old[k].hi.tobytes(), k  # bit for bit: -0.0, NaN payloads included
            assert new[k].lo.tobytes() == old[k].lo.tobytes(), k
            assert new[k].undecided == old[k].undecided
        rejected = [x for x in balls if x not in ok] if len(ok) < len(balls) else []
        if rejected:
            bad = dict(batch, bad=_old_array(rejected[:1], (1,)))
            assert fe.arb_certify_many(bad, waive_ties=waive, bits=prec) is None
            assert _old_certify_many(bad, waive_ties=waive, bits=prec) is None


def test_object_arrays_hold_the_very_balls():
    """``_array`` (np.fromiter) stores the same objects, in order and shape, as slice assignment did."""
    with _prec(128):
        balls = _balls(128, 600, seed=3)
    for shape in [(600,), (20, 30), (1, 600), (600, 1)]:
        new, old = fe._array(balls, shape), _old_array(balls, shape)
        assert new.shape == old.shape == shape and new.dtype == object
        assert all(a is b for a, b in zip(new.reshape(-1).tolist(), old.reshape(-1).tolist()))
    assert fe._array([], (0, 3)).shape == (0, 3)


def test_to_arb_is_exact_on_edges():
    values = np.array([0.0, -0.0, 5e-324, -5e-324, 2.0 ** -1022, 1.7976931348623157e308, 1 / 3, np.inf, -np.inf])
    got = fe.to_arb(values.reshape(3, 3))
    ref = _old_array([flint.arb(v) for v in values.tolist()], (3, 3))
    for a, b in zip(got.reshape(-1).tolist(), ref.reshape(-1).tolist()):
        assert a.is_exact() and (a == b or (not a.is_finite() and a.mid() == b.mid()))
