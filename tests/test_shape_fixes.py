"""Shape inference: the fixes suggested for a non-conformable expression are general, and always whole fixes."""

from __future__ import annotations

import pytest

from conformance.errors import ShapeError
from conformance.expr import to_text
from conformance.spec.parse import parse_expr
from conformance.spec.shapes import infer_shape, suggest_fixes

SHAPES = {"x": ("n", "d_in"), "W": ("d_in", "k"), "V": ("k", "m"), "g": ("n", "m"), "s": ("n", "k")}


def _e(text: str):
    return parse_expr(text, names=SHAPES)


@pytest.mark.parametrize("text,fix", [
    ("x @ W.T", "W"),            # a transpose too many
    ("g @ V.T @ W", "W.T"),      # W for W.T at the end of a chain
    ("g @ V", "V.T"),
    ("s @ W", "W.T"),
    ("W @ x", "x @ W"),          # operands swapped
])
def test_the_best_fix_is_suggested(text: str, fix: str) -> None:
    with pytest.raises(ShapeError) as info:
        infer_shape(_e(text), SHAPES)
    err = info.value
    assert err.suggestion == fix or to_text(err.fixes[0].expr) == fix, (err.suggestion, err.fixes)
    assert f"did you mean {err.suggestion}?" in str(err)
    for f in err.fixes:  # every suggestion makes the whole expression conformable
        infer_shape(f.expr, SHAPES)


def test_fixes_at_the_failing_product_rank_first() -> None:
    fixes = suggest_fixes(_e("s @ W"), SHAPES)
    assert fixes[0].local and to_text(fixes[0].expr) == "s @ W.T"
    assert all(infer_shape(f.expr, SHAPES) for f in fixes)


def test_expected_shape_filters_fixes() -> None:
    fixes = suggest_fixes(_e("W.T @ x.T"), SHAPES, expected=("n", "k"))
    assert [to_text(f.expr) for f in fixes] == ["(W.T @ x.T).T"]


def test_no_fix_when_no_single_edit_helps() -> None:
    with pytest.raises(ShapeError) as info:
        infer_shape(_e("g * x"), SHAPES)
    assert info.value.suggestion is None and info.value.fixes == ()
    assert info.value.trace  # the shapes computed before the error
