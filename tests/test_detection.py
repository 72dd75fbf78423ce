"""Detection: implementations with a seeded fault are flagged, on the quantities and in the regimes where
the fault shows, and nowhere else.

Each test asserts *which* quantities and regimes flag the fault (not merely that something failed), and
prints the detection margin: the smallest error/allowed ratio among the flagged results (how far beyond
the tolerance the fault lands), or, for the overflow faults, the magnitude at which it starts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from conformance.statuses import PASS
from conformance.formats import FORMATS
from conformance.formats import DTYPES
from conformance.run.run import Run, RunCache

from .accuracy_support import SHARED_CACHE, sweep

FORWARD = {"a", "h", "theta", "yhat", "L"}
#: the label-sum-free forms of the gradients below the logits (yhat * sum(y) - y chained down)
GENERAL = {f"{q}.general" for q in ("dL/dh", "dL/da", "dL/dx", "dL/dW1", "dL/db1", "dL/dW2", "dL/db2")}
GRADIENTS = {"dL/dtheta", "dL/dtheta.general", "dL/dh", "dL/da", "dL/dx", "dL/dx.chain", "dL/dW1", "dL/db1",
             "dL/dW2", "dL/db2", "dh/da", "dyhat/dtheta", "da/dx"} | GENERAL
#: quantities computed from yhat, and from h (the ones a fault in softmax, or in sigmoid, can reach)
DOWNSTREAM_OF_YHAT = {"yhat", "L", "dL/dtheta", "dL/dtheta.general", "dL/dh", "dL/da", "dL/dx", "dL/dx.chain",
                      "dL/dW1", "dL/db1", "dL/dW2", "dL/db2", "dyhat/dtheta"} | GENERAL
DOWNSTREAM_OF_H = DOWNSTREAM_OF_YHAT | {"h", "theta", "dh/da"}


def exp_overflow(dtype: str) -> float:
    """The argument beyond which exp overflows in ``dtype``."""
    return math.log(FORMATS[dtype].max_finite)


def flagged(records):
    return [r for r in records if r.status != PASS]


def by_case(records):
    out = defaultdict(list)
    for r in records:
        out[r.case].append(r)
    return out


def margin(records) -> float:
    """The smallest error/allowed ratio among flagged finite results (inf if all are non-finite)."""
    ratios = [r.max_ratio for r in records if r.status != PASS and r.detail == "out_of_bound"]
    return min(ratios) if ratios else math.inf


def oracle_values(cache: RunCache) -> dict[str, dict[str, np.ndarray]]:
    """case id -> forward name -> the oracle's float64 values."""
    return {key[0]: {k: v.hi for k, v in ev.values.items()} for key, ev in cache.oracle.items()}


# --------------------------------------------------------------------------- wrong precision

@pytest.mark.slow
@pytest.mark.parametrize("name,claimed,actual", [("float32-as-float64", "float64", "float32"),
                                                 ("float16-as-float32", "float32", "float16")])
def test_computing_in_a_narrower_type_is_flagged_on_every_quantity(seed_spec, name, claimed, actual):
    records = sweep(seed_spec, name)
    bad = flagged(records)
    # only the claimed dtype is affected: the other dtypes are computed correctly and pass
    assert {r.dtype for r in bad} == {claimed}
    # in the benign regime every quantity is flagged, and nearly every case-quantity
    benign = [r for r in records if r.dtype == claimed and r.regime == "benign"]
    assert {r.quantity for r in flagged(benign)} == FORWARD | GRADIENTS
    assert len(flagged(benign)) >= 0.9 * len(benign)
    # every case of every regime is caught on some quantity
    cases = by_case([r for r in records if r.dtype == claimed])
    assert all(any(r.status != PASS for r in rs) for rs in cases.values())
    print(f"\n{name}: {len(bad)}/{len([r for r in records if r.dtype == claimed])} {claimed} case-quantities "
          f"flagged; benign: {len(flagged(benign))}/{len(benign)}; smallest margin {margin(benign):.3g}x the bound "
          f"(median {np.median([r.max_ratio for r in flagged(benign)]):.3g}x)")


# --------------------------------------------------------------------------- log(yhat + 1e-7)

