"""The torch and jax backends: autodiff (not closed forms), exact dtypes and shapes, layouts, variants, devices.

They run here in the test process (no worker), on a few cases; the
conformance suite (`pytest conformance --gc-backend torch` ...) is what judges
their numerics against the oracle. A framework that is not installed skips
its tests.
"""

from __future__ import annotations

import dataclasses
import importlib
from fractions import Fraction

import numpy as np
import pytest

from conformance.backend import DTYPES, Const, Model, NotSupported, Quantity, Request, numpy_dtype
from conformance.cases.generate import generate_cases
from conformance.spec.parse import parse_expr
from conformance.run.run import Run
from conformance.spec import load_spec

SPEC = load_spec(None)
BACKENDS = {"torch": ("impls.torch", "TorchBackend"), "torch-composed": ("impls.torch", "TorchComposedBackend"),
            "jax": ("impls.jax", "JaxBackend"), "jax-composed": ("impls.jax", "JaxComposedBackend")}
_instances: dict[str, object] = {}


def backend(name: str):
    module, cls = BACKENDS[name]
    pytest.importorskip(name.split("-")[0], reason=f"backend {name} needs its library (CI installs torch and jax)")
    if name not in _instances:
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]


def request_for(layout: str, dtype: str, regime: str = "benign", family: str = "seed", index: int = 0) -> Request:
    cases = [c for c in generate_cases(SPEC, layout, dtype, regime, examples=2) if c.family == family]
    run = Run(SPEC, "numpy", isolate=False)
    case = cases[index]
    lay = SPEC.layouts[layout]
    idents = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    return run.request_for(case, idents)


