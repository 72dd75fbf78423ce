"""compare_many (the stacked comparison of a case's quantities) gives what compare gives each one, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.formats import DTYPES, get_format
from conformance.judge.compare import Comparison, compare, compare_many
from conformance.oracle.certify import Exact


def _same(a: Comparison, b: Comparison) -> bool:
    def norm(x: object) -> object:
        return "nan" if isinstance(x, float) and math.isnan(x) else x

    return [norm(v) for v in a.__dict__.values()] == [norm(v) for v in b.__dict__.values()]


def _item(rng: np.random.Generator, dtype: str, shape: tuple[int, int], kind: str):  # type: ignore[no-untyped-def]
    fmt = get_format(dtype)
    hi = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
    hi[rng.random(shape) < 0.1] = 0.0
    lo = hi * rng.standard_normal(shape) * 2.0 ** -60
    got = hi.astype(fmt.dtype)
    if kind == "off":  # a few components well outside any bound
        mask = rng.random(shape) < 0.3
        got = np.where(mask, (hi * (1 + 1e-2)).astype(fmt.dtype), got).astype(fmt.dtype)
    elif kind == "nonfinite":
        got = got.copy()
        got.reshape(-1)[rng.integers(got.size)] = np.nan if rng.random() < 0.5 else np.inf
    elif kind == "ulps":  # a few ulps off everywhere
        got = np.nextafter(got, np.asarray(np.inf, dtype=fmt.dtype)) if dtype == "float64" else \
            (hi * (1 + 3 * 2.0 ** -fmt.p)).astype(fmt.dtype)
    bound_kind = rng.integers(3)
    bound = np.abs(hi) * 2.0 ** -fmt.p * 4 if bound_kind == 0 else \
        np.float64(1e-3) if bound_kind == 1 else np.abs(hi).max(axis=0, keepdims=True) * 2.0 ** -fmt.p * 4
    return got, Exact(hi, lo), bound, shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_stacked_comparisons_are_those_of_compare(dtype):
    rng = np.random.default_rng(7)
    for trial in range(20):
        items = []
        for _ in range(int(rng.integers(1, 8))):
            shape = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
            items.append(_item(rng, dtype, shape, str(rng.choice(["ok", "off", "nonfinite", "ulps"]))))
        # irregular ones, judged by compare itself: not an array, wrong shape, wrong dtype, empty
        got, ex, b, shape = items[0]
        items.append(([1.0], ex, b, shape))
        items.append((got.reshape(-1)[:1].reshape(1, 1), ex, b, (2, 7)))
        items.append((got.astype(np.float64 if dtype != "float64" else np.float32), ex, b, shape))
        items.append((np.zeros((0, 3), dtype=get_format(dtype).dtype), Exact(np.zeros((0, 3)), np.zeros((0, 3))),
                      np.zeros((0, 3)), (0, 3)))
        order = rng.permutation(len(items))
        items = [items[i] for i in order]
        many = compare_many(items, dtype=dtype, safety_factor=2.0)
        one = [compare(g, e, bd, dtype=dtype, expected_shape=sh, safety_factor=2.0) for g, e, bd, sh in items]
        assert len(many) == len(one)
        for m, o in zip(many, one):
            assert _same(m, o), (m, o)
        assert {c.status for c in one} >= {"fail"}  # the cases exercise failures too


def test_a_failing_and_a_passing_result_keep_their_own_verdicts():
    hi = np.array([[1.0, 2.0, 3.0]])
    good = (hi.copy(), Exact(hi, np.zeros_like(hi)), np.full_like(hi, 1e-15), (1, 3))
    bad = (hi * 1.001, Exact(hi, np.zeros_like(hi)), np.full_like(hi, 1e-15), (1, 3))
    a, b, c = compare_many([good, bad, good], dtype="float64", safety_factor=1.0)
    assert (a.status, b.status, c.status) == ("pass", "fail", "pass")
    assert b.detail == "out_of_bound" and b.message.startswith("3 of 3 component(s) beyond the bound")