def test_log_of_yhat_plus_epsilon_is_flagged_in_the_loss_only(seed_spec):
    records = sweep(seed_spec, "log-eps")
    bad = flagged(records)
    assert {r.quantity for r in bad} == {"L"}  # the backward pass does not see the epsilon
    assert all(r.detail == "out_of_bound" for r in bad)
    # float64: caught on every case of the ordinary regimes (1e-7 / yhat is far above 2**-53)
    for regime in ("benign", "onehot", "saturated_sigmoid", "tiny_inputs"):
        rs = [r for r in records if r.dtype == "float64" and r.regime == regime and r.quantity == "L"]
        assert rs and all(r.status != PASS for r in rs), regime
    # every dtype catches it where the labelled probability is tiny (log(1e-7) = -16 instead of -30 ... -1000),
    # including where that probability underflows the dtype (the fused loss stays exact there)
    for dtype in DTYPES:
        rs = [r for r in records if r.dtype == dtype and r.regime == "unlikely_class" and r.quantity == "L"]
        assert rs and all(r.status != PASS for r in rs), dtype
    # float16 cannot tell in the ordinary regimes: 1e-7 is two subnormal ulps of float16, far below what a
    # correct float16 loss resolves when yhat is not small
    assert not [r for r in bad if r.dtype == "float16" and r.regime in ("benign", "onehot", "tiny_inputs")]
    per = {d: f"{len([r for r in bad if r.dtype == d])}/{len([r for r in records if r.dtype == d and r.quantity == 'L'])}"
           for d in DTYPES}
    print(f"\nlog(yhat + 1e-7): L flagged on {per} cases; float64 benign margin "
          f"{margin([r for r in records if r.dtype == 'float64' and r.regime == 'benign']):.3g}x the bound")


# --------------------------------------------------------------------------- 1e-10 relative error

def test_relative_error_of_1e_10_in_one_gradient_is_flagged_in_float64(seed_spec):
    records = sweep(seed_spec, "rel-1e-10-dLdx")
    bad = flagged(records)
    assert {r.quantity for r in bad} == {"dL/dx", "dL/dx.general"} and {r.dtype for r in bad} == {"float64"}
    # well-conditioned regimes: every case
    for regime in ("benign", "onehot", "tiny_inputs", "unlikely_class"):
        rs = [r for r in records if r.dtype == "float64" and r.regime == regime and r.quantity == "dL/dx"]
        assert rs and all(r.status != PASS for r in rs), regime
    # where dL/dx is itself noise (saturated sigmoid: sigmoid' = h - h*h cancels), a 1e-10 relative change
    # is below what a correct float64 evaluation guarantees, and is rightly not flagged everywhere (a case whose
    # dL/dx is computed without that cancellation, as one of the batch_is_out family's, does flag it)
    sat = [r for r in records if r.dtype == "float64" and r.regime == "saturated_sigmoid" and r.quantity == "dL/dx"
           and r.magnitude == 1000.0]
    assert sat and sum(r.status == PASS for r in sat) >= len(sat) / 2
    benign = [r for r in records if r.dtype == "float64" and r.regime == "benign"]
    print(f"\n1e-10 relative error in dL/dx (float64): {len(bad)} of "
          f"{len([r for r in records if r.dtype == 'float64' and r.quantity == 'dL/dx'])} cases flagged; benign margin "
          f"{margin(benign):.3g}x the bound")


# --------------------------------------------------------------------------- overflow faults

def _overflow_assertions(records, values, variable, downstream, dtype_set=DTYPES):
    """A case is flagged iff exp overflows on it: max(variable) beyond the dtype's exp overflow."""
    for dtype in dtype_set:
        limit = exp_overflow(dtype)
        for case, rs in by_case([r for r in records if r.dtype == dtype]).items():
            top = float(np.max(values[case][variable]))
            hit = [r for r in rs if r.status != PASS]
            if top > limit * 1.01:
                assert hit, (dtype, case, top)
                assert all(r.detail == "nonfinite" for r in hit)
                assert {r.quantity for r in hit} <= downstream
            elif top < limit * 0.99:
                assert not hit, (dtype, case, top, [(r.quantity, r.message) for r in hit])


def _g(x) -> str:
    return "-" if x is None else f"{x:g}"


def _magnitude_sweep(spec, name, regime, magnitudes):
    """Run ``name`` on ``regime`` with a finer grid of magnitudes; the first magnitude flagged per dtype."""
    reg = replace(spec.regimes[regime], magnitudes=tuple(magnitudes), families=("seed", "batch"))
    sweep_spec = replace(spec, regimes={regime: reg})
    cache = RunCache()
    records = sweep(sweep_spec, name, examples=1, cache=cache)
    first: dict[str, float | None] = {}
    last_pass: dict[str, float | None] = {}
    for dtype in DTYPES:
        failing = sorted({r.magnitude for r in records if r.dtype == dtype and r.status != PASS})
        passing = sorted({r.magnitude for r in records if r.dtype == dtype}
                         - {r.magnitude for r in records if r.dtype == dtype and r.status != PASS})
        first[dtype] = failing[0] if failing else None
        last_pass[dtype] = passing[-1] if passing else None
    return records, oracle_values(cache), first, last_pass


GRID = (2.0, 5.0, 8.0, 10.0, 12.0, 15.0, 20.0, 50.0, 80.0, 90.0, 100.0, 200.0, 500.0, 700.0, 720.0, 1000.0)


