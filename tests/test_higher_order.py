"""Forward mode and second order (issue #14): jvp, vjp, hessian and hvp identities, oracle and backends.

The oracle's jets are checked against mpmath's own differentiation and against the first-order dual numbers;
the spec's new identities hold on certified cases and its negative ones are refuted; numpy, torch and jax pass
on a small selection; backends wrong only in forward mode or at second order are caught exactly there, and a
backend that does not list the kinds gets not_supported for them (never a pass, never asked).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance.backend import FIRST_ORDER_KINDS, QUANTITY_KINDS
from conformance.cases.generate import generate_cases
from conformance.checks.formula import CheckError, check
from conformance.errors import SpecError
from conformance.oracle.arith import Dual, DualOps, endpoints, iv_mid_float, to_iv
from conformance.oracle.engines.select import get_engine
from conformance.oracle.evaluate import derivative, verify_identity
from conformance.oracle.jets import Jet, JetOps
from conformance.run.run import Run
from conformance.spec import load_spec
from conformance.spec.shapes import concrete
from conformance.statuses import NOT_SUPPORTED, PASS
from tests.helpers import spec_copy

HIGHER = ("jvp", "vjp", "hessian", "hvp")


def _one_case(spec, layout: str, regime: str = "benign", n: int = 1):
    cases = generate_cases(spec, layout, "float64", regime, examples=1)
    return next(c for c in cases if c.sizes["n"] == n)


# ------------------------------------------------------------------------------------------- the jets

def _ends(x):
    """Exact endpoints of an enclosure of either engine (mpmath interval or Arb ball)."""
    if isinstance(x, mpmath.ctx_iv.ivmpf):
        return endpoints(x)
    from conformance.oracle.engines.flint_engine import _endpoints
    return _endpoints(x)


@pytest.mark.parametrize("fn, f", [("exp", mpmath.exp), ("log", mpmath.log), ("tanh", mpmath.tanh),
                                   ("sigmoid", lambda t: 1 / (1 + mpmath.exp(-t)))])
@pytest.mark.parametrize("x0", ["0.3", "2.5", "-1.75"])
@pytest.mark.parametrize("engine", ["mpmath", "flint"])
def test_jet_and_dual_derivatives_of_each_elementwise_primitive_match_mpmath(fn, f, x0, engine):
    """In both engines' algebras (the suite verifies in the oracle's): the jets' first and second derivative
    and the dual numbers' first derivative of each elementwise primitive enclose mpmath.diff's."""
    if engine == "flint":
        pytest.importorskip("flint", reason="the Arb algebra needs python-flint (the [fast] extra; CI installs it)")
    if fn == "log" and x0.startswith("-"):
        x0 = x0[1:]
    eng = get_engine(engine)
    with eng.precision(200):
        one = eng.from_floats(np.ones((1, 1)))
        point = eng.from_floats(np.array([[float(x0)]]))
        x = Jet(point, one.reshape(1, 1, 1), one.reshape(1, 1, 1), None)
        out = JetOps(eng.ops()).call(fn, (x,), None)
        dual = DualOps(eng.ops()).call(fn, (Dual(point, one.reshape(1, 1, 1)),), None)
    with mpmath.workdps(60):
        exact1 = mpmath.diff(f, mpmath.mpf(float(x0)), 1)
        exact2 = mpmath.diff(f, mpmath.mpf(float(x0)), 2)
        for got, exact in ((out.a[0, 0, 0], exact1), (out.ab[0, 0, 0, 0], exact2), (dual.t[0, 0, 0], exact1)):
            lo, hi = _ends(got)
            assert lo - mpmath.mpf(10) ** -40 <= exact <= hi + mpmath.mpf(10) ** -40, (fn, x0, got, exact)


def test_jet_product_and_quotient_rules_at_second_order():
    """f(x) = x**3 / (1 + x) through mul, pow and div: f'' from the jets agrees with mpmath."""
    mpmath.iv.prec = 200
    ops = JetOps()
    one = to_iv(np.ones((1, 1))).reshape(1, 1, 1)
    x = Jet(to_iv(np.array([[0.625]])), one, one, None)
    out = ops.div(ops.pow(x, 3), ops.add(ops.const(Fraction(1)), x))
    exact = mpmath.diff(lambda t: t ** 3 / (1 + t), mpmath.mpf(0.625), 2)
    assert abs(float(iv_mid_float(out.ab[0, 0])[0, 0]) - float(exact)) < 1e-14


@pytest.mark.parametrize("layout", ["row", "column"])
def test_jet_jvp_equals_the_first_order_jacobian_times_the_tangent(seed_spec, layout):
    """Two independent forward modes agree: the jets' J v and the dual numbers' Jacobian applied to v."""
    case = _one_case(seed_spec, layout)
    lay = seed_spec.layouts[layout]
    mpmath.iv.prec = 160
    conv = lay.jacobian_convention
    jac = iv_mid_float(derivative(lay, case.inputs, kind="jacobian", of="yhat", wrt="x", convention=conv))
    jvp = iv_mid_float(derivative(lay, case.inputs, kind="jvp", of="yhat", wrt="x", direction="v_x"))
    v = case.inputs["v_x"].astype(np.float64).reshape(-1)
    numerator = jac if conv == "numerator" else jac.T
    np.testing.assert_allclose(jvp.reshape(-1), numerator @ v, rtol=1e-12, atol=1e-300)


# ------------------------------------------------------------------------------------------- the spec

def test_a_direction_of_scale_zero_is_the_zero_direction(tmp_path):
    """normal: 0 for a tangent is what the spec says (a zero tangent), not the default scale 1."""
    path = spec_copy(tmp_path, ("      default: {normal: 1}\n      y: {labels: soft}\n",
                                "      default: {normal: 1}\n      y: {labels: soft}\n      v_theta: {normal: 0}\n"))
    spec = load_spec(path)
    for case in generate_cases(spec, "row", "float32", "benign", examples=1):
        assert np.count_nonzero(case.inputs["v_theta"]) == 0
        assert np.count_nonzero(case.inputs["v_a"]) == case.inputs["v_a"].size


@pytest.mark.parametrize("regime", ["benign", "tiny_inputs"])
def test_directions_are_generic_inputs_of_the_dtype_with_the_shape_of_their_variable(seed_spec, regime):
    lay = seed_spec.layouts["row"]
    for case in generate_cases(seed_spec, "row", "bfloat16", regime, examples=1):
        for name, of in (("v_theta", "theta"), ("v_a", "a"), ("v_x", "x"), ("u_h", "h"), ("u_yhat", "yhat")):
            v = case.inputs[name]
            assert v.dtype == case.inputs["x"].dtype
            assert v.shape == concrete(lay.value_shapes[of], case.sizes)
            values = v.astype(np.float64)
            assert np.all(np.isfinite(values)) and np.count_nonzero(values) == values.size  # N(0, 1): never 0


def test_every_new_identity_names_its_kind_so_that_k_selects_it(seed_spec):
    new = [i for lay in seed_spec.layouts.values() for i in lay.identities if i.kind in HIGHER]
    assert {i.kind for i in new} == set(HIGHER)
    for ident in new:
        assert ident.kind in ident.id, f"{ident.id} is a {ident.kind}: `-k {ident.kind}` must select it"
        assert (ident.direction is None) == (ident.kind == "hessian")


@pytest.mark.parametrize("layout", ["row", "column"])
@pytest.mark.parametrize("regime", ["benign", "saturated_sigmoid", "unnormalized_labels"])
def test_oracle_verifies_the_new_identities(seed_spec, layout, regime):
    lay = seed_spec.layouts[layout]
    case = _one_case(seed_spec, layout, regime)
    checked = 0
    for ident in lay.identities:
        if ident.kind not in HIGHER:
            continue
        v = verify_identity(lay, ident, case.inputs, case.sizes)
        assert v.verdict in ("holds", "not_applicable"), (ident.id, v.reason)
        checked += v.holds
    assert checked >= 8


def test_oracle_refutes_the_second_order_and_forward_mode_mistakes(seed_spec):
    new = [n for n in seed_spec.negative_identities if any(k in n.claims for k in HIGHER)]
    assert {n.id for n in new} >= {"d2L/dtheta2.hessian.diagonal_only", "d2L/da2.hvp.sigma_second_as_first",
                                    "d2L/da2.hvp.gauss_newton_only", "dyhat/dtheta.jvp.elementwise"}
    for neg in new:
        lay = seed_spec.layouts[neg.layout]
        case = _one_case(seed_spec, neg.layout)
        v = verify_identity(lay, lay.identity(neg.claims), case.inputs, case.sizes, expr=neg.expr)
        assert v.verdict == "refuted", (neg.id, v.reason)


def test_a_tangent_of_the_wrong_role_is_a_spec_error(tmp_path):
    path = spec_copy(tmp_path, ('v_theta: {role: tangent,', 'v_theta: {role: cotangent,'))
    with pytest.raises(SpecError, match=r"v_theta.*role 'cotangent'.*role: tangent"):
        load_spec(path)


def test_a_direction_that_is_not_an_input_is_a_spec_error(tmp_path):
    path = spec_copy(tmp_path, ("vjp: {of: h, wrt: a, cotangent: u_h}\n        expr: \"u_h * (h - h*h)\"\n        shape: [n, hidden]",
                                "vjp: {of: h, wrt: a, cotangent: W1}\n        expr: \"u_h * (h - h*h)\"\n        shape: [n, hidden]"))
    with pytest.raises(SpecError, match=r"W1.*role 'parameter'.*role: cotangent"):
        load_spec(path)


def test_a_hessian_without_a_pinned_batch_is_a_spec_error(tmp_path):
    old = ('expr: "sum(y) * (W2 @ (Diag(yhat) - yhat.T @ yhat) @ W2.T)"\n        shape: [hidden, hidden]\n'
           '        when: {n: 1}\n')
    path = spec_copy(tmp_path, (old, old.replace("        when: {n: 1}\n", "")))
    with pytest.raises(SpecError):
        load_spec(path)


# ------------------------------------------------------------------------------------------- backends

def _records(spec, backend: str, layout: str = "row", dtype: str = "float64"):
    with Run(spec, backend, isolate=False, examples=1) as run:
        case = next(c for c in run.cases(layout, dtype, "benign") if c.sizes["n"] == 1)
        records, _ = run.evaluate_case(case)
    return records


def _failing(records) -> set[str]:
    return {r.quantity for r in records if r.status != PASS}


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "torch-composed"])
@pytest.mark.parametrize("layout", ["row", "column"])
def test_reference_backends_pass_the_new_kinds(seed_spec, backend, layout):
    if backend != "numpy":
        pytest.importorskip(backend.split("-")[0])  # torch and jax: the stable (fused-loss) forms
    records = _records(seed_spec, backend, layout, "float32")
    new = [r for r in records if r.kind in HIGHER]
    assert {r.kind for r in new} == set(HIGHER)
    assert all(r.status == PASS for r in new), [(r.quantity, r.status, r.message) for r in new if r.status != PASS]


def test_a_diagonal_hessian_is_caught_and_nothing_else(seed_spec):
    for layout in ("row", "column"):
        assert _failing(_records(seed_spec, "tests.faulty_higher_order:DiagonalHessian", layout)) == \
            {"d2L/dtheta2.hessian", "d2L/dtheta2.hessian.normalized", "d2L/dh2.hessian"}


def test_a_wrong_forward_mode_is_caught_where_reverse_mode_is_right(seed_spec):
    pytest.importorskip("torch")
    failing = _failing(_records(seed_spec, "tests.faulty_higher_order:ElementwiseSoftmaxJvp"))
    assert failing == {"dyhat/dtheta.jvp", "dyhat/dx.jvp", "dL/dtheta.jvp"}


def test_double_backward_through_a_detached_sigmoid_derivative_is_caught(seed_spec):
    """First order, the Hessians in theta and h (no sigmoid downstream) pass; the HVPs through sigma'' fail."""
    pytest.importorskip("torch")
    failing = _failing(_records(seed_spec, "tests.faulty_higher_order:DetachedSigmoidDerivative"))
    assert failing == {"d2L/da2.hvp", "d2L/dx2.hvp"}


def test_a_backend_without_the_kinds_gets_not_supported_and_is_never_asked(seed_spec):
    assert QUANTITY_KINDS > FIRST_ORDER_KINDS
    records = _records(seed_spec, "tests.faulty_higher_order:FirstOrderOnly")
    new = [r for r in records if r.kind in HIGHER]
    assert new and all(r.status == NOT_SUPPORTED and r.detail == "declined" for r in new)
    assert "quantity_kinds" in new[0].message
    old = [r for r in records if r.kind not in HIGHER]
    assert old and all(r.status == PASS for r in old)  # it was not asked for the new kinds: no error


# ------------------------------------------------------------------------------------------- gradconform check

HVP_A = ("((sum(y, axis=1) * (yhat * (((h - h*h) * v_a) @ W2) - yhat * sum(yhat * (((h - h*h) * v_a) @ W2), axis=1)))"
         " @ W2.T) * (h - h*h) + ((yhat * sum(y, axis=1) - y) @ W2.T) * (h - h*h) * {curvature} * v_a")


@pytest.mark.parametrize("expr, kwargs, verdict, kind", [
    ("sum(y) * (Diag(yhat) - yhat.T @ yhat)", dict(wrt="theta", kind="hessian"), "correct", None),
    ("sum(y) * Diag(yhat - yhat*yhat)", dict(wrt="theta", kind="hessian"), "wrong", "missing_term"),
    (HVP_A.format(curvature="(1 - 2*h)"), dict(wrt="a", kind="hvp", along="v_a"), "correct", None),
    (HVP_A.format(curvature="1"), dict(wrt="a", kind="hvp", along="v_a"), "wrong", "missing_term"),  # docs/check.md
    ("u_h * (h - h*h)", dict(of="h", wrt="a", kind="vjp", along="u_h"), "correct", None),
    ("yhat * v_theta - yhat * sum(yhat * v_theta, axis=1)", dict(of="yhat", wrt="theta", kind="jvp", along="v_theta"),
     "correct", None),
    ("(yhat - yhat*yhat) * v_theta", dict(of="yhat", wrt="theta", kind="jvp", along="v_theta"), "wrong", None),
])
def test_check_accepts_directional_and_second_order_formulas(expr, kwargs, verdict, kind):
    r = check(expr, cases=2, **kwargs)
    assert r.verdict == verdict, r.render()
    if kind is not None:
        assert r.diagnosis["class"] == kind, r.render()
    if r.counterexample is not None:  # the directions shown are the one the quantity is taken along
        others = {"v_theta", "v_a", "v_x", "u_h", "u_yhat"} - {kwargs.get("along")}
        assert not others & set(r.counterexample.inputs), r.render()


def test_check_of_a_directional_kind_names_the_direction_it_needs():
    with pytest.raises(CheckError, match=r"--along.*u_h"):
        check("u_h * (h - h*h)", of="h", wrt="a", kind="vjp")
    with pytest.raises(CheckError, match=r"not a tangent input"):
        check("v_a", wrt="a", kind="hvp", along="u_h")


def test_check_refuses_a_kind_or_direction_that_contradicts_the_question():
    """A --kind the shapes contradict, or an --along nothing is taken along, was silently ignored (the check then
    answered another question than the one asked)."""
    with pytest.raises(CheckError, match=r"--kind gradient: dyhat/dtheta is a jacobian.*--kind jacobian"):
        check("Diag(yhat) - yhat.T @ yhat", of="yhat", wrt="theta", kind="gradient")
    with pytest.raises(CheckError, match=r"--kind jacobian: dL/dtheta is a gradient"):
        check("yhat * sum(y) - y", wrt="theta", kind="jacobian")
    with pytest.raises(CheckError, match=r"--along.*a hessian takes none"):
        check("sum(y) * (Diag(yhat) - yhat.T @ yhat)", wrt="theta", kind="hessian", along="v_theta")
    with pytest.raises(CheckError, match=r"--along.*gradient or Jacobian takes none"):
        check("yhat * sum(y) - y", wrt="theta", along="v_theta")
