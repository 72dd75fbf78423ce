"""Shape inference over named dimensions.

Shapes are pairs of symbolic dimensions: a dimension name (``"n"``,
``"d_in"``...) or the literal 1. Two different names never match, even when a
shape family happens to give them the same size: that is what makes a missing
transpose a shape error in every family, not only in the ones where it shows.
A call's shape is its primitive's rule (:mod:`conformance.primitives`); this
module adds where a refusal happened and which single edit would fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from conformance.errors import ShapeError
from conformance.expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose, to_text
from conformance.primitives import Dim, NotConformable, Shape, format_shape, primitive, vector_length

__all__ = ["Dim", "Shape", "infer_shape", "infer_all", "try_shape", "format_shape", "concrete", "concrete_shapes",
           "vector_length", "substitute", "Fix", "suggest_fixes", "replace_at", "toggle_transpose", "transpose_candidates"]


def substitute(shape: Shape, fixed: Mapping[str, int]) -> Shape:
    """Replace dimensions pinned to 1 (e.g. ``n`` for a per-sample Jacobian) by the literal 1."""
    return tuple(1 if (isinstance(d, str) and fixed.get(d) == 1) else d for d in shape)  # type: ignore[return-value]


def concrete(shape: Shape, sizes: Mapping[str, int]) -> tuple[int, int]:
    return tuple(d if isinstance(d, int) else int(sizes[d]) for d in shape)  # type: ignore[return-value]


def concrete_shapes(shapes: Mapping[str, Shape], sizes: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Every named shape with the family's sizes put in: inference over these is the check of one family."""
    return {name: concrete(shape, sizes) for name, shape in shapes.items()}


@dataclass(frozen=True)
class _Where:
    file: str | None
    key: str | None


def _operand(e: Expr, s: Shape) -> str:
    text = to_text(e)
    if not isinstance(e, (Name, Call, Transpose, Const)):
        text = f"({text})"
    return f"{text} ({format_shape(s)})"


def infer_all(
    expr: Expr,
    shapes: Mapping[str, Shape],
    *,
    file: str | None = None,
    key: str | None = None,
) -> dict[Expr, Shape]:
    """Shape of every sub-expression of ``expr`` (a trace, parents after children).

    A non-conformable expression raises :class:`ShapeError` with the trace up to
    the failing sub-expression, that sub-expression (``node``) and, where one
    single edit makes the whole expression conformable, the fix (``fixes``,
    best first; the first is spelled in the message as "did you mean ...?").
    """
    out: dict[Expr, Shape] = {}
    try:
        _infer(expr, shapes, out, _Where(file, key))
    except ShapeError as exc:
        fixes = suggest_fixes(expr, shapes, failing=getattr(exc, "node", None))
        if not fixes:
            raise
        best = fixes[0]
        err = ShapeError(exc.detail, file=file, key=key, trace=exc.trace, suggestion=to_text(best.by))
        err.node = getattr(exc, "node", None)
        err.fixes = fixes
        raise err from None
    return out


def infer_shape(expr: Expr, shapes: Mapping[str, Shape], *, file: str | None = None, key: str | None = None) -> Shape:
    return infer_all(expr, shapes, file=file, key=key)[expr]


def try_shape(expr: Expr, shapes: Mapping[str, Shape]) -> Shape | None:
    """The shape of ``expr``, or None when it is not conformable (no fix search: cheap)."""
    out: dict[Expr, Shape] = {}
    try:
        return _infer(expr, shapes, out, _Where(None, None))
    except ShapeError:
        return None


# --------------------------------------------------------------------------- fixes

@dataclass(frozen=True)
class Fix:
    """One edit that makes a non-conformable expression conformable.

    ``replace`` is the sub-expression as written, ``by`` what it becomes,
    ``expr`` the whole expression after the edit and ``shape`` its shape.
    ``local`` says the edit is at the failing operation itself.
    """

    replace: Expr
    by: Expr
    expr: Expr
    shape: Shape
    local: bool

    @property
    def description(self) -> str:
        a, b = self.replace, self.by
        if isinstance(a, BinOp) and isinstance(b, BinOp) and (a.left, a.right) == (b.left, b.right) and a.op != b.op:
            names = {"*": "the elementwise product *", "@": "the matrix product @"}
            return f"{names.get(b.op, b.op)} in place of {names.get(a.op, a.op)}: {to_text(b)}"
        return f"{to_text(b)} in place of {to_text(a)}"


Path = tuple[int, ...]


def _nodes(expr: Expr, path: Path = ()) -> list[tuple[Path, Expr]]:
    out = [(path, expr)]
    for i, child in enumerate(expr.children()):
        out.extend(_nodes(child, path + (i,)))
    return out


