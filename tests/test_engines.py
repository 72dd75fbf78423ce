"""The oracle's two engines (mpmath intervals, Arb balls) check each other, and the fast path checks the rule.

Both engines certify under one rule (conformance.oracle.certify), so on every
case they must agree exactly on ``hi`` (the correctly rounded float64 of the
exact value is unique), on the preconditions, and on ``lo`` to within the
width the rule allows; only components the rule records as *undecided* may
differ, by one ulp at most.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import mpmath
import numpy as np
import pytest

flint = pytest.importorskip("flint", reason="the flint engine needs python-flint (the [fast] extra; CI installs it)")

from conformance.backend import FIRST_ORDER_KINDS  # noqa: E402
from conformance.oracle import evaluate as oracle  # noqa: E402
from conformance.cases.generate import generate_cases  # noqa: E402
from conformance.oracle.certify import narrow_midpoint_mask  # noqa: E402
from conformance.oracle.engines.base import EngineUnavailable  # noqa: E402
from conformance.oracle.engines.select import DEFAULT_ENGINE, ENV_ORACLE, get_engine  # noqa: E402
from conformance.oracle.engines.flint_engine import ArbOps, _endpoints, _exact_rule, arb_certify_many, to_arb  # noqa: E402
from conformance.expr import FUNCTIONS, interpret  # noqa: E402
from conformance.oracle.arith import DomainError, IvOps, to_iv  # noqa: E402
from conformance.spec.parse import parse_expr  # noqa: E402

ENGINES = ("mpmath", "flint")


def _sized(layout, case):
    return [i for i in layout.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]


def assert_same_certified(a: oracle.OracleEvaluation, b: oracle.OracleEvaluation, where: str) -> None:
    assert a.preconditions == b.preconditions, where
    assert list(a.values) == list(b.values), where
    assert list(a.nodes) == list(b.nodes), where
    for name, ea in a.values.items():
        eb = b.values[name]
        assert ea.hi.shape == eb.hi.shape, (where, name)
        if ea.undecided == 0 and eb.undecided == 0:
            assert np.array_equal(ea.hi, eb.hi), (where, name, ea.hi, eb.hi)
            # lo: the remainder to within the enclosures' widths (< 2**-93 of the value each)
            tol = np.abs(ea.hi) * 2.0 ** -88 + 2.0 ** -1070
            assert np.all(np.abs(ea.lo - eb.lo) <= tol), (where, name, ea.lo, eb.lo)
            # where the remainder's sign decides a narrower rounding, the rule makes it exact in both
            mid = narrow_midpoint_mask(ea.hi)
            assert np.array_equal(np.sign(ea.lo[mid]), np.sign(eb.lo[mid])), (where, name)
        else:  # ambiguous by one ulp, by the rule's own account
            differ = ea.hi != eb.hi
            assert int(differ.sum()) <= max(ea.undecided, eb.undecided), (where, name)
            steps = np.abs(np.nextafter(ea.hi[differ], np.inf) - ea.hi[differ])
            assert np.all(np.abs(ea.hi[differ] - eb.hi[differ]) <= steps), (where, name)


@pytest.mark.parametrize("layout", ["row", "column"])
@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_engines_agree_on_every_regime(seed_spec, layout, dtype):
    """One case per (shape family, magnitude) of every regime: benign, one-hot, large and tied logits,
    saturated sigmoids (to 1e3), unlikely classes, unnormalised labels, subnormal inputs."""
    lay = seed_spec.layouts[layout]
    checked = 0
    for regime in seed_spec.without_wide().regimes:  # the wide family: test_engines_agree_on_a_wide_network
        for case in generate_cases(seed_spec, layout, dtype, regime, examples=1):
            sized = _sized(lay, case)
            got = [oracle.evaluate(lay, case.inputs, sized, engine=e) for e in ENGINES]
            assert_same_certified(got[0], got[1], f"{layout} {dtype} {regime} {case.id}")
            checked += 1
    assert checked >= 60


@pytest.mark.parametrize("width", [16])
def test_engines_agree_on_a_wide_network(seed_spec, width):
    rng = np.random.default_rng(width)
    lay = seed_spec.layouts["row"]
    for logit in (0.0, 40.0, 800.0):
        inputs = {"x": rng.standard_normal((1, width)), "W1": rng.standard_normal((width, width)),
                  "b1": rng.standard_normal((1, width)), "W2": rng.standard_normal((width, width)),
                  "b2": rng.standard_normal((1, width)), "y": np.eye(width)[[3]]}
        inputs["b2"][0, 5] += logit  # a confident wrong class: cancellation in yhat - y and saturation
        first_order = [i for i in lay.identities if i.kind in FIRST_ORDER_KINDS]  # no tangents in these inputs
        got = [oracle.evaluate(lay, inputs, first_order, engine=e) for e in ENGINES]
        assert_same_certified(got[0], got[1], f"width {width}, logit {logit}")


# --------------------------------------------------------------------------- every primitive, both engines

PRIMITIVE_EXPRS = {
    "sigmoid": "sigmoid(A)", "tanh": "tanh(A)", "relu": "relu(A)", "step": "step(A)", "exp": "exp(A)",
    "log": "log(P)", "softmax": "softmax(A, axis=1)", "log_softmax": "log_softmax(A, axis=0)",
    "logsumexp": "logsumexp(A)", "sum": "sum(A, axis=0) + sum(A)", "mean": "mean(A, axis=1) * mean(A)",
    "Diag": "Diag(v)", "outer": "outer(v, w)",
}


def test_every_primitive_of_the_language_is_covered():
    assert set(PRIMITIVE_EXPRS) == set(FUNCTIONS)


@pytest.mark.parametrize("fn", sorted(PRIMITIVE_EXPRS))
@pytest.mark.parametrize("scale", [1.0, 30.0, 800.0])
def test_every_primitive_agrees(fn, scale):
    rng = np.random.default_rng(7)
    env_f = {"A": rng.standard_normal((3, 4)) * scale, "P": np.abs(rng.standard_normal((3, 4))) * scale + 2.0 ** -40,
             "v": rng.standard_normal((1, 3)), "w": rng.standard_normal((4, 1))}
    env_f["A"][0, 0] = 0.0  # the kink of relu and step
    expr = parse_expr(PRIMITIVE_EXPRS[fn], names=env_f)
    out = {}
    for name, ops, conv in (("mpmath", IvOps(), to_iv), ("flint", ArbOps(), to_arb)):
        eng = get_engine(name)

        def fn_run():
            env = {k: conv(v) for k, v in env_f.items()}
            return {"r": interpret(expr, env, ops)}, None

        out[name] = oracle.certify(fn_run, engine=eng)[0]["r"]
    assert np.array_equal(out["mpmath"].hi, out["flint"].hi), fn


@pytest.mark.parametrize("text, names", [("log(A)", {"A": -1.0}), ("A / B", {"A": 1.0, "B": 0.0})])
def test_domain_errors_in_both_engines(text, names):
    env_f = {k: np.full((1, 2), v) for k, v in names.items()}
    expr = parse_expr(text, names=env_f)
    for ops, conv in ((IvOps(), to_iv), (ArbOps(), to_arb)):
        with pytest.raises(DomainError):
            interpret(expr, {k: conv(v) for k, v in env_f.items()}, ops)


# --------------------------------------------------------------------------- the fast path against the rule

def _balls(prec: int, count: int, seed: int) -> list:
    """Balls built to sit on the rule's edges: float64 ties, narrower-format midpoints, powers of two,
    radii around 2**-93, tiny and subnormal values, zeros, infinities, NaN."""
    rnd = random.Random(seed)
    arb = flint.arb
    out = []
    with _prec(prec):
        for _ in range(count):
            kind = rnd.randrange(11)
            e = rnd.randrange(-1100, 1020) if kind in (7, 8) else rnd.randrange(-60, 60)
            base = math.ldexp(rnd.uniform(1, 2), e) * rnd.choice((1, -1))
            if kind == 0:  # a float64 plus a tiny offset of either sign
                m = arb(base) + arb(rnd.choice((1, -1))) * arb(2) ** (e - 53 - rnd.randrange(1, 80))
            elif kind == 1:  # a float64 tie (half an ulp away), maybe perturbed
                m = arb(base) + arb(2) ** (math.frexp(base)[1] - 54) * rnd.choice((1, -1))
                m += arb(2) ** (e - 200) * rnd.choice((0, 1, -1))
            elif kind == 2:  # a float32 or bfloat16 midpoint, maybe perturbed
                p = rnd.choice((24, 8, 11))
                m = arb(math.ldexp(2 * rnd.randrange(1 << (p - 1), 1 << p) + 1, e - p))
                m += arb(2) ** (e - 120) * rnd.choice((0, 1, -1))
            elif kind == 3:  # a power of two, approached from below or above
                m = arb(2) ** e + arb(2) ** (e - rnd.choice((54, 55, 56, 90))) * rnd.choice((1, -1))
            elif kind == 4:
                m = arb(0)
            elif kind == 5:
                m = arb(base) / 3
            elif kind == 6:
                m = arb("inf") if rnd.random() < 0.5 else arb("nan")
            else:
                m = arb(base) / 7
            r = rnd.choice((0, 0, 2.0 ** -rnd.randrange(80, 200), 2.0 ** -rnd.randrange(88, 100)))
            if r and m.is_finite():
                m = m + arb(0, abs(float(m.mid())) * r if m.mid() != 0 else r)
            out.append(m)
    return out


class _prec:
    def __init__(self, bits):
        self.bits = bits

    def __enter__(self):
        self.saved = flint.ctx.prec
        flint.ctx.prec = self.bits

    def __exit__(self, *exc):
        flint.ctx.prec = self.saved


@pytest.mark.parametrize("waive", [False, True])
@pytest.mark.parametrize("prec", [128, 1024])
def test_fast_certification_equals_the_exact_rule(prec, waive):
    """Each ball alone: the vectorised fast path must give exactly what the rule gives on its endpoints."""
    balls = _balls(prec, 3000, seed=prec + waive)
    with _prec(prec):
        decided = 0
        for x in balls:
            got = arb_certify_many({"x": np.array([[x]], dtype=object)}, waive_ties=waive, bits=prec)
            ref = _exact_rule(x, waive, prec)
            if ref is None:
                assert got is None, x
                continue
            assert got is not None, x
            e = got["x"]
            assert (e.hi[0, 0], e.lo[0, 0]) == (ref[0], ref[1]) or (
                math.isnan(ref[0]) and math.isnan(e.hi[0, 0])), (x, e.hi, e.lo, ref)
            assert e.undecided == int(ref[2])
            decided += 1
    assert decided > 1000


def test_exact_rule_sees_the_ball_exactly():
    """The slow path converts a ball's endpoints to mpmath without rounding."""
    with _prec(200):
        got = _exact_rule(flint.arb(1) / 3, False, 200)
    with mpmath.workprec(400):
        third = mpmath.mpf(1) / 3
    assert got is not None and got[0] == float(third)


