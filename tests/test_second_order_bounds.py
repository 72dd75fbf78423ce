"""The error bound of a Hessian of the composed cross-entropy (docs/tolerances.md, "Second order through
log(softmax)").

Differentiating ``-sum(y * log(softmax(theta)))`` twice divides by the probabilities and multiplies back: the
computed Hessian carries the rounding of terms that cancel exactly and are not within a constant factor of the
Hessian. These tests show that the derived allowance is needed (a composed double backward, written out here
in numpy in the dtype, exceeds the closed form's bound) and sufficient (it never exceeds the bound with the
allowance), and that it is confined to second-order quantities: the same tree as a first-order Jacobian keeps
its bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.oracle import evaluate as oracle
from conformance.cases.generate import generate_cases
from conformance.formats import get_format
from conformance.judge.bounds import ErrorBounds
from conformance.spec import load_spec


@pytest.fixture(scope="module")
def seed_spec():
    return load_spec()


def _cases(spec, layout: str, dtype: str, regime: str, examples: int = 12):
    return [c for c in generate_cases(spec, layout, dtype, regime, examples=examples) if c.sizes["n"] == 1]


def _composed_hessian(theta: np.ndarray, y: np.ndarray, dt: type, recompute: bool) -> np.ndarray:
    """The Hessian in theta of -sum(y log(softmax(theta))) as forward over reverse mode computes it, every
    operation in the dtype: r = p (g - S), g = -y / p, S = sum(g p), differentiated along each e_j.
    ``recompute``: the backward multiplies by the probabilities evaluated a second time, rounded differently
    (exp(z) * (1 / sum exp(z)), within a few roundings of the stored ones), where the forward divided; the
    16-bit formats accumulate in float32."""
    acc = np.float32 if dt == np.float16 else dt
    t = theta.astype(dt).reshape(-1)
    lab = y.astype(dt).reshape(-1)
    z = (t - np.max(t)).astype(dt)
    e = np.exp(z).astype(dt)
    w = np.sum(e, dtype=acc).astype(dt)
    p = (e / w).astype(dt)
    q = (e * (1 / w).astype(dt)).astype(dt) if recompute else p
    g = (-lab / p).astype(dt)
    s = np.sum((g * q).astype(dt), dtype=acc).astype(dt)
    k = t.size
    out = np.zeros((k, k))
    for j in range(k):
        v = np.zeros(k, dtype=dt)
        v[j] = 1
        dp = (q * v - q * np.sum((q * v).astype(dt), dtype=acc).astype(dt)).astype(dt)
        dg = ((lab / p).astype(dt) / p * dp).astype(dt)
        ds = np.sum((dg * q + g * dp).astype(dt), dtype=acc).astype(dt)
        dr = (dp * (g - s) + q * (dg - ds)).astype(dt)
        out[:, j] = dr.astype(np.float64)
    return out


def _theta(case, dt: type) -> np.ndarray:
    """theta = sigmoid(x W1 + b1) W2 + b2 computed in the dtype (the backend's own forward)."""
    i = {k: v.astype(dt) for k, v in case.inputs.items()}
    a = (i["x"] @ i["W1"] + i["b1"]).astype(dt)
    h = (1 / (1 + np.exp(-a))).astype(dt)
    return (h @ i["W2"] + i["b2"]).astype(dt)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("recompute", [False, True], ids=["stored", "recomputed"])
def test_a_composed_double_backward_needs_the_second_order_allowance_and_fits_it(seed_spec, dtype, recompute):
    lay = seed_spec.layouts["row"]
    ident = lay.identity("d2L/dtheta2.hessian")
    dt = get_format(dtype).dtype
    kappa, eta = seed_spec.tolerance.safety_factor, get_format(dtype).eta
    worst_without, worst_with, compared = 0.0, 0.0, 0
    for regime in ("unlikely_class", "large_logits", "benign"):
        for case in _cases(seed_spec, "row", dtype, regime):
            sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
            ev = oracle.evaluate(lay, case.inputs, sized)
            with np.errstate(all="ignore"):
                got = _composed_hessian(_theta(case, dt), case.inputs["y"], dt, recompute)
            if not np.all(np.isfinite(got)):
                continue  # a probability flushed to zero: the composed form is not finite (judged as such)
            x = ev.values[ident.id]
            err = np.abs((got - x.hi) - x.lo)
            bounds = ErrorBounds(lay, ev.nodes, case.inputs, dtype, seed_spec.tolerance)
            first = kappa * bounds.bound(ident.expr) + eta
            second = kappa * bounds.bound(ident.expr, "hessian") + eta
            worst_without = max(worst_without, float(np.max(err / first)))
            worst_with = max(worst_with, float(np.max(err / second)))
            compared += 1
    print(f"{dtype} {'recomputed' if recompute else 'stored'}: {compared} cases, worst error / allowed "
          f"{worst_without:.3g} without the allowance, {worst_with:.3g} with it")
    assert compared >= 12
    assert worst_with <= 1.0, worst_with
    if dtype != "float16":  # where float16's probabilities are small enough to matter, they flush to zero
        assert worst_without > 1.0, "the closed form's bound alone never failed: the test cannot show the need"


def test_the_same_tree_as_a_first_order_jacobian_keeps_its_bound(seed_spec):
    """dyhat/dtheta is Diag(yhat) - yhat.T @ yhat too: as a Jacobian its bound has no second-order term."""
    lay = seed_spec.layouts["row"]
    jac, hess = lay.identity("dyhat/dtheta"), lay.identity("d2L/dtheta2.hessian.normalized")
    assert jac.expr == hess.expr
    case = _cases(seed_spec, "row", "float32", "unlikely_class", examples=3)[0]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    ev = oracle.evaluate(lay, case.inputs, sized)
    bounds = ErrorBounds(lay, ev.nodes, case.inputs, "float32", seed_spec.tolerance)
    plain = bounds.bound(jac.expr).copy()
    second = bounds.bound(hess.expr, "hessian")
    assert np.array_equal(bounds.bound(jac.expr, "jacobian"), plain)
    assert np.all(second >= plain) and np.any(second > 2 * plain)
    fresh = ErrorBounds(lay, ev.nodes, case.inputs, "float32", seed_spec.tolerance)
    assert np.array_equal(fresh.bound(jac.expr), plain)  # bounding the Hessian first changes nothing either


def test_a_fused_loss_gets_no_second_order_allowance(seed_spec):
    """The allowance is for the composed loss only: with the loss written as log_softmax nothing is added."""
    from dataclasses import replace

    from conformance.expr import fuse_log_softmax

    lay = seed_spec.layouts["row"]
    fused = replace(lay, forward=tuple(replace(d, expr=fuse_log_softmax(d.expr, lay.definitions)) for d in lay.forward))
    assert fused.definitions != lay.definitions
    ident = lay.identity("d2L/dtheta2.hessian")
    case = _cases(seed_spec, "row", "float32", "unlikely_class", examples=3)[0]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    ev = oracle.evaluate(fused, case.inputs, sized)
    bounds = ErrorBounds(fused, ev.nodes, case.inputs, "float32", seed_spec.tolerance)
    assert np.array_equal(bounds.bound(ident.expr, "hessian"), bounds.bound(ident.expr))
