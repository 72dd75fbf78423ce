"""The latitude the backend contract gives, honoured everywhere a reply is read: one quantity's exception is
that quantity's error (the others keep their verdicts, the metamorphic checks that do not need it run), and a
0-d loss is the 1 x 1 scalar. Through the worker process and in the harness's process alike."""

from __future__ import annotations

import pytest

from conformance.checks.metamorphic import applicable_properties, check_property
from conformance.run.run import Run
from conformance.spec import load_spec
from conformance.statuses import ERROR, FAIL, PASS

from .contract_backends import MESSAGE

SPEC = load_spec()
W1_GRADIENTS = {"dL/dW1", "dL/dW1.general"}


def _group(backend: str, isolate: bool, layout: str = "row", dtype: str = "float64", regime: str = "benign"):
    with Run(SPEC, f"tests.contract_backends:{backend}", isolate=isolate, examples=1) as run:
        return run.group(layout, dtype, regime).records


@pytest.mark.parametrize("isolate", [False, True])
def test_an_exception_for_one_quantity_is_that_quantitys_error_only(isolate):
    records = _group("OneQuantityRaises", isolate)
    mine = [r for r in records if r.quantity in W1_GRADIENTS]
    others = [r for r in records if r.quantity not in W1_GRADIENTS]
    assert {r.quantity for r in mine} == W1_GRADIENTS
    assert all(r.status == ERROR and r.detail == "exception" for r in mine)
    assert all(r.message == f"NotImplementedError: {MESSAGE}" for r in mine), mine[0].message
    assert others and all(r.status == PASS for r in others), [(r.quantity, r.status) for r in others
                                                              if r.status != PASS]


@pytest.mark.parametrize("prop,layout", applicable_properties(SPEC))
def test_metamorphic_checks_go_on_without_the_failed_quantity(prop, layout):
    with Run(SPEC, "tests.contract_backends:OneQuantityRaises", isolate=False) as run:
        result = check_property(run, prop, layout, "float64")
    assert result.status == PASS and result.detail != "backend", result.message
    assert result.comparisons > 0


@pytest.mark.parametrize("backend", ["ZeroDimLoss", "ScalarLoss"])
@pytest.mark.parametrize("isolate", [False, True])
def test_a_0d_loss_is_read_as_the_1x1_scalar(backend, isolate):
    records = _group(backend, isolate, dtype="float32")
    loss = [r for r in records if r.quantity == "L"]
    assert loss and all(r.status == PASS for r in loss), [r.message for r in loss]
    assert all(r.status == PASS for r in records)


@pytest.mark.parametrize("prop", ["duplicate", "label_scale"])
def test_metamorphic_checks_relate_a_0d_loss_like_a_1x1_one(prop):
    with Run(SPEC, "tests.contract_backends:ZeroDimLoss", isolate=False) as run:
        result = check_property(run, prop, "row", "float64")
    assert result.status == PASS, result.message


def test_a_0d_answer_for_a_quantity_that_is_not_1x1_is_a_wrong_shape():
    records = _group("ZeroDimBiasGradient", False)
    bias = [r for r in records if r.quantity == "dL/db2"]
    assert bias and all(r.status == FAIL and r.detail == "wrong_shape" for r in bias)
    assert "shape (), expected (1, " in bias[0].message
