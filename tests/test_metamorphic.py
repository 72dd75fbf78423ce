"""Metamorphic properties: they hold for the numpy backend, and each catches a backend that breaks it."""

from __future__ import annotations

import pytest

from conformance.checks.metamorphic import applicable_properties, check_property
from conformance.run.run import Run
from conformance.spec import load_spec

SPEC = load_spec()


def test_the_seed_spec_supports_every_property() -> None:
    props = applicable_properties(SPEC)
    assert {p for p, _ in props} == {"shift", "layout", "duplicate", "label_scale"}


@pytest.fixture(scope="module")
def numpy_run():
    with Run(SPEC, "numpy", isolate=False) as run:
        yield run


@pytest.mark.parametrize("prop,layout", [("layout", "row"), ("duplicate", "row"), ("duplicate", "column"),
                                         ("label_scale", "row"), ("shift", "column")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_properties_hold_for_numpy(numpy_run, prop: str, layout: str, dtype: str) -> None:
    result = check_property(numpy_run, prop, layout, dtype)
    assert result.status == "pass", result.message
    assert result.pairs >= 8 and result.comparisons >= result.pairs
    # the relations are tested, not vacuous: some comparisons are not bitwise equal yet within the summed bounds
    if prop in ("layout", "duplicate", "shift"):
        assert result.max_ratio > 0


@pytest.mark.parametrize("backend,prop,layout,quantity", [
    ("ClampedLogits", "shift", "row", None),
    ("LayoutSkew", "layout", "row", "dL/dx"),
    ("MeanBias", "duplicate", "row", "dL/db1"),
    ("NormalizedLabelsAssumed", "label_scale", "column", "dL/dtheta.general"),
])
def test_each_property_catches_a_backend_that_breaks_it(backend: str, prop: str, layout: str,
                                                        quantity: str | None) -> None:
    with Run(SPEC, f"tests.faulty_backends:{backend}", isolate=False) as run:
        result = check_property(run, prop, layout, "float64")
    assert result.status == "fail", result
    assert result.violations
    if quantity is not None:
        assert {v.quantity for v in result.violations} == {quantity}
    doc = result.to_json()
    assert doc["status"] == "fail" and doc["cases"], "a failing property keeps the cases for a rerun"


def test_normalized_labels_backend_passes_the_oracle_on_normalized_labels() -> None:
    """Why label scaling matters: this wrong backend is right wherever the labels sum to 1."""
    with Run(SPEC, "tests.faulty_backends:NormalizedLabelsAssumed", isolate=False, examples=2) as run:
        group = run.group("column", "float64", "benign")
    assert all(r.status == "pass" for r in group.for_quantity("dL/dtheta.general"))


def test_nan_on_both_sides_is_never_a_pass() -> None:
    with Run(SPEC, "tests.faulty_backends:AllNaN", isolate=False) as run:
        result = check_property(run, "duplicate", "row", "float64")
    assert result.status == "error" and result.comparisons == 0
    assert "not comparable" in result.message


def test_the_base_cases_are_the_run_s_own_two_per_cell(numpy_run) -> None:
    """Without --examples, a property relates the run's own cases (the first two of each family and
    magnitude), so their oracle evaluations are those the oracle tests made; with --examples N, N per cell
    (at least two)."""
    from collections import Counter

    from conformance.checks.metamorphic import _bases

    own = numpy_run.cases("row", "float64", "benign")
    bases = _bases(numpy_run, "row", "float64", "benign", None)
    assert {c.id for c in bases} <= {c.id for c in own}
    per_cell = Counter((c.family, c.magnitude) for c in bases)
    assert set(per_cell.values()) == {2} and len(per_cell) == len({(c.family, c.magnitude) for c in own})
    assert [c.id for c in bases] == [c.id for c in own if sum(1 for o in own[:own.index(c) + 1]
                                                               if (o.family, o.magnitude) == (c.family, c.magnitude)) <= 2]
    with Run(SPEC, "numpy", isolate=False, examples=1) as run:
        assert Counter((c.family, c.magnitude) for c in _bases(run, "row", "float64", "benign", None)).most_common(1)[0][1] == 2
