"""Shape inference over named dimensions.

Shapes are pairs of symbolic dimensions: a dimension name (``"n"``,
``"d_in"``...) or the literal 1. Two different names never match, even when a
shape family happens to give them the same size: that is what makes a missing
transpose a shape error in every family, not only in the ones where it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from .errors import ShapeError
from .expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose, to_text

__all__ = ["Dim", "Shape", "infer_shape", "infer_all", "format_shape", "concrete", "vector_length", "substitute"]

Dim = Union[str, int]
Shape = tuple[Dim, Dim]

_SAME_SHAPE = {"sigmoid", "tanh", "relu", "step", "exp", "log", "softmax", "log_softmax"}
_REDUCTIONS = {"sum", "mean", "logsumexp"}


def format_shape(shape: Shape) -> str:
    return f"{shape[0]} x {shape[1]}"


def substitute(shape: Shape, fixed: Mapping[str, int]) -> Shape:
    """Replace dimensions pinned to 1 (e.g. ``n`` for a per-sample Jacobian) by the literal 1."""
    return tuple(1 if (isinstance(d, str) and fixed.get(d) == 1) else d for d in shape)  # type: ignore[return-value]


def concrete(shape: Shape, sizes: Mapping[str, int]) -> tuple[int, int]:
    return tuple(d if isinstance(d, int) else int(sizes[d]) for d in shape)  # type: ignore[return-value]


def vector_length(shape: Shape) -> Dim | None:
    """The length of a vector shape (1 x k or k x 1), or None if it is not a vector."""
    r, c = shape
    if r == 1:
        return c
    if c == 1:
        return r
    return None


@dataclass(frozen=True)
class _Where:
    file: str | None
    key: str | None


def _operand(e: Expr, s: Shape) -> str:
    return f"{to_text(e)} ({format_shape(s)})"


def infer_all(
    expr: Expr,
    shapes: Mapping[str, Shape],
    *,
    file: str | None = None,
    key: str | None = None,
) -> dict[Expr, Shape]:
    """Shape of every sub-expression of ``expr`` (a trace, parents after children)."""
    out: dict[Expr, Shape] = {}
    where = _Where(file, key)
    _infer(expr, shapes, out, where)
    return out


def infer_shape(expr: Expr, shapes: Mapping[str, Shape], *, file: str | None = None, key: str | None = None) -> Shape:
    return infer_all(expr, shapes, file=file, key=key)[expr]


def _trace(out: Mapping[Expr, Shape]) -> tuple[tuple[str, str], ...]:
    return tuple((to_text(e), format_shape(s)) for e, s in out.items())


def _infer(e: Expr, shapes: Mapping[str, Shape], out: dict[Expr, Shape], where: _Where) -> Shape:
    if e in out:
        return out[e]

    def error(message: str, suggestion: str | None = None) -> ShapeError:
        return ShapeError(f"{message} in {to_text(e)!r}", file=where.file, key=where.key,
                          trace=_trace(out), suggestion=suggestion)

    if isinstance(e, Name):
        s = shapes[e.id]
    elif isinstance(e, Const):
        s = (1, 1)
    elif isinstance(e, (Neg, Pow)):
        s = _infer(e.children()[0], shapes, out, where)
    elif isinstance(e, Transpose):
        r, c = _infer(e.operand, shapes, out, where)
        s = (c, r)
    elif isinstance(e, BinOp):
        left = _infer(e.left, shapes, out, where)
        right = _infer(e.right, shapes, out, where)
        if e.op == "@":
            if left[1] != right[0]:
                suggestion = None
                if right[1] == left[1] and not isinstance(e.right, Transpose):
                    suggestion = f"{to_text(e.right)}.T"
                elif right[1] == left[1] and isinstance(e.right, Transpose):
                    suggestion = to_text(e.right.operand)
                elif left[0] == right[0]:
                    suggestion = f"{to_text(e.left)}.T @ ..." if not isinstance(e.left, Transpose) else None
                raise error(
                    f"matrix product is not conformable: {_operand(e.left, left)} @ {_operand(e.right, right)}: "
                    f"inner dimensions {left[1]} and {right[0]} differ",
                    suggestion,
                )
            s = (left[0], right[1])
        else:
            dims = []
            for a, b in zip(left, right):
                if a == b or b == 1:
                    dims.append(a)
                elif a == 1:
                    dims.append(b)
                else:
                    kind = {"*": "elementwise product", "/": "elementwise quotient", "+": "sum", "-": "difference"}[e.op]
                    raise error(
                        f"{kind} needs equal (or broadcastable, length-1) shapes: "
                        f"{_operand(e.left, left)} {e.op} {_operand(e.right, right)}"
                    )
            s = (dims[0], dims[1])
    elif isinstance(e, Call):
        args = [_infer(a, shapes, out, where) for a in e.args]
        if e.fn in _SAME_SHAPE:
            s = args[0]
        elif e.fn in _REDUCTIONS:
            r, c = args[0]
            s = (1, 1) if e.axis is None else ((1, c) if e.axis == 0 else (r, 1))
        elif e.fn == "Diag":
            k = vector_length(args[0])
            if k is None:
                raise error(f"Diag takes a vector (1 x k or k x 1), got {format_shape(args[0])}")
            s = (k, k)
        elif e.fn == "outer":
            ku, kv = vector_length(args[0]), vector_length(args[1])
            if ku is None or kv is None:
                raise error(f"outer takes two vectors, got {format_shape(args[0])} and {format_shape(args[1])}")
            s = (ku, kv)
        else:  # pragma: no cover - the parser only admits known functions
            raise error(f"no shape rule for function {e.fn!r}")
    else:  # pragma: no cover
        raise TypeError(e)
    out[e] = s
    return s
