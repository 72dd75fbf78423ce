"""The math language: what parses, and every way it refuses (naming file, key and token)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from conformance.errors import SpecError
from conformance.expr import BinOp, Call, Const, Name, Neg, Pow, Transpose, to_text
from conformance.spec.parse import parse_expr

NAMES = {"x", "W1", "b1", "h", "yhat", "y", "W2"}


def p(text: str):
    return parse_expr(text, names=NAMES, file="spec/demo.yaml", key="layouts.row.identities[0].expr")


def test_precedence_follows_python():
    e = p("((yhat - y) @ W2.T) * (h - h*h) @ W1.T")
    # (((yhat - y) @ W2.T) * (h - h*h)) @ W1.T : * and @ share a level, left-associative
    assert isinstance(e, BinOp) and e.op == "@"
    assert isinstance(e.right, Transpose) and e.right.operand == Name("W1")
    assert isinstance(e.left, BinOp) and e.left.op == "*"


def test_literals_are_exact_rationals():
    e = p("1e-7 * x")
    assert isinstance(e.left, Const) and e.left.value == Fraction(1, 10**7)
    assert p("0.1 * x").left.value == Fraction(1, 10)


def test_round_trip_through_text():
    for text in ["((yhat - y) @ W2.T) * (h - h * h) @ W1.T", "-sum(y * log(yhat))", "softmax(x, axis=1)",
                 "Diag(h) - Diag(h) @ Diag(h)", "h**2", "(x @ W1).T", "x - (h - y)", "-(x + y)"]:
        assert p(to_text(p(text))) == p(text), text


def test_pow_and_calls():
    assert p("h**2") == Pow(Name("h"), 2)
    e = p("sum(y, axis=0)")
    assert isinstance(e, Call) and e.fn == "sum" and e.axis == 0
    assert isinstance(p("-x"), Neg)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x.shape", "attribute access is not allowed"),
        ("np.exp(x)", "only the language's functions can be called"),
        ("eval('1')", "unknown function 'eval'"),
        ("__import__('os').system('true')", "only the language's functions can be called"),
        ("__import__('os')", "unknown function '__import__'"),
        ("z + x", "unknown name 'z'"),
        ("sigmoid + x", "sigmoid is a function"),
        ("x[0]", "indexing is not part of the math language"),
        ("x if h else y", "conditional expression"),
        ("x == y", "comparison"),
        ("lambda: 1", "lambda"),
        ("'a'", "only numeric literals"),
        ("True * x", "only numeric literals"),
        ("x // y", "'//' is not allowed"),
        ("x ** h", "non-negative integer literal exponent"),
        ("x ** -1", "non-negative integer literal exponent"),
        ("softmax(x)", "needs axis=0 or axis=1"),
        ("softmax(x, axis=2)", "axis must be the literal 0 or 1"),
        ("exp(x, axis=0)", "exp takes no keyword arguments"),
        ("exp(x, y)", "exp takes 1 argument, got 2"),
        ("sum(*x)", "starred"),
        ("x +", "syntax error"),
        ("", "empty expression"),
        ("(x, y)", "tuple"),
        ("x; y", "syntax error"),
    ],
)
def test_refusals_name_file_key_and_token(text, fragment):
    with pytest.raises(SpecError) as info:
        p(text)
    message = str(info.value)
    assert fragment in message
    assert "spec/demo.yaml" in message and "layouts.row.identities[0].expr" in message


def test_refusal_points_at_the_token():
    with pytest.raises(SpecError, match=r"column 6: 'x.shape'"):
        p("1 + (x.shape)")


def test_nothing_is_evaluated(tmp_path, monkeypatch):
    """A hostile expression is refused before anything runs: the side effect never happens."""
    marker = tmp_path / "ran"
    with pytest.raises(SpecError):
        p(f"__import__('pathlib').Path('{marker}').touch()")
    assert not marker.exists()