# --------------------------------------------------------------------------- selection and recording

def test_the_default_engine_is_flint_where_python_flint_is_installed(monkeypatch):
    import importlib.util

    from conformance.oracle.engines import select

    assert DEFAULT_ENGINE == ("flint" if importlib.util.find_spec("flint") is not None else "mpmath")
    monkeypatch.setattr(select.importlib.util, "find_spec", lambda name: None)
    assert select._default_engine() == "mpmath"


def test_engine_selection(monkeypatch):
    monkeypatch.delenv(ENV_ORACLE, raising=False)
    assert get_engine().name == DEFAULT_ENGINE
    monkeypatch.setenv(ENV_ORACLE, "flint")
    assert get_engine().name == "flint"
    assert get_engine("mpmath").name == "mpmath"
    with pytest.raises(EngineUnavailable, match="unknown oracle engine"):
        get_engine("sympy")


def test_results_record_the_engine_and_its_version(seed_spec):
    from conformance.run.run import Run

    for name in ENGINES:
        run = Run(seed_spec, "numpy", isolate=False, oracle=name)
        section = run.oracle_section()
        assert section["name"] == name
        assert section["version"] == get_engine(name).version()
        assert section["engine"] in ("mpmath-interval", "flint-arb")
        assert section["cache"] is None


