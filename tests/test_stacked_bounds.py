"""Bounds of a stack of cases (conformance.judge.stacked_bounds) are each case's own bounds, bit for bit.

The run bounds the cases of a group that share their sizes at once; a verdict must not depend on which other
cases a case was stacked with, nor a cached bound on whether it was computed alone or in a stack (the cache's
audit compares them exactly). So every quantity's bound is compared for equality, not closeness, on the
layouts, dtypes and regimes whose rules differ (the composed cross-entropy's first- and second-order
allowances, log of an underflowing softmax, 16-bit accumulation), and a stack that cannot be formed or a bound
that fails on the stack must give the case's own result or its own error.
"""

from __future__ import annotations

import pickle
from collections import defaultdict

import numpy as np
import pytest

from conformance.cases.generate import generate_cases
from conformance.checks import metamorphic, metamorphic_side
from conformance.judge.bounds import ErrorBounds
from conformance.judge.stacked_bounds import StackedBounds
from conformance.oracle import evaluate as oracle
from conformance.run.judging import sized_identities
from conformance.run.run import Run

CELLS = [("row", "float32", "unlikely_class"), ("column", "bfloat16", "large_logits"),
         ("row", "float16", "tiny_inputs"), ("column", "float64", "unnormalized_labels")]


def _stacks(spec, layout, dtype, regime):
    """The cell's cases with their oracle evaluations, by sizes (the run's stacks)."""
    lay = spec.layouts[layout]
    by = defaultdict(list)
    for case in generate_cases(spec, layout, dtype, regime, examples=10):
        sized = sized_identities(spec, case)
        ev = oracle.evaluate(lay, case.inputs, sized, engine="flint")
        by[tuple(sorted(case.sizes.items()))].append((case, sized, ev))
    return lay, [m for m in by.values() if len(m) >= 2]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("layout,dtype,regime", CELLS)
def test_a_stacked_bound_is_the_case_s_own_bit_for_bit(seed_spec, layout, dtype, regime):
    lay, stacks = _stacks(seed_spec, layout, dtype, regime)
    assert stacks, "no two cases of one shape: the test checks nothing"
    compared = 0
    for members in stacks:
        stack = StackedBounds(lay, [ev.nodes for _, _, ev in members], [c.inputs for c, _, _ in members], dtype,
                              seed_spec.tolerance)
        for index, (case, sized, ev) in enumerate(members):
            alone = ErrorBounds(lay, ev.nodes, case.inputs, dtype, seed_spec.tolerance)
            view = stack.case(index)
            for expr, kind in [(d.expr, "value") for d in lay.forward] + [(i.expr, i.kind) for i in sized]:
                assert _same(view.bound(expr, kind), alone.bound(expr, kind)), (case.id, expr, kind)
                compared += 1
        assert not stack._failed
    assert compared > 100


def test_cases_that_do_not_stack_are_bounded_alone(seed_spec):
    """Cases of different sizes cannot share a stack: each one still gets its own bounds."""
    lay = seed_spec.layouts["row"]
    cases = [c for c in generate_cases(seed_spec, "row", "float32", "benign", examples=12)]
    a = cases[0]
    b = next(c for c in cases if c.sizes != a.sizes)
    evs = [oracle.evaluate(lay, c.inputs, sized_identities(seed_spec, c), engine="flint") for c in (a, b)]
    stack = StackedBounds(lay, [e.nodes for e in evs], [a.inputs, b.inputs], "float32", seed_spec.tolerance)
    for index, (case, ev) in enumerate(zip((a, b), evs)):
        alone = ErrorBounds(lay, ev.nodes, case.inputs, "float32", seed_spec.tolerance)
        for d in lay.forward:
            assert _same(stack.case(index).bound(d.expr), alone.bound(d.expr))
    assert stack._failed


def test_a_bound_that_fails_on_the_stack_is_the_case_s_own_error(seed_spec):
    """One case lacks a node (a corrupted evaluation): the stack cannot bound that expression, the other case
    gets its own bound, the broken one its own error."""
    lay, stacks = _stacks(seed_spec, "row", "float64", "benign")
    (c0, sized, ev0), (c1, _, ev1) = stacks[0][:2]
    ident = next(i for i in sized if i.kind == "gradient")
    broken = {k: v for k, v in ev1.nodes.items() if k != ident.expr}
    stack = StackedBounds(lay, [ev0.nodes, broken], [c0.inputs, c1.inputs], "float64", seed_spec.tolerance)
    alone = ErrorBounds(lay, ev0.nodes, c0.inputs, "float64", seed_spec.tolerance)
    assert _same(stack.case(0).bound(ident.expr, ident.kind), alone.bound(ident.expr, ident.kind))
    with pytest.raises(KeyError, match="no value for sub-expression"):
        stack.case(1).bound(ident.expr, ident.kind)


def test_a_group_s_records_do_not_depend_on_stacking(seed_spec):
    """The run's group (stacked bounds) and each case judged on its own (its own bounds) give the same records."""
    with Run(seed_spec, "numpy", isolate=False, examples=6) as run:
        group = run.group("column", "float16", "onehot")
        alone = [r for c in group.cases for r in run.evaluate_case(c)[0]]
    fields = ("case", "quantity", "status", "max_ratio", "max_ulp", "worst_bound")
    assert len(group.records) == len(alone) > 0
    assert [tuple(getattr(r, f) for f in fields) for r in group.records] == \
        [tuple(getattr(r, f) for f in fields) for r in alone]


def test_an_expression_keeps_its_repr_and_leaves_it_out_of_pickles(seed_spec):
    """The repr is memoised per node (it names cache entries): the same string, and not carried by a pickle."""
    expr = seed_spec.layouts["row"].identities[0].expr
    first = repr(expr)
    assert repr(expr) is first and "_repr" in expr.__dict__
    copy = pickle.loads(pickle.dumps(expr))
    assert "_repr" not in copy.__dict__ and repr(copy) == first and copy == expr


@pytest.mark.parametrize("prop", ["shift", "duplicate", "label_scale"])
def test_a_metamorphic_side_reads_its_own_bounds_from_the_property_s_stack(seed_spec, prop):
    """The sides of a property are bounded together (Run.stacked_bounds); each side's allowance is the one its
    own ErrorBounds gives, bit for bit, and the property's outcome is the same either way."""
    if (prop, "row") not in metamorphic.applicable_properties(seed_spec):
        pytest.skip(f"{prop} does not apply to the seed spec's row layout")
    with Run(seed_spec, "numpy", isolate=False, cache_dir=None, examples=4) as run:
        model = metamorphic._model(seed_spec, seed_spec.layouts["row"])
        bases = [c for r in metamorphic._regimes(seed_spec, prop, model)
                 for c in metamorphic._bases(run, "row", "float64", r, 4)]
        pairs = [p for p in (metamorphic._build_pair(seed_spec, prop, c, model) for c in bases) if p is not None]
        sides = [c for a, b, _ in pairs for c in (a, b)]
        stacked = run.stacked_bounds(sides)
        assert stacked, "no two sides of one shape: the test checks nothing"
        compared = 0
        for case in sides:
            s = metamorphic_side.evaluate_side(run, case, stacked)
            alone = metamorphic_side.evaluate_side(run, case)
            assert (type(s.bounds).__name__ == "CaseOfStack") == (case.id in stacked)
            for qid in s.values:
                a, b = s.allowed(qid), alone.allowed(qid)
                assert (a is None) == (b is None) and (a is None or _same(a, b)), (case.id, qid)
                compared += 1
        assert compared > 20