@pytest.mark.slow
def test_softmax_without_max_shift_is_flagged_where_exp_overflows(seed_spec):
    records = sweep(seed_spec, "softmax-noshift")
    bad = flagged(records)
    assert {r.regime for r in bad} <= {"large_logits", "near_tied_logits"}  # the large-logit regimes only
    assert "yhat" in {r.quantity for r in bad} and {r.quantity for r in bad} <= DOWNSTREAM_OF_YHAT
    _overflow_assertions(records, oracle_values(SHARED_CACHE), "theta", DOWNSTREAM_OF_YHAT)
    fine, values, first, last_pass = _magnitude_sweep(seed_spec, "softmax-noshift", "large_logits", GRID)
    _overflow_assertions(fine, values, "theta", DOWNSTREAM_OF_YHAT)
    for dtype in DTYPES:
        assert first[dtype] is not None and first[dtype] >= exp_overflow(dtype) - 10  # theta = spike + N(0, ~1)
    print("\nsoftmax without max-shift, large_logits (largest logit = magnitude + O(1)): "
          + "; ".join(f"{d}: passes up to {_g(last_pass[d])}, flagged from {_g(first[d])} (exp overflows at "
                      f"{exp_overflow(d):.4g})" for d in DTYPES))


@pytest.mark.slow
def test_sigmoid_as_exp_ratio_is_flagged_where_exp_overflows(seed_spec):
    records = sweep(seed_spec, "sigmoid-expratio")
    bad = flagged(records)
    assert "h" in {r.quantity for r in bad} and {r.quantity for r in bad} <= DOWNSTREAM_OF_H
    assert {r.regime for r in bad if r.dtype != "float16"} == {"saturated_sigmoid"}
    _overflow_assertions(records, oracle_values(SHARED_CACHE), "a", DOWNSTREAM_OF_H)
    fine, values, first, last_pass = _magnitude_sweep(seed_spec, "sigmoid-expratio", "saturated_sigmoid", GRID)
    _overflow_assertions(fine, values, "a", DOWNSTREAM_OF_H)
    for dtype in DTYPES:
        # |a| = magnitude * (1 + U/2) + O(1), positive half of the time
        assert first[dtype] is not None and exp_overflow(dtype) / 1.5 - 10 <= first[dtype]
    print("\nsigmoid as exp(a) / (1 + exp(a)), saturated_sigmoid (|a| = magnitude * [1, 1.5] + O(1)): "
          + "; ".join(f"{d}: passes up to {_g(last_pass[d])}, flagged from {_g(first[d])} (exp overflows at "
                      f"{exp_overflow(d):.4g})" for d in DTYPES))


# --------------------------------------------------------------------------- yhat - y with unnormalized labels

#: the gradients a backward pass usually returns (inputs and parameters), in their label-sum-free form
PARAMETER_GENERAL = {f"{q}.general" for q in ("dL/dx", "dL/dW1", "dL/db1", "dL/dW2", "dL/db2")}


def _label_records(spec, backend: str) -> list:
    with Run(spec, f"tests.faulty_backends:{backend}", isolate=False, examples=2) as run:
        return [r for layout in spec.layouts for regime in ("benign", "onehot", "unnormalized_labels")
                for r in run.group(layout, "float64", regime).records]


def test_yhat_minus_y_throughout_is_flagged_where_labels_do_not_sum_to_one(seed_spec):
    """The seed's trap in a backend that returns only input and parameter gradients: right wherever the labels
    sum to 1, so only the label-sum-free identities can flag it, and they do, on every such gradient."""
    records = _label_records(seed_spec, "YhatMinusYThroughout")
    answered = [r for r in records if r.status != "not_supported"]
    plain = {q.removesuffix(".general") for q in PARAMETER_GENERAL} | {"dL/dx.chain"}
    assert {r.quantity for r in answered} == PARAMETER_GENERAL | plain
    bad = flagged(answered)
    assert {r.regime for r in bad} == {"unnormalized_labels"}, "right wherever the labels sum to 1"
    assert all(r.detail == "out_of_bound" for r in bad)
    for layout in seed_spec.layouts:
        caught = {r.quantity for r in bad if r.layout == layout}
        assert caught == PARAMETER_GENERAL, (layout, caught)
    # the gradients that assume the labels sum to 1 are not asked there: without the general forms, nothing is
    assert not [r for r in records if r.regime == "unnormalized_labels" and not r.quantity.endswith(".general")
                and r.kind == "gradient" and r.quantity != "dL/dtheta.general"]
    print(f"\nyhat - y throughout: {len(bad)} of {len([r for r in answered if r.regime == 'unnormalized_labels'])} "
          f"unnormalized-label results flagged, smallest margin {margin(bad):.3g}x the bound")


def test_the_same_backward_pass_with_the_general_gradient_passes_everywhere(seed_spec):
    records = _label_records(seed_spec, "InputGradientsOnly")
    answered = [r for r in records if r.status != "not_supported"]
    assert answered and not flagged(answered)
    assert {r.quantity for r in answered if r.regime == "unnormalized_labels"} == PARAMETER_GENERAL
