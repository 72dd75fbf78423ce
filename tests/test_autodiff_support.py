"""The pieces the autodiff backends share: recognising softmax cross-entropy, slicing the forward definitions."""

from __future__ import annotations

import pytest

from conformance.backend import Call, Model, Name, Neg
from conformance.spec.parse import parse_expr
from impls.forward_graph import depends_on, downstream
from impls.fused_xent import XENT_PER_SAMPLE, XENT_SUM, fuse_cross_entropy

INPUTS = ("x", "W1", "b1", "W2", "b2", "y")


def _model(loss: str, axis: int = 1, extra: tuple[tuple[str, str], ...] = ()) -> Model:
    texts = [("a", "x @ W1 + b1"), ("h", "sigmoid(a)"), ("theta", "h @ W2 + b2"),
             ("yhat", f"softmax(theta, axis={axis})"), *extra, ("L", loss)]
    names = list(INPUTS)
    forward = []
    for name, text in texts:
        forward.append((name, parse_expr(text, names=names)))
        names.append(name)
    return Model("m", "row" if axis == 1 else "column", INPUTS, tuple(forward), "L")


@pytest.mark.parametrize("loss, axis, fn", [
    ("-sum(y * log(yhat))", 1, XENT_SUM),
    ("-sum(log(yhat) * y)", 1, XENT_SUM),
    ("sum(-y * log(yhat))", 0, XENT_SUM),
    ("sum(y * -log(yhat))", 1, XENT_SUM),
    ("sum(-(y * log(yhat)))", 1, XENT_SUM),
    ("-sum(y * log(softmax(theta, axis=1)))", 1, XENT_SUM),
    ("-sum(y * log_softmax(theta, axis=0))", 0, XENT_SUM),
    ("-sum(y * log(yhat), axis=1)", 1, XENT_PER_SAMPLE),
    ("-sum(y * logp)", 1, XENT_SUM),  # through two names: logp = log(yhat), yhat = softmax(theta)
])
def test_softmax_cross_entropy_is_recognised(loss, axis, fn):
    extra = (("logp", "log(yhat)"),) if "logp" in loss else ()
    fused, changed = fuse_cross_entropy(_model(loss, axis, extra))
    assert changed == ("L",)
    new = fused.definitions["L"]
    assert new == Call(fn, (Name("y"), Name("theta")), axis)


@pytest.mark.parametrize("loss", [
    "sum(y * log(yhat))",  # the wrong sign: not a cross-entropy
    "-sum(y * log(yhat), axis=0)",  # summed over samples, not classes: no fused loss computes that
    "-mean(y * log(yhat))",
    "-sum(y * log(sigmoid(theta)))",
    "-sum(y * log(yhat * yhat))",
    "-sum(log(yhat) * log(yhat))",
])
def test_other_losses_are_left_as_written(loss):
    model = _model(loss)
    fused, changed = fuse_cross_entropy(model)
    assert changed == () and fused == model


def test_a_cross_entropy_inside_a_larger_expression_is_fused_in_place():
    fused, changed = fuse_cross_entropy(_model("-sum(-y * log(yhat)) + sum(W1 * W1)"))
    assert changed == ("L",)
    assert fused.definitions["L"].left == Neg(Call(XENT_SUM, (Name("y"), Name("theta")), 1))


def test_downstream_slices_and_dependence():
    m = _model("-sum(y * log(yhat))")
    assert [n for n, _ in downstream(m, "theta", "L")] == ["yhat", "L"]
    assert [n for n, _ in downstream(m, "x", "h")] == ["a", "h"]
    assert [n for n, _ in downstream(m, "W2", "L")] == ["theta", "yhat", "L"]
    assert [n for n, _ in downstream(m, "a", "yhat")] == ["h", "theta", "yhat"]
    assert depends_on(m, "L", "x") and depends_on(m, "L", "theta") and not depends_on(m, "a", "W2")
    fused, _ = fuse_cross_entropy(m)
    assert depends_on(m, "L", "yhat") and not depends_on(fused, "L", "yhat")
    assert [n for n, _ in downstream(fused, "theta", "L")] == ["L"]
