"""Batch-axis bugs in shapes that fit (issue #16 B): families where the batch equals a width, and lint's proof
that they tell a reduction over the batch from one over the features.

A bias gradient summed over the feature axis and reshaped to the bias's shape raises in the all-distinct
families (an exception, not a check); in the family where n = d_out it has the right shape, and the value must
catch it. Lint proves that for every reduction of every identity some family does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from conformance.backend import Request
from conformance.checks.lint import lint, lint_spec
from conformance.run.run import Run
from conformance.spec.model import Spec
from impls.numpy import NumpyBackend

from .helpers import spec_copy

AXIS = "over axis"


class BiasOverFeatures(NumpyBackend):
    """The numpy backend whose dL/db2 (row layout) sums yhat - y over the classes and reshapes it to b2's shape."""

    name = "faulty-bias-over-features"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        if request.model.layout == "row" and "dL/db2" in out and isinstance(out.get("dL/dtheta"), np.ndarray):
            g = out["dL/dtheta"]
            out["dL/db2"] = g.sum(axis=1).reshape(request.inputs["b2"].shape)  # raises unless n == d_out
        return out


def _axis_discriminations(report: Any, identity: str) -> list[Any]:
    return [d for d in report.discriminations if d.identity == identity and AXIS in d.confusion]


@pytest.mark.parametrize("layout,identity,family", [("row", "dL/db1", "batch_is_hidden"),
                                                    ("row", "dL/db2", "batch_is_out"),
                                                    ("column", "dL/db1", "batch_is_hidden"),
                                                    ("column", "dL/db2", "batch_is_out")])
def test_lint_proves_the_families_tell_a_sum_over_the_batch_from_one_over_features(
        seed_spec: Spec, layout: str, identity: str, family: str) -> None:
    report = lint_spec(seed_spec)
    assert report.ok, report.render()
    ds = [d for d in _axis_discriminations(report, identity) if d.layout == layout]
    assert len(ds) == 1, ds
    assert ds[0].verdict == "value" and ds[0].family == family, ds[0].render()


def test_without_those_families_lint_says_which_family_to_add(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, ("  batch_is_hidden:\n    sizes: {n: 3, d_in: 5, hidden: 3, d_out: 4}",
                                "  other_a:\n    sizes: {n: 2, d_in: 5, hidden: 3, d_out: 4}"),
                     ("  batch_is_out:\n    sizes: {n: 4, d_in: 5, hidden: 3, d_out: 4}",
                      "  other_b:\n    sizes: {n: 2, d_in: 5, hidden: 6, d_out: 4}"))
    report = lint(path)
    assert not report.ok
    bad = {(d.layout, d.identity) for d in report.discriminations if AXIS in d.confusion and d.verdict == "indiscriminable"}
    assert {("row", "dL/db1"), ("row", "dL/db2"), ("column", "dL/db1"), ("column", "dL/db2")} <= bad
    assert any("add a shape family with those two dimensions equal" in f.message for f in report.errors)


def test_a_bias_gradient_summed_over_features_is_caught_by_value_where_shapes_fit(seed_spec: Spec) -> None:
    target = f"{__name__}:BiasOverFeatures"
    with Run(seed_spec, target, isolate=False, examples=1) as run:
        records = [r for r in run.group("row", "float64", "benign").records if r.quantity == "dL/db2"]
    by_family = {}
    for r in records:
        by_family.setdefault(r.family, []).append(r)
    fits = by_family["batch_is_out"]
    assert fits and all(r.status == "fail" and r.detail == "out_of_bound" for r in fits), fits
    # elsewhere (n != d_out) the reshape raises: an exception, which the batch_is_out family no longer relies on
    for fam, rs in by_family.items():
        if fam != "batch_is_out":
            assert all(r.status == "error" for r in rs), (fam, [r.status for r in rs])