def test_const_is_exact_in_both_engines():
    for ops, eng in ((IvOps(), "mpmath"), (ArbOps(), "flint")):
        e = get_engine(eng)
        with e.precision(128):
            got = e.certify_array(ops.const(Fraction(1, 10)), waive_ties=False, bits=128)
        assert got.hi[0, 0] == 0.1


# --------------------------------------------------------------------------- verifications, both engines

def _claims(spec, layout):
    """Every closed form the suite verifies in ``layout``: the spec's identities and its (conformable or not)
    negative identities, as (identity, closed form, ignore_requires)."""
    lay = spec.layouts[layout]
    out = [(i, None, False) for i in lay.identities]
    out += [(lay.identity(n.claims), n.expr, n.ignore_requires) for n in spec.negative_identities
            if n.layout == layout]
    return out


@pytest.mark.parametrize("layout", ["row", "column"])
def test_verifications_agree_in_both_engines(seed_spec, layout):
    """The dual numbers and jets run over either engine's enclosures (the suite verifies with the oracle's
    engine): on one case of every regime, every identity and every negative identity gets the same verdict,
    component and precision in both, and the printed values agree to within the enclosures' widths."""
    lay = seed_spec.layouts[layout]
    seen: dict[tuple[str, str], int] = {}
    for regime in seed_spec.without_wide().regimes:
        for case in generate_cases(seed_spec, layout, "float64", regime, examples=1)[:1]:
            for ident, expr, ignore in _claims(seed_spec, layout):
                got = []
                for e in ENGINES:
                    try:
                        got.append(oracle.verify_identity(lay, ident, case.inputs, case.sizes, expr=expr,
                                                          ignore_requires=ignore, engine=e))
                    except ValueError as exc:  # a closed form that is not conformable: both engines say so
                        got.append(type(exc))
                where = (regime, ident.id, repr(expr))
                if not isinstance(got[0], oracle.Verification):
                    assert got[0] is got[1] is ValueError, where
                    continue
                m, f = got
                assert (m.verdict, m.worst_index, m.precision, m.reason) == \
                    (f.verdict, f.worst_index, f.precision, f.reason), where
                for a, b in ((m.identity_value, f.identity_value), (m.derivative_value, f.derivative_value)):
                    assert (a is None) == (b is None), where
                    if a is not None:
                        assert a == pytest.approx(b, rel=2.0 ** -40, abs=1e-300), where
                seen[(ident.kind, m.verdict)] = seen.get((ident.kind, m.verdict), 0) + 1
    kinds = {k for k, _ in seen}
    assert {"gradient", "jacobian", "jvp", "vjp", "hessian", "hvp"} <= kinds, seen
    assert {v for _, v in seen} >= {"holds", "refuted"}, seen


