"""The registry of primitives is the one list of them: every record is complete, every consumer agrees with it.

A primitive added to :mod:`conformance.primitives` without its enclosure in an
oracle engine, its derivative in the dual algebra, its error-bound rule, or a
backend's implementation fails here, by name, instead of surfacing as
"not supported" (or an error) the first time a spec uses it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conformance.errors import SpecError
from conformance.expr import AXIS_FUNCTIONS, AXIS_REQUIRED, FUNCTIONS, Call, Name, Ops, UnsupportedPrimitive, interpret
from conformance.judge.bounds import PRIMITIVE_RULES
from conformance.oracle.arith import DualOps, FractionOps, IvOps, to_fraction
from conformance.oracle.engines.select import ENGINES, get_engine
from conformance.primitives import PRIMITIVES, AxisUse, Form, NotConformable, missing_methods, primitive
from conformance.report.latex import to_latex
from conformance.report.mathml import to_mathml
from conformance.spec import load_spec
from conformance.spec.parse import parse_expr
from conformance.spec.shapes import infer_shape
from impls.jax import JaxOps
from impls.numpy import NumpyOps
from impls.torch import TorchOps

from .conftest import REPO, SPEC_DIR

NAMES = sorted(PRIMITIVES)


def _call_text(name: str, axis: int | None = None) -> str:
    args = ", ".join(["v", "w"][: primitive(name).arity])
    return f"{name}({args}{'' if axis is None else f', axis={axis}'})"


def _axis_for(name: str) -> int | None:
    return 1 if primitive(name).axis is AxisUse.REQUIRED else None


# --------------------------------------------------------------------------- the parser's whitelist

def test_the_contract_names_are_the_registry():
    assert dict(FUNCTIONS) == {n: (p.arity, p.meaning) for n, p in PRIMITIVES.items()}
    assert AXIS_FUNCTIONS == {n for n, p in PRIMITIVES.items() if p.axis is not AxisUse.NONE}
    assert AXIS_REQUIRED == {n for n, p in PRIMITIVES.items() if p.axis is AxisUse.REQUIRED}


def test_the_parser_whitelist_is_exactly_the_registry():
    with pytest.raises(SpecError) as info:
        parse_expr("nosuch(v)", names={"v"})
    allowed = str(info.value).split("allowed: ", 1)[1].split(" (at column")[0]
    assert allowed.split(", ") == NAMES
    for name in NAMES:
        expr = parse_expr(_call_text(name, _axis_for(name)), names={"v", "w"})
        assert isinstance(expr, Call) and expr.fn == name


@pytest.mark.parametrize("name", NAMES)
def test_the_parser_applies_each_record_arity_and_axis(name):
    p = primitive(name)
    names = {"v", "w", "x"}
    too_many = ", ".join(["v", "w", "x"][: p.arity + 1])
    with pytest.raises(SpecError, match=f"{name} takes {p.arity} argument"):
        parse_expr(f"{name}({too_many})", names=names)
    if p.axis is AxisUse.NONE:
        with pytest.raises(SpecError, match="no keyword arguments"):
            parse_expr(_call_text(name, 0), names=names)
    else:
        assert parse_expr(_call_text(name, 0), names=names).axis == 0
    if p.axis is AxisUse.REQUIRED:
        with pytest.raises(SpecError, match="needs axis=0 or axis=1"):
            parse_expr(_call_text(name), names=names)
    elif p.axis is AxisUse.OPTIONAL:
        assert parse_expr(_call_text(name), names=names).axis is None


# --------------------------------------------------------------------------- each record is complete

@pytest.mark.parametrize("name", NAMES)
def test_each_record_has_a_shape_rule(name):
    expr = parse_expr(_call_text(name, _axis_for(name)), names={"v", "w"})
    shape = infer_shape(expr, {"v": (1, "k"), "w": ("m", 1)})
    assert len(shape) == 2 and all(isinstance(d, (str, int)) for d in shape)
    assert infer_shape(expr, {"v": (1, 3), "w": (2, 1)}) == tuple(1 if d == 1 else {"k": 3, "m": 2}[d] for d in shape)


def test_a_shape_rule_refuses_with_a_message_the_checker_locates():
    with pytest.raises(NotConformable, match="Diag takes a vector"):
        primitive("Diag").shape([("n", "k")], None)
    with pytest.raises(Exception, match=r"outer takes two vectors, got n x k and 1 x k in 'outer\(A, v\)'"):
        infer_shape(parse_expr("outer(A, v)", names={"A", "v"}), {"A": ("n", "k"), "v": (1, "k")})


@pytest.mark.parametrize("name", NAMES)
def test_each_record_is_typeset(name):
    n = primitive(name).notation
    assert n.text and n.latex
    expr = parse_expr(_call_text(name, _axis_for(name)), names={"v", "w"})
    assert n.latex in to_latex(expr)
    assert n.text in to_mathml(expr)
    if n.form is Form.INFIX:
        assert primitive(name).arity == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_every_oracle_engine_has_an_enclosure_for_every_primitive(engine):
    if engine == "flint":
        pytest.importorskip("flint", reason="the flint engine needs python-flint (the [fast] extra; CI installs it)")
    algebra = type(get_engine(engine).ops())
    assert missing_methods(algebra) == ()


def test_the_dual_algebra_has_a_derivative_for_every_primitive():
    assert missing_methods(DualOps) == ()


def test_the_second_order_jets_have_a_second_derivative_for_every_primitive():
    from conformance.oracle.jets import JetOps  # the jets of jvp / vjp / hessian / hvp (tests/test_higher_order.py)

    assert missing_methods(JetOps) == ()


def test_the_rational_algebra_has_exactly_the_rational_primitives():
    rational = tuple(n for n, p in PRIMITIVES.items() if p.rational)
    assert rational and missing_methods(FractionOps, rational) == ()
    env = {"v": to_fraction(np.array([[0.5, 0.25]])), "w": to_fraction(np.array([[2.0], [4.0]]))}
    for name in NAMES:
        expr = parse_expr(_call_text(name, _axis_for(name)), names=env)
        if primitive(name).rational:
            assert interpret(expr, env, FractionOps()).dtype == object
        else:
            with pytest.raises(UnsupportedPrimitive, match=f"{name} is not rational"):
                interpret(expr, env, FractionOps())


def test_every_primitive_has_an_error_bound_rule():
    assert set(PRIMITIVE_RULES) == set(PRIMITIVES)


def test_the_budget_keys_are_the_spec_keys():
    """Every key of a spec's elementary_error_u is some primitive's budget (else nothing charges it), and the
    seed spec, which uses every primitive with a budget, gives each of them its measured c."""
    budgets = {p.budget for p in PRIMITIVES.values() if p.budget is not None}
    for path in sorted(SPEC_DIR.glob("*.yaml")):
        assert set(load_spec(path).tolerance.elementary_error_u) <= budgets, path.name
    assert set(load_spec(SPEC_DIR / "two_layer_sigmoid_xent.yaml").tolerance.elementary_error_u) == budgets


@pytest.mark.parametrize("ops", [NumpyOps, TorchOps, JaxOps], ids=lambda c: c.__name__)
def test_every_built_in_backend_implements_every_primitive(ops):
    assert missing_methods(ops) == ()


# --------------------------------------------------------------------------- the check finds a gap

class _NoTanh(IvOps):
    fn_tanh = None  # an engine that lost its tanh enclosure


def test_an_algebra_without_an_enclosure_is_reported_by_name():
    assert missing_methods(_NoTanh) == ("tanh",)
    assert missing_methods(Ops) == tuple(PRIMITIVES)
    with pytest.raises(UnsupportedPrimitive, match="tanh"):
        interpret(Call("tanh", (Name("x"),)), {"x": np.empty((1, 1), dtype=object)}, _NoTanh())


# --------------------------------------------------------------------------- the base layer stays light

def test_the_registry_and_the_contract_import_no_engine_library():
    code = ("import sys, conformance.primitives, conformance.expr; "
            "print(sorted({'mpmath', 'flint', 'numpy'} & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_records_are_frozen():
    with pytest.raises(AttributeError):
        primitive("tanh").arity = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        PRIMITIVES["new"] = primitive("tanh")  # type: ignore[index]