def replace_at(expr: Expr, path: Path, new: Expr) -> Expr:
    """``expr`` with the node at ``path`` (child indices from the root) replaced by ``new``."""
    if not path:
        return new
    i, rest = path[0], path[1:]
    kids = list(expr.children())
    kids[i] = replace_at(kids[i], rest, new)
    if isinstance(expr, Neg):
        return Neg(kids[0], col=expr.col)
    if isinstance(expr, Pow):
        return Pow(kids[0], expr.exponent, col=expr.col)
    if isinstance(expr, Transpose):
        return Transpose(kids[0], col=expr.col)
    if isinstance(expr, BinOp):
        return BinOp(expr.op, kids[0], kids[1], col=expr.col)
    if isinstance(expr, Call):
        return Call(expr.fn, tuple(kids), expr.axis, col=expr.col)
    raise TypeError(expr)  # pragma: no cover


def toggle_transpose(e: Expr) -> Expr:
    """``X.T`` for ``X``, and ``X`` for ``X.T``."""
    return e.operand if isinstance(e, Transpose) else Transpose(e)


def transpose_candidates(expr: Expr, shapes: Mapping[str, Shape]) -> list[tuple[Path, Expr]]:
    """Operands whose transpose is worth trying: names and transposes that are not 1 x 1 (by position)."""
    out = []
    for path, node in _nodes(expr):
        if isinstance(node, Transpose) or (isinstance(node, Name) and tuple(shapes.get(node.id, (1, 1))) != (1, 1)):
            # skip a Name directly under a Transpose: toggling the Transpose covers it
            out.append((path, node))
    inner = {p + (0,) for p, n in out if isinstance(n, Transpose)}
    return [(p, n) for p, n in out if p not in inner]


def suggest_fixes(expr: Expr, shapes: Mapping[str, Shape], *, expected: Shape | None = None,
                  failing: Expr | None = None, limit: int = 4) -> tuple[Fix, ...]:
    """Single edits that make ``expr`` conformable (and of shape ``expected``, when given), best first.

    Tried: at the failing operation, transposing either operand, swapping the
    operands of a product, and ``@`` for ``*`` or back; anywhere in the tree,
    adding or dropping one transpose; with ``expected``, transposing the whole. Edits at the failing operation rank
    first, then edits of a single name (``W1`` -> ``W1.T``), then the rest.
    Only edits after which the *whole* expression is conformable are kept, so
    a suggestion is never a fix that moves the error elsewhere.
    """
    nodes = _nodes(expr)
    if failing is None:
        out: dict[Expr, Shape] = {}
        try:
            _infer(expr, shapes, out, _Where(None, None))
            if expected is None or out[expr] == tuple(expected):
                return ()
        except ShapeError as exc:
            failing = getattr(exc, "node", None)
    fail_paths = [p for p, n in nodes if failing is not None and n is failing] or \
                 [p for p, n in nodes if failing is not None and n == failing]
    edits: list[tuple[int, Path, Expr, bool]] = []  # (rank, path, replacement, local)
    for fp in fail_paths[:1]:
        node = dict(nodes)[fp]
        if isinstance(node, BinOp):
            left, right = node.left, node.right
            edits.append((0, fp + (1,), toggle_transpose(right), True))
            edits.append((0, fp + (0,), toggle_transpose(left), True))
            if node.op == "@":
                edits.append((1, fp, BinOp("@", right, left, col=node.col), True))
                edits.append((2, fp, BinOp("*", left, right, col=node.col), True))
            elif node.op == "*":
                edits.append((2, fp, BinOp("@", left, right, col=node.col), True))
    if expected is not None:
        edits.append((5, (), toggle_transpose(expr), False))  # the whole result transposed
    for path, node in transpose_candidates(expr, shapes):
        rank = 3 if isinstance(node, (Name, Transpose)) and isinstance(getattr(node, "operand", node), Name) else 4
        edits.append((rank, path, toggle_transpose(node), False))
    found: dict[Expr, tuple[tuple[int, int], Fix]] = {}
    for rank, path, new, local in edits:
        candidate = replace_at(expr, path, new)
        if candidate in found:
            continue
        shape = try_shape(candidate, shapes)
        if shape is None:
            continue
        matches = expected is None or shape == tuple(expected)
        if expected is not None and not matches:
            continue
        original = dict(nodes)[path]
        found[candidate] = ((rank, len(found)), Fix(original, new, candidate, shape, local))
    ranked = sorted(found.values(), key=lambda item: item[0])
    return tuple(fix for _, fix in ranked[:limit])


def _trace(out: Mapping[Expr, Shape]) -> tuple[tuple[str, str], ...]:
    return tuple((to_text(e), format_shape(s)) for e, s in out.items())


def _infer(e: Expr, shapes: Mapping[str, Shape], out: dict[Expr, Shape], where: _Where) -> Shape:
    if e in out:
        return out[e]

    def error(message: str) -> ShapeError:
        exc = ShapeError(f"{message} in {to_text(e)!r}", file=where.file, key=where.key, trace=_trace(out))
        exc.node = e
        return exc

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
                raise error(
                    f"matrix product is not conformable: {_operand(e.left, left)} @ {_operand(e.right, right)}: "
                    f"inner dimensions {left[1]} and {right[0]} differ"
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
        try:
            s = primitive(e.fn).shape(args, e.axis)
        except NotConformable as exc:
            raise error(str(exc)) from None
    else:  # pragma: no cover
        raise TypeError(e)
    out[e] = s
    return s