@pytest.mark.parametrize("layout", ["row", "column"])
def test_derivatives_enclose_the_same_values_in_both_engines(seed_spec, layout):
    """Two enclosures of one exact value intersect: the dual-number and jet derivatives of every identity's
    (kind, of, wrt) in Arb balls and in mpmath intervals overlap componentwise (a wrong rule in either
    algebra would give disjoint enclosures somewhere)."""
    lay = seed_spec.layouts[layout]
    case = generate_cases(seed_spec, layout, "float64", "benign", examples=1)[0]
    checked = 0
    for ident in lay.identities:
        if any(case.sizes.get(d) != v for d, v in ident.when.items()):
            continue
        ders = {}
        for e in ENGINES:
            eng = get_engine(e)
            with eng.precision(128):
                ders[e] = oracle.derivative(lay, case.inputs, kind=ident.kind, of=ident.of, wrt=ident.wrt,
                                            convention=ident.convention, direction=ident.direction, engine=eng)
        m, f = ders["mpmath"], ders["flint"]
        assert m.shape == f.shape, ident.id
        for idx, ball in np.ndenumerate(f):
            lo, hi = _endpoints(ball)  # exact
            assert not (hi < m[idx].a or m[idx].b < lo), (ident.id, idx, ball, m[idx])
        checked += 1
    assert checked >= 20
