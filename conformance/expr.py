"""The expression tree of the spec's math language, and one generic interpreter.

This module is part of the backend contract: a backend receives the spec's
forward definitions and identities as these trees and interprets them with its
own operations (``interpret(expr, env, ops)``). It depends on nothing but the
standard library and the registry of primitives (:mod:`conformance.primitives`,
base layer too), so a backend never has to import harness internals.

Every value in the language is a 2-D matrix; a scalar is a 1 x 1 matrix that
broadcasts. Reductions keep their dimensions (``sum(X, axis=1)`` is n x 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Callable, Generic, Iterator, Mapping, MutableMapping, TypeVar

from conformance.primitives import PRIMITIVES, AxisUse

__all__ = [
    "Expr",
    "Name",
    "Const",
    "Neg",
    "BinOp",
    "Pow",
    "Transpose",
    "Call",
    "FUNCTIONS",
    "AXIS_FUNCTIONS",
    "AXIS_REQUIRED",
    "Ops",
    "UnsupportedPrimitive",
    "interpret",
    "walk",
    "free_names",
    "to_text",
    "inline",
    "fuse_log_softmax",
    "map_tree",
]

T = TypeVar("T")
_E = TypeVar("_E", bound="Expr")

#: Function primitives of the math language: name -> (number of arguments, one-line meaning).
#: Derived from the registry (:mod:`conformance.primitives`), the one list of them.
FUNCTIONS: Mapping[str, tuple[int, str]] = MappingProxyType(
    {p.name: (p.arity, p.meaning) for p in PRIMITIVES.values()})
#: Functions that accept ``axis=0|1``; softmax and log_softmax require it.
AXIS_FUNCTIONS = frozenset(p.name for p in PRIMITIVES.values() if p.axis is not AxisUse.NONE)
AXIS_REQUIRED = frozenset(p.name for p in PRIMITIVES.values() if p.axis is AxisUse.REQUIRED)

BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}


def _node(cls: type[_E]) -> type[_E]:
    """A frozen dataclass node whose hash and repr are computed once per object.

    Why: the interpreter and the bounds memoise on sub-trees (dicts keyed by
    :class:`Expr`), and the dataclass hash walks the whole sub-tree on every
    lookup, so evaluating a tree cost O(size^2) hash calls (a profile of the
    default suite had 76 million of them). The hash is the dataclass's own, of
    the compared fields only; it is kept in the instance's ``__dict__`` and left
    out of pickling and copying (string hashes differ between processes). The repr is the cache keys' name of a
    sub-tree (conformance.cache), asked for once per bound read: it is kept the same way.
    """
    cls = dataclass(frozen=True)(cls)
    structural = cls.__hash__
    structural_repr = cls.__repr__

    def __hash__(self: Expr) -> int:
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            h = structural(self)  # type: ignore[misc]
            object.__setattr__(self, "_hash", h)
            return h

    def __repr__(self: Expr) -> str:
        try:
            return self.__dict__["_repr"]  # type: ignore[no-any-return]
        except KeyError:
            r = structural_repr(self)  # type: ignore[misc]
            object.__setattr__(self, "_repr", r)
            return r

    cls.__hash__ = __hash__  # type: ignore[method-assign,assignment]
    cls.__repr__ = __repr__  # type: ignore[method-assign,assignment]
    return cls


@dataclass(frozen=True)
class Expr:
    """Base of all nodes. ``col`` is the source column, kept for messages, not compared."""

    def children(self) -> tuple["Expr", ...]:
        return ()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_repr")}


@_node
class Name(Expr):
    id: str
    col: int = field(default=0, compare=False, repr=False)


@_node
class Const(Expr):
    """A numeric literal, kept exact (``1e-7`` is the rational 1/10**7, not a float)."""

    value: Fraction
    text: str = field(default="", compare=False)
    col: int = field(default=0, compare=False, repr=False)


@_node
class Neg(Expr):
    operand: Expr
    col: int = field(default=0, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@_node
class BinOp(Expr):
    op: str  # one of + - * / @
    left: Expr
    right: Expr
    col: int = field(default=0, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@_node
class Pow(Expr):
    base: Expr
    exponent: int  # a non-negative integer literal
    col: int = field(default=0, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.base,)


@_node
class Transpose(Expr):
    operand: Expr
    col: int = field(default=0, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@_node
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]
    axis: int | None = None
    col: int = field(default=0, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args


class UnsupportedPrimitive(NotImplementedError):
    """Raised by an ``Ops`` that does not implement a primitive of the language."""


class Ops(Generic[T]):
    """The operations an algebra provides to :func:`interpret`.

    Subclass and implement what your algebra supports. Functions are looked up
    as ``fn_<name>`` (``fn_sigmoid``, ``fn_Diag``...); functions that take an
    axis receive it as the keyword ``axis`` (``None`` when absent). A missing
    primitive raises :class:`UnsupportedPrimitive`, which the harness records
    as "not supported", never as a pass.
    """

    def const(self, value: Fraction) -> T:
        raise UnsupportedPrimitive("const")

    def neg(self, x: T) -> T:
        raise UnsupportedPrimitive("neg")

    def add(self, x: T, y: T) -> T:
        raise UnsupportedPrimitive("add")

    def sub(self, x: T, y: T) -> T:
        raise UnsupportedPrimitive("sub")

    def mul(self, x: T, y: T) -> T:
        raise UnsupportedPrimitive("mul")

    def div(self, x: T, y: T) -> T:
        raise UnsupportedPrimitive("div")

    def matmul(self, x: T, y: T) -> T:
        raise UnsupportedPrimitive("matmul")

    def pow(self, x: T, n: int) -> T:
        """Integer power; the default is repeated multiplication (left to right)."""
        if n == 0:
            return self.add(self.sub(x, x), self.const(Fraction(1)))
        out = x
        for _ in range(n - 1):
            out = self.mul(out, x)
        return out

    def transpose(self, x: T) -> T:
        raise UnsupportedPrimitive("transpose")

    def call(self, fn: str, args: tuple[T, ...], axis: int | None) -> T:
        method: Callable[..., T] | None = getattr(self, f"fn_{fn}", None)
        if method is None:
            raise UnsupportedPrimitive(fn)
        if fn in AXIS_FUNCTIONS:
            return method(*args, axis=axis)
        return method(*args)


def interpret(
    expr: Expr,
    env: Mapping[str, T],
    ops: Ops[T],
    cache: MutableMapping[Expr, T] | None = None,
) -> T:
    """Evaluate ``expr`` with the values in ``env`` using ``ops``.

    ``cache`` (keyed by structurally equal sub-trees) lets one evaluation share
    common sub-expressions, and lets a caller read every intermediate value.
    """
    if cache is not None and expr in cache:
        return cache[expr]
    if isinstance(expr, Name):
        try:
            out = env[expr.id]
        except KeyError:
            raise KeyError(f"no value bound to name {expr.id!r}") from None
    elif isinstance(expr, Const):
        out = ops.const(expr.value)
    elif isinstance(expr, Neg):
        out = ops.neg(interpret(expr.operand, env, ops, cache))
    elif isinstance(expr, BinOp):
        left = interpret(expr.left, env, ops, cache)
        right = interpret(expr.right, env, ops, cache)
        out = getattr(ops, BINARY_OPS[expr.op])(left, right)
    elif isinstance(expr, Pow):
        out = ops.pow(interpret(expr.base, env, ops, cache), expr.exponent)
    elif isinstance(expr, Transpose):
        out = ops.transpose(interpret(expr.operand, env, ops, cache))
    elif isinstance(expr, Call):
        args = tuple(interpret(a, env, ops, cache) for a in expr.args)
        out = ops.call(expr.fn, args, expr.axis)
    else:  # pragma: no cover - the parser builds no other node
        raise TypeError(f"not an expression node: {expr!r}")
    if cache is not None:
        cache[expr] = out
    return out


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of the tree, parents before children."""
    yield expr
    for child in expr.children():
        yield from walk(child)


