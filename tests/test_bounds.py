"""The running error bound, rule by rule: each rule bounds a real evaluation on its own (safety factor 1),
the bound does not depend on how products are associated, and the underflow rules keep the bound finite
and informative where a probability underflows."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

from conformance.judge.bounds import ErrorBounds, gamma
from conformance.expr import fuse_log_softmax, interpret
from conformance.formats import get_format
from conformance.spec.parse import parse_expr
from conformance.spec import load_spec
from impls.numpy import NumpyOps

from .accuracy_backends import _round_rational
from .conftest import SEED_SPEC

POLICY = load_spec(SEED_SPEC).tolerance


def make_bounds(definitions, inputs, dtype, policy=POLICY):
    """ErrorBounds over a small layout of named definitions, with float64 values standing in for exact ones."""
    names = set(inputs)
    forward = []
    for name, text in definitions:
        forward.append(SimpleNamespace(name=name, expr=parse_expr(text, names=names)))
        names.add(name)
    layout = SimpleNamespace(forward=forward, definitions={d.name: d.expr for d in forward}, loss=None)
    env = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    nodes = {}
    with np.errstate(all="ignore"):
        for d in forward:
            env[d.name] = interpret(d.expr, env, NumpyOps("float64"), nodes)
    return ErrorBounds(layout, nodes, inputs, dtype, policy), {d.name: d.expr for d in forward}, env


def test_gamma():
    assert gamma(3, 2.0**-24) == pytest.approx(3 * 2.0**-24 / (1 - 3 * 2.0**-24), rel=1e-15)
    assert gamma(2**24, 2.0**-24) == np.inf


def test_bound_of_a_product_chain_does_not_depend_on_the_association():
    """A backend may compute g @ (W2.T @ Diag(s) @ W1.T) instead of ((g @ W2.T) @ Diag(s)) @ W1.T: the
    bound is built from the absolute chains |g||W2.T||D||W1.T|, the same for both."""
    rng = np.random.default_rng(0)
    inputs = {"g": rng.normal(size=(1, 5)), "A": rng.normal(size=(5, 3)), "s": rng.uniform(0, 0.25, (1, 3)),
              "B": rng.normal(size=(3, 7))}
    defs = [("left", "((g @ A) @ Diag(s)) @ B"), ("right", "g @ (A @ (Diag(s) @ B))"),
            ("mixed", "((g @ A) * s) @ B")]
    for dtype in ("float64", "float32", "bfloat16"):
        b, exprs, _ = make_bounds(defs, inputs, dtype)
        left, right, mixed = (b.bound(exprs[k]) for k in ("left", "right", "mixed"))
        assert np.allclose(left, right, rtol=1e-12)
        # the Hadamard form rounds once per product where Diag(s) is a (sparse) matrix product: no larger
        assert np.all(mixed <= left * (1 + 1e-12))


ELEMENTWISE = [("e", "exp(X)"), ("l", "log(P)"), ("s", "sigmoid(X)"), ("t", "tanh(X)"),
               ("sp", "s - s*s"), ("m", "X * P - P")]
REDUCTIONS = [("y", "softmax(X, axis=1)"), ("ls", "log_softmax(X, axis=1)"), ("lse", "logsumexp(X, axis=1)"),
              ("c", "sum(X, axis=0)"), ("q", "(X @ W) @ V + P"), ("L", "-sum(Y * log(y))")]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_each_rule_bounds_the_spec_evaluation_without_the_safety_factor(dtype):
    """The spec's own evaluation order (numpy, one rounding per operation, float32 accumulation for 16-bit
    types) stays within the bound itself, with no safety factor: the factor is kept for other forms."""
    rng = np.random.default_rng(1)
    fmt = get_format(dtype)
    lim = 9.0 if dtype == "float16" else 30.0
    n = 400
    raw = {"X": rng.uniform(-lim, lim, (n, 5)), "P": np.exp(rng.uniform(-8, 8, (n, 5))),
           "W": rng.normal(size=(5, 6)), "V": rng.normal(size=(6, 5)),
           "Y": np.eye(5)[rng.integers(0, 5, n)]}
    inputs = {k: v.astype(fmt.dtype).astype(np.float64) for k, v in raw.items()}
    b, exprs, exact = make_bounds(ELEMENTWISE + REDUCTIONS, inputs, dtype)
    env = {k: v.astype(fmt.dtype) for k, v in inputs.items()}
    ops = NumpyOps(dtype)
    worst = 0.0
    with np.errstate(all="ignore"):
        for name, _ in ELEMENTWISE + REDUCTIONS:
            env[name] = interpret(exprs[name], env, ops)
            bound = np.broadcast_to(b.bound(exprs[name]), env[name].shape)
            # the loss both as written (log of softmax, where finite) and fused (log_softmax), as the numpy
            # backend evaluates it: one bound covers both
            fused = fuse_log_softmax(exprs[name], exprs)
            for form in {exprs[name], fused}:
                got = interpret(form, env, ops).astype(np.float64)
                err = np.abs(got - exact[name])
                finite = np.isfinite(got)
                assert form != fused or finite.all()  # only log(0) of the composed form may be non-finite
                assert np.all(err[finite] <= bound[finite]), (name, float(np.max(err[finite] / bound[finite])))
                if finite.any():
                    worst = max(worst, float(np.max(np.where(bound > 0, err / bound, 0)[finite])))
    assert worst > 0.05  # the comparison is not vacuous: real rounding errors were measured


def test_a_subnormal_input_may_be_read_as_zero():
    b, exprs, _ = make_bounds([("z", "x * w")], {"x": np.array([[1e-40, 1.0, 0.0]]), "w": np.array([[2.0, 2.0, 2.0]])},
                              "float32")
    bound = b.bound(exprs["z"])
    assert bound[0, 0] >= 2e-40  # |w| |x| for the subnormal x (denormals-are-zero)
    assert bound[0, 2] <= get_format("float32").eta  # an exact zero stays exact


def test_an_exact_zero_factor_absorbs_an_infinite_bound():
    """y * log(q) with y = 0 exactly: whatever log's bound, the product is exactly 0 (or NaN, which the
    comparison rejects on its own), so an infinite bound times an exact zero counts as zero."""
    from conformance.judge.bounds import _mm, _times

    assert _times(np.array([0.0, 2.0]), np.array([np.inf, 3.0])).tolist() == [0.0, 6.0]
    assert _mm(np.array([[0.0, 1.0]]), np.array([[np.inf], [2.0]])).tolist() == [[2.0]]
    assert _mm(np.array([[1.0, 1.0]]), np.array([[np.inf], [2.0]])).tolist() == [[np.inf]]
    b, exprs, _ = make_bounds([("r", "y * log(q)")], {"y": np.array([[0.0, 1.0]]), "q": np.array([[0.0, 0.5]])},
                              "float32")
    assert b.bound(exprs["r"])[0, 0] <= get_format("float32").eta


@pytest.mark.parametrize("dtype,gap", [("float32", 30.0), ("float32", 100.0), ("float32", 1000.0),
                                       ("float16", 30.0), ("bfloat16", 100.0), ("float64", 1000.0)])
def test_the_loss_bound_stays_finite_and_informative_where_the_labelled_probability_underflows(seed_spec, dtype, gap):
    """The labelled class's logit `gap` below the others: the bound of L is finite, far below L itself, and
    below the error of log(yhat + 1e-7) (which must be caught), in every dtype, including where yhat
    underflows the dtype and even float64 (the composed form cannot be finite there; the fused form is
    exact). Through the real oracle: theta = b2 (the weights are zero)."""
    from conformance.oracle import evaluate as oracle

    fmt = get_format(dtype)
    row = seed_spec.layouts["row"]
    b2 = np.array([[-gap, 0.5, -0.25, 0.0, 0.125]])
    inputs = {"x": np.zeros((1, 5)), "W1": np.zeros((5, 3)), "b1": np.zeros((1, 3)), "W2": np.zeros((3, 5)),
              "b2": b2, "y": np.eye(5)[[0]]}
    inputs = {k: v.astype(fmt.dtype) for k, v in inputs.items()}
    ev = oracle.evaluate(row, inputs, [])
    b = ErrorBounds(row, ev.nodes, inputs, dtype, seed_spec.tolerance)
    loss = float(ev.values["L"].hi[0, 0])
    bound = float(b.bound(row.definitions["L"])[0, 0])
    assert np.isfinite(bound) and bound < 0.05 * loss
    wrong = -np.log(np.exp(-loss) + 1e-7)
    assert abs(wrong - loss) > seed_spec.tolerance.safety_factor * bound + fmt.eta


@pytest.mark.parametrize("fma", [False, True])
def test_a_biased_product_is_bounded_for_the_bias_first_order(fma):
    """gemm with beta = 1 (torch.addmm, nn.Linear) starts the accumulator at the bias: s = b, then s += x_k w_k,
    sequentially or by fused multiply-add. Where |b| dominates, each of the k additions rounds at |b|'s
    magnitude, beyond the product's gamma_k |x||W| plus one rounding of the sum (the former rule, exceeded
    here with factor 1); the bound of x @ W + b, gamma_{k+1} (|x||W| + |b|), holds with factor 1."""
    rng = np.random.default_rng(3)
    n, k, m, dt = 400, 7, 3, np.dtype(np.float32)
    x = rng.normal(size=(n, k)).astype(dt)
    W = rng.normal(size=(k, m)).astype(dt)
    b = (np.sign(rng.normal(size=(1, m))) * rng.uniform(1000, 1500, size=(1, m))).astype(dt)
    s = np.broadcast_to(b, (n, m)).astype(dt)
    for i in range(k):
        if fma:
            exact = [[Fraction(float(x[r, i])) * Fraction(float(W[i, c])) + Fraction(float(s[r, c]))
                      for c in range(m)] for r in range(n)]
            s = np.array([[_round_rational(q, dt) for q in row] for row in exact], dtype=dt)
        else:
            s = (s + x[:, i:i + 1] * W[i:i + 1, :]).astype(dt)
    bounds, exprs, env = make_bounds([("a", "x @ W + b")], {"x": x, "W": W, "b": b}, "float32")
    err = np.abs(s.astype(np.float64) - env["a"])  # float64 stands in for the exact value (error ~1e-16 |b|)
    u = get_format("float32").u
    former = gamma(k, u) * (np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64))) + u * np.abs(env["a"])
    assert np.max(err / former) > 1, "the bias-first order does exceed the former rule here"
    assert np.all(err <= bounds.bound(exprs["a"])), np.max(err / bounds.bound(exprs["a"]))
    print(f"\nbias-first{' FMA' if fma else ''}: max error / former rule {np.max(err / former):.3g}, "
          f"/ the biased-product bound {np.max(err / bounds.bound(exprs['a'])):.3g}")
