"""Negative identities: the seed's known-wrong formulas are refuted, and a 'negative' identity that is in fact
right is reported as not refuted (so the suite fails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.cases.minimize import zero_unneeded
from conformance.checks.negative import default_regime, families_for, refute
from conformance.oracle.evaluate import verify_identity
from conformance.spec import load_spec

from .helpers import spec_copy

SPEC = load_spec()


def _neg(spec, nid: str, layout: str):
    return next(n for n in spec.negative_identities if n.id == nid and n.layout == layout)


def test_seed_spec_lists_the_classic_mistakes() -> None:
    ids = {n.id for n in SPEC.negative_identities}
    assert {"dL/dx.W1_not_transposed", "dyhat/dtheta.diagonal_only", "dL/dx.sigmoid_prime_after_product",
            "dL/dtheta.unnormalized_labels", "dL/db1.mean_over_batch"} <= ids


def test_W1_for_W1T_is_refuted_by_shape_and_in_the_square_family_by_value() -> None:
    r = refute(SPEC, _neg(SPEC, "dL/dx.W1_not_transposed", "row"))
    assert r.refuted
    verdicts = {o.family: o.verdict for o in r.outcomes}
    assert verdicts == {"seed": "refuted_by_shape", "batch": "refuted_by_shape", "distinct": "refuted_by_shape",
                        "batch_is_hidden": "refuted_by_shape", "batch_is_out": "refuted_by_shape",
                        "square": "refuted_by_value"}
    square = next(o for o in r.outcomes if o.family == "square")
    assert square.case is not None and square.component is not None
    assert square.claimed_value != square.derivative_value
    # shrunk: most inputs are exactly zero
    flat = [float(v) for a in square.case.inputs.values() for v in a.reshape(-1)]
    assert sum(v == 0 for v in flat) >= len(flat) // 2


def test_a_shrunk_counterexample_needs_every_entry_it_keeps() -> None:
    """Zeroing any nonzero entry left in the counterexample (labels and directions aside) makes the formula
    agree with the derivative there, or the case is the last one before all of them are 0: the oracle decides."""
    neg = _neg(SPEC, "dL/dx.W1_not_transposed", "row")
    square = next(o for o in refute(SPEC, neg).outcomes if o.family == "square")
    lay = SPEC.layouts["row"]
    names = [n for n, info in SPEC.inputs.items() if info.get("role") not in ("label", "tangent", "cotangent")]
    kept = [(n, idx) for n in names for idx in zip(*np.nonzero(square.case.inputs[n]))]
    assert 1 <= len(kept) <= 12, kept  # a handful of numbers, readable by hand (the case has 55)
    if len(kept) == 1:
        return
    for name, idx in kept:
        inputs = {k: np.array(v, copy=True) for k, v in square.case.inputs.items()}
        inputs[name][idx] = 0
        v = verify_identity(lay, lay.identity(neg.claims), inputs, square.case.sizes, expr=neg.expr)
        assert v.verdict != "refuted", (name, idx)


def test_zero_unneeded_keeps_exactly_what_the_failure_needs() -> None:
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[4.0, 0.0, 5.0]])
    calls = []

    def fails(inputs):
        calls.append(1)
        return inputs["a"][0, 1] != 0 and inputs["b"].sum() > 4.5

    out = zero_unneeded({"a": a, "b": b, "y": np.ones((1, 3))}, fails, ["a", "b"])
    assert out["a"].tolist() == [[0.0, 2.0, 0.0]]
    assert out["b"].tolist() == [[0.0, 0.0, 5.0]]
    assert out["y"].tolist() == [[1.0, 1.0, 1.0]]  # not among the names: as given
    assert a.tolist() == [[1.0, 2.0, 3.0]]  # the inputs are not changed in place
    # never all of them zero: the degenerate case is not a counterexample the generator draws
    assert zero_unneeded({"a": a}, lambda _: True, ["a"])["a"].tolist() == [[0.0, 0.0, 3.0]]


def test_unnormalized_labels_mistake_uses_its_regime() -> None:
    neg = _neg(SPEC, "dL/dtheta.unnormalized_labels", "row")
    assert default_regime(SPEC, neg) == "unnormalized_labels"
    r = refute(SPEC, neg, shrink=False)
    assert r.refuted and all(o.verdict == "refuted_by_value" for o in r.outcomes)


def test_mean_bias_is_only_claimed_wrong_in_batch_families() -> None:
    neg = _neg(SPEC, "dL/db1.mean_over_batch", "row")
    assert [f.name for f in families_for(SPEC, neg)] == ["batch", "distinct"]


def test_a_negative_identity_that_is_right_is_not_refuted(tmp_path: Path) -> None:
    right = '''  - id: dL/db1.mean_for_one_sample
    layout: row
    claims: dL/db1
    expr: "mean(((yhat - y) @ W2.T) * (h - h*h), axis=0)"
    families: [seed, square]
    mistake: "none, in fact: for a batch of one, the mean is the sum"
'''
    path = spec_copy(tmp_path, ("negative_identities:\n", "negative_identities:\n" + right))
    spec = load_spec(path)
    neg = _neg(spec, "dL/db1.mean_for_one_sample", "row")
    r = refute(spec, neg, shrink=False)
    assert not r.refuted
    assert {o.verdict for o in r.outcomes} == {"not_refuted"}
    assert all(o.cases_tried > 0 for o in r.outcomes)
    assert "not refuted" in r.render()

    # and the conformance suite fails on it, naming the formula
    out = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--gc-spec", str(path), "-q", "-p",
                          "no:cacheprovider", "-k", "test_negative_identity and mean_for_one_sample"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 1, out.stdout + out.stderr
    assert "could not refute a known-wrong formula" in out.stdout


@pytest.mark.parametrize("nid,layout", [("dyhat/dtheta.diagonal_only", "column"),
                                        ("dL/dx.sigmoid_prime_after_product", "row")])
def test_other_mistakes_are_refuted(nid: str, layout: str) -> None:
    assert refute(SPEC, _neg(SPEC, nid, layout), shrink=False).refuted