def free_names(expr: Expr) -> frozenset[str]:
    return frozenset(node.id for node in walk(expr) if isinstance(node, Name))


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2}


def to_text(expr: Expr) -> str:
    """Render a tree back to the math language with only the parentheses it needs.

    Precedence follows Python: ``.T`` and ``**`` bind tightest, then unary minus,
    then ``* / @`` (left-associative), then ``+ -``.
    """

    def atom(e: Expr) -> str:
        s = go(e, 0)
        plain = isinstance(e, (Name, Call, Transpose)) or (isinstance(e, Const) and e.value >= 0 and "." not in s)
        return s if plain else f"({s})"

    def go(e: Expr, parent: int, right_side: bool = False) -> str:
        if isinstance(e, Name):
            return e.id
        if isinstance(e, Const):
            return e.text or _fraction_text(e.value)
        if isinstance(e, Transpose):
            return f"{atom(e.operand)}.T"
        if isinstance(e, Pow):
            return f"{atom(e.base)}**{e.exponent}"
        if isinstance(e, Neg):
            return f"-{go(e.operand, 3)}"
        if isinstance(e, BinOp):
            p = _PREC[e.op]
            left = go(e.left, p)
            # ``A @ B * C`` is legal and left-associative, but people misread a
            # mix of ``@`` with ``*`` or ``/``: parenthesise the left operand.
            if isinstance(e.left, BinOp) and _PREC[e.left.op] == p == 2 and (e.left.op == "@") != (e.op == "@"):
                left = f"({left})"
            s = f"{left} {e.op} {go(e.right, p, True)}"
            need = p < parent or (p == parent and right_side)
            return f"({s})" if need else s
        if isinstance(e, Call):
            args = ", ".join(go(a, 0) for a in e.args)
            if e.axis is not None:
                args += f", axis={e.axis}"
            return f"{e.fn}({args})"
        raise TypeError(f"not an expression node: {e!r}")

    return go(expr, 0)