@pytest.mark.parametrize("layout", ["row", "column"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_result_has_exactly_the_requested_dtype_and_shape(name, dtype, layout):
    req = request_for(layout, dtype)
    out = backend(name).evaluate(req)
    assert set(out) == {q.id for q in req.quantities}
    for q in req.quantities:
        got = out[q.id]
        assert isinstance(got, np.ndarray), (q.id, got)
        assert got.dtype == numpy_dtype(dtype), q.id
        assert got.shape == q.shape, q.id


@pytest.mark.parametrize("name", list(BACKENDS))
def test_derivatives_come_from_autodiff_not_from_the_closed_forms(name):
    """A wrong closed form in the request changes nothing: the backend differentiates the forward definitions."""
    req = request_for("row", "float64", family="batch")
    wrong = dataclasses.replace(req, quantities=tuple(
        q if q.kind == "value" else dataclasses.replace(q, expr=Const(Fraction(0))) for q in req.quantities))
    b = backend(name)
    right, got = b.evaluate(req), b.evaluate(wrong)
    numpy_closed_forms = importlib.import_module("impls.numpy").NumpyBackend().evaluate(req)
    for q in req.quantities:
        assert np.array_equal(got[q.id], right[q.id]), q.id
        np.testing.assert_allclose(got[q.id], numpy_closed_forms[q.id], rtol=1e-12, atol=1e-15, err_msg=q.id)


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("layout, stated", [("row", "numerator"), ("column", "denominator")])
def test_jacobians_come_in_the_stated_layout(name, layout, stated):
    """da/dx is W1.T in numerator layout (row) and W1 in denominator layout (column), exactly; asking for the
    other convention transposes it."""
    req = request_for(layout, "float64")
    W1 = req.inputs["W1"]
    b = backend(name)
    assert np.array_equal(b.evaluate(req)["da/dx"], W1.T if stated == "numerator" else W1)
    other = "denominator" if stated == "numerator" else "numerator"
    flipped = dataclasses.replace(req, quantities=tuple(
        dataclasses.replace(q, convention=other, shape=q.shape[::-1]) if q.id == "da/dx" else q
        for q in req.quantities))
    assert np.array_equal(b.evaluate(flipped)["da/dx"], W1 if stated == "numerator" else W1.T)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_the_stable_loss_stays_finite_where_the_composed_one_does_not(framework):
    """float32, a logit gap of 1000: log(softmax) of the other classes is log(0) = -inf."""
    req = request_for("row", "float32", regime="large_logits", family="seed", index=0)
    req = dataclasses.replace(req, inputs={**req.inputs, "b2": np.array([[1000, 0, 0, 0, 0]], np.float32),
                                           "y": np.array([[0, 1, 0, 0, 0]], np.float32)})
    composed = backend(f"{framework}-composed").evaluate(req)
    fused = backend(framework).evaluate(req)
    assert not np.all(np.isfinite(composed["L"])) and not np.all(np.isfinite(composed["dL/dtheta"]))
    assert np.all(np.isfinite(fused["L"])) and np.all(np.isfinite(fused["dL/dtheta"]))
    assert np.allclose(fused["dL/dtheta"], [[1, -1, 0, 0, 0]])


def _model_with_loss(loss: str) -> Model:
    lay = SPEC.layouts["row"]
    names = list(SPEC.inputs)
    forward = []
    for d in lay.forward:
        text = loss if d.name == "L" else None
        forward.append((d.name, parse_expr(text, names=names) if text else d.expr))
        names.append(d.name)
    return Model(SPEC.name, "row", tuple(SPEC.inputs), tuple(forward), "L")


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_loss_without_the_pattern_is_evaluated_as_written_by_the_stable_variant(framework):
    req = request_for("row", "float64")
    req = dataclasses.replace(req, model=_model_with_loss("sum(yhat * yhat)"))
    composed = backend(f"{framework}-composed").evaluate(req)
    fused = backend(framework).evaluate(req)
    for q in req.quantities:
        assert np.array_equal(composed[q.id], fused[q.id]), q.id


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_the_stable_loss_has_no_gradient_through_the_probabilities(framework):
    req = request_for("row", "float64")
    q = Quantity("dL/dyhat", "gradient", "L", "yhat", shape=(1, 5))
    req = dataclasses.replace(req, quantities=(q,))
    composed = backend(f"{framework}-composed")
    got = composed.evaluate(req)["dL/dyhat"]
    np.testing.assert_allclose(got, -req.inputs["y"] / composed.evaluate(
        dataclasses.replace(req, quantities=(Quantity("yhat", "value", "yhat", shape=(1, 5)),)))["yhat"])
    assert isinstance(backend(framework).evaluate(req)["dL/dyhat"], NotSupported)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_an_absent_device_is_not_supported(name):
    b = backend(name)
    req = dataclasses.replace(request_for("row", "float32"), device="cuda")
    if "cuda" in b.devices():
        out = b.evaluate(req)  # a GPU is here: it must run there and answer in the requested dtype
        assert all(v.dtype == np.float32 for v in out.values())
    else:
        with pytest.raises(NotSupported, match="device 'cuda'"):
            b.evaluate(req)
    with pytest.raises(NotSupported, match="device 'tpu9'"):
        b.evaluate(dataclasses.replace(req, device="tpu9"))


def test_torch_moves_bfloat16_bit_for_bit():
    pytest.importorskip("torch", reason="needs torch (CI installs it)")
    import ml_dtypes

    from impls.torch import _to_numpy, _to_tensor

    bits = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x3F80, 0x7F7F, 0x7F80, 0xFF80, 0x7FC1], np.uint16)
    arr = bits.view(ml_dtypes.bfloat16).reshape(3, 3)
    back = _to_numpy(_to_tensor(arr, "bfloat16", __import__("torch").device("cpu")), "bfloat16")
    assert back.dtype == arr.dtype and np.array_equal(back.view(np.uint16), arr.view(np.uint16))


def test_jax_float64_is_float64():
    """x64 is enabled by the backend: float64 results are computed in float64, not float32."""
    b = backend("jax")
    req = request_for("row", "float64")
    a = b.evaluate(req)["a"]
    i = req.inputs
    exact = i["x"] @ i["W1"] + i["b1"]
    assert a.dtype == np.float64 and np.max(np.abs(a - exact)) <= 1e-14 * np.max(np.abs(exact))


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_the_plain_name_is_the_stable_form_and_composed_the_formula_as_written(framework):
    """One naming rule for numpy, torch and jax; the old import target of the stable form still works."""
    stable, composed = backend(framework), backend(f"{framework}-composed")
    assert (stable.name, stable.fused) == (framework, True)
    assert (composed.name, composed.fused) == (f"{framework}-composed", False)
    module = importlib.import_module(BACKENDS[framework][0])
    assert getattr(module, framework.capitalize() + "FusedBackend") is type(stable)
