"""Shape inference over named dimensions."""

from __future__ import annotations

import pytest

from conformance.errors import ShapeError
from conformance.spec.parse import parse_expr
from conformance.spec.shapes import infer_all, infer_shape

ROW = {"x": ("n", "d_in"), "W1": ("d_in", "hidden"), "b1": (1, "hidden"), "h": ("n", "hidden"),
       "W2": ("hidden", "d_out"), "yhat": ("n", "d_out"), "y": ("n", "d_out")}


def shape(text: str):
    return infer_shape(parse_expr(text, names=ROW), ROW)


def test_row_identities_have_the_shape_of_their_variable():
    assert shape("x @ W1 + b1") == ("n", "hidden")
    assert shape("((yhat - y) @ W2.T) * (h - h*h) @ W1.T") == ("n", "d_in")
    assert shape("x.T @ (((yhat - y) @ W2.T) * (h - h*h))") == ("d_in", "hidden")
    assert shape("sum(yhat - y, axis=0)") == (1, "d_out")
    assert shape("sum(y, axis=1)") == ("n", 1)
    assert shape("-sum(y * log(yhat))") == (1, 1)


def test_vectors_for_diag_and_outer():
    shapes = {"v": (1, "k"), "w": ("m", 1)}
    assert infer_shape(parse_expr("Diag(v)", names=shapes), shapes) == ("k", "k")
    assert infer_shape(parse_expr("outer(v, w)", names=shapes), shapes) == ("k", "m")
    with pytest.raises(ShapeError, match="Diag takes a vector"):
        infer_shape(parse_expr("Diag(W)", names={"W": ("a", "b")}), {"W": ("a", "b")})


def test_missing_transpose_is_a_shape_error_with_the_fix():
    with pytest.raises(ShapeError) as info:
        shape("((yhat - y) @ W2.T) * (h - h*h) @ W1")
    err = info.value
    assert "n x hidden" in str(err) and "W1 (d_in x hidden)" in str(err)
    assert err.suggestion == "W1.T"
    assert any(s == "n x hidden" for _, s in err.trace)


def test_names_never_match_even_with_equal_sizes():
    """d_in and d_out are both 5 in the seed family: numerically W2 (3 x 5) could stand in for W1.T (3 x 5),
    but symbolically the result is n x d_out, not the n x d_in of dL/dx, in every family."""
    assert shape("((yhat - y) @ W2.T) * (h - h*h) @ W2") == ("n", "d_out")
    assert shape("((yhat - y) @ W2.T) * (h - h*h) @ W1.T") == ("n", "d_in")


def test_broadcasting_needs_a_length_one_axis():
    assert shape("x @ W1 + b1") == ("n", "hidden")
    with pytest.raises(ShapeError, match="broadcastable"):
        shape("h + yhat")


def test_trace_covers_every_subexpression():
    e = parse_expr("(yhat - y) @ W2.T", names=ROW)
    trace = infer_all(e, ROW)
    assert len(trace) == 6  # yhat, y, yhat - y, W2, W2.T and the product
    assert trace[e] == ("n", "hidden")