def _fraction_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def map_tree(expr: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Rebuild ``expr`` bottom-up, replacing a node wherever ``fn`` returns a new one."""
    if isinstance(expr, Neg):
        expr = Neg(map_tree(expr.operand, fn), col=expr.col)
    elif isinstance(expr, BinOp):
        expr = BinOp(expr.op, map_tree(expr.left, fn), map_tree(expr.right, fn), col=expr.col)
    elif isinstance(expr, Pow):
        expr = Pow(map_tree(expr.base, fn), expr.exponent, col=expr.col)
    elif isinstance(expr, Transpose):
        expr = Transpose(map_tree(expr.operand, fn), col=expr.col)
    elif isinstance(expr, Call):
        expr = Call(expr.fn, tuple(map_tree(a, fn) for a in expr.args), expr.axis, col=expr.col)
    replaced = fn(expr)
    return expr if replaced is None else replaced


def inline(expr: Expr, definitions: Mapping[str, Expr]) -> Expr:
    """Substitute named definitions into ``expr``, transitively."""

    def sub(e: Expr) -> Expr | None:
        if isinstance(e, Name) and e.id in definitions:
            return inline(definitions[e.id], definitions)
        return None

    return map_tree(expr, sub)


def fuse_log_softmax(expr: Expr, definitions: Mapping[str, Expr] | None = None) -> Expr:
    """Rewrite ``log(softmax(X, axis=k))`` into ``log_softmax(X, axis=k)``.

    This is the rewrite a careful implementer makes, and what fused library
    losses do: the same value in exact arithmetic, but it stays finite where
    the softmax underflows. ``definitions`` lets the pattern be seen through a
    name (``log(yhat)`` with ``yhat = softmax(theta, axis=1)``).
    """
    definitions = definitions or {}

    def fuse(e: Expr) -> Expr | None:
        if isinstance(e, Call) and e.fn == "log" and len(e.args) == 1:
            arg = e.args[0]
            target = definitions.get(arg.id, arg) if isinstance(arg, Name) else arg
            if isinstance(target, Call) and target.fn == "softmax":
                return Call("log_softmax", target.args, target.axis, col=e.col)
        return None

    return map_tree(expr, fuse)


