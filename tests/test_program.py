"""The oracle's straight-line programs (conformance.oracle.program) and its early stop at a failing precision.

The claim of the speed-up is that nothing changes: a program makes the calls ``interpret`` makes, in its order,
so the node table and every value are the same; and stopping a precision at its first uncertified output (and
trying that output first at the next one) gives the evaluation the old full evaluation at every precision gave,
bit for bit. The reference below *is* that old evaluation (``certify`` over a full walk with ``interpret``).
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cases.generate import generate_cases
from conformance.expr import Ops, interpret
from conformance.oracle import evaluate as oracle
from conformance.oracle.engines.base import Engine
from conformance.oracle.engines.select import get_engine
from conformance.oracle.program import compile_program
from conformance.spec import load_spec

SPEC = load_spec(None)


class _NullOps(Ops[None]):
    """Walks a tree exactly as an evaluation does, computing nothing (interpret's node order, independently)."""

    def const(self, value):
        return None

    def neg(self, x):
        return None

    add = sub = mul = div = matmul = lambda self, x, y: None  # noqa: E731

    def pow(self, x, n):
        return None

    def transpose(self, x):
        return None

    def call(self, fn, args, axis):
        return None


def _interpret_order(layout, identities):
    env = {n: None for n in layout.shapes}
    nodes = {}
    for d in layout.forward:
        env[d.name] = interpret(d.expr, env, _NullOps(), nodes)
    for ident in identities:
        interpret(ident.expr, env, _NullOps(), nodes)
    return list(nodes)


def _sized(layout, case):
    return [i for i in layout.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]


def _reference(layout, inputs, identities, engine) -> oracle.OracleEvaluation:
    """The evaluation as it was before programs: every output at every precision, walked by interpret."""
    eng = get_engine(engine)
    arrays = {k: np.asarray(v) for k, v in inputs.items()}

    def run():
        ops, env = eng.start(arrays)
        nodes = {}
        for d in layout.forward:
            env[d.name] = interpret(d.expr, env, ops, nodes)
        out = {d.name: env[d.name] for d in layout.forward}
        for ident in identities:
            out[ident.id] = interpret(ident.expr, env, ops, nodes)
        return out, (nodes, ops)

    exact, _, (nodes, ops), prec = oracle.certify(run, engine=eng)
    return oracle.OracleEvaluation(values=exact, nodes=eng.approx_all(nodes, ops),
                                   preconditions=oracle.preconditions_hold(layout, inputs), precision=prec)


def _assert_identical(a: oracle.OracleEvaluation, b: oracle.OracleEvaluation) -> None:
    assert a.precision == b.precision and dict(a.preconditions) == dict(b.preconditions)
    assert list(a.values) == list(b.values)
    for k in a.values:
        x, y = a.values[k], b.values[k]
        assert x.undecided == y.undecided, k
        assert np.array_equal(x.hi, y.hi, equal_nan=True) and np.array_equal(x.lo, y.lo, equal_nan=True), k
    assert list(a.nodes) == list(b.nodes)
    for e in a.nodes:
        assert np.array_equal(a.nodes[e], b.nodes[e], equal_nan=True), repr(e)
        assert a.nodes[e].flags.f_contiguous == b.nodes[e].flags.f_contiguous, repr(e)


@pytest.mark.parametrize("layout_name", sorted(SPEC.layouts))
def test_program_lists_the_nodes_in_interprets_order(layout_name):
    layout = SPEC.layouts[layout_name]
    program = compile_program(layout, layout.identities)
    assert [s.expr for s in program.steps] == _interpret_order(layout, layout.identities)
    assert [n for n, _ in program.outputs] == [d.name for d in layout.forward] + [i.id for i in layout.identities]
    for pos, (_, step) in enumerate(program.outputs):
        assert program.needs[pos][-1] == step  # an output's own step is the last it needs
    assert compile_program(layout, layout.identities) is program  # compiled once


@pytest.mark.parametrize("engine", ["mpmath", "flint"])
@pytest.mark.parametrize("layout_name", sorted(SPEC.layouts))
def test_program_values_are_interprets_values(engine, layout_name):
    """Same calls on the same operands: the very same enclosures (compared as exact endpoints)."""
    if engine == "flint":
        pytest.importorskip("flint", reason="the flint engine needs python-flint (the [fast] extra; CI installs it)")
    eng = get_engine(engine)
    layout = SPEC.layouts[layout_name]
    case = generate_cases(SPEC, layout_name, "float64", "benign", seed=3, examples=1)[0]
    ids = _sized(layout, case)
    program = compile_program(layout, ids)
    with eng.precision(128):
        ops, env = eng.start({k: np.asarray(v) for k, v in case.inputs.items()})
        nodes = {}
        for d in layout.forward:
            env[d.name] = interpret(d.expr, env, ops, nodes)
        for ident in ids:
            interpret(ident.expr, env, ops, nodes)
        ops2, env2 = eng.start({k: np.asarray(v) for k, v in case.inputs.items()})
        values = [None] * len(program.steps)
        program.run(ops2, env2, values, range(len(program.outputs)))
    assert list(nodes) == [s.expr for s in program.steps]
    for (e, want), got in zip(nodes.items(), values):
        assert np.shape(want) == np.shape(got), repr(e)
        for w, g in zip(np.asarray(want).reshape(-1).tolist(), np.asarray(got).reshape(-1).tolist()):
            assert repr(w) == repr(g) if engine == "mpmath" else (w.mid() == g.mid() and w.rad() == g.rad()), repr(e)


@pytest.mark.parametrize("engine,regime,examples", [("flint", "large_logits", 4), ("flint", "saturated_sigmoid", 4),
                                                    ("flint", "near_tied_logits", 3), ("flint", "tiny_inputs", 3),
                                                    ("mpmath", "large_logits", 1)])
@pytest.mark.parametrize("layout_name", sorted(SPEC.layouts))
def test_early_stop_gives_the_full_evaluation(engine, regime, examples, layout_name):
    """The regimes whose cases need two to five precisions: the early stop skips work, never a result."""
    if engine == "flint":
        pytest.importorskip("flint", reason="the flint engine needs python-flint (the [fast] extra; CI installs it)")
    layout = SPEC.layouts[layout_name]
    precisions = set()
    for case in generate_cases(SPEC, layout_name, "float64", regime, seed=11, examples=examples):
        ids = _sized(layout, case)
        got = oracle.evaluate(layout, case.inputs, ids, engine=engine)
        _assert_identical(got, _reference(layout, case.inputs, ids, engine))
        precisions.add(got.precision)
    if regime in ("large_logits", "saturated_sigmoid"):
        assert max(precisions) > oracle.START_BITS  # the escalation the test is about did happen


@pytest.mark.parametrize("engine", ["mpmath", "flint"])
def test_certify_or_locate_names_the_first_uncertified_output(engine):
    if engine == "flint":
        pytest.importorskip("flint", reason="the flint engine needs python-flint (the [fast] extra; CI installs it)")
    eng = get_engine(engine)
    layout = SPEC.layouts["row"]
    case = generate_cases(SPEC, "row", "float64", "large_logits", seed=5, examples=1)[0]
    with eng.precision(64):  # too few bits for a large logit gap: some outputs fail
        ops, env = eng.start({k: np.asarray(v) for k, v in case.inputs.items()})
        program = compile_program(layout, layout.identities)
        values = [None] * len(program.steps)
        program.run(ops, env, values, range(len(program.outputs)))
        raw = {n: values[s] for n, s in program.outputs}
        got, culprit = eng.certify_or_locate(raw, waive_ties=False, bits=64)
        generic = Engine.certify_or_locate(eng, raw, waive_ties=False, bits=64)  # one value at a time
        assert got is None and culprit is not None
        assert (None, culprit) == generic
        before = list(raw)[:list(raw).index(culprit)]
        assert eng.certify_all({n: raw[n] for n in before}, waive_ties=False, bits=64) is not None
        ok, none = eng.certify_or_locate({n: raw[n] for n in before}, waive_ties=False, bits=64)
        assert none is None and list(ok) == before
