"""The function primitives of the math language: one frozen record per primitive, the only list of them.

Every module that treats primitives one by one reads this registry instead of
keeping its own table: the parser's whitelist, arity and ``axis`` keyword
(:mod:`conformance.spec.parse`, through :data:`conformance.expr.FUNCTIONS`),
the shape rule (:mod:`conformance.spec.shapes`), which primitives are exact
over the rationals (the oracle's preconditions), the spec's elementary-error
budget key (:mod:`conformance.judge.bounds`) and the typesetting
(:mod:`conformance.report.notation`). Code that cannot be data (each oracle
engine's enclosure and derivative, each error-bound rule, each backend's
framework call) stays with its algebra as a method named after the primitive
(``fn_<name>``); :func:`missing_methods` says which an algebra lacks, and the
tests check every algebra against the registry, so adding a primitive is one
entry here plus the code the tests then ask for.

It is part of the base layer (below :mod:`conformance.expr`) and depends on
nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Sequence, Union

__all__ = [
    "Dim", "Shape", "format_shape", "vector_length", "NotConformable", "ShapeRule",
    "AxisUse", "Form", "Notation", "Primitive", "PRIMITIVES", "primitive", "missing_methods",
]

Dim = Union[str, int]
Shape = tuple[Dim, Dim]


def format_shape(shape: Shape) -> str:
    return f"{shape[0]} x {shape[1]}"


def vector_length(shape: Shape) -> Dim | None:
    """The length of a vector shape (1 x k or k x 1), or None if it is not a vector."""
    r, c = shape
    if r == 1:
        return c
    if c == 1:
        return r
    return None


class NotConformable(ValueError):
    """A shape rule's refusal; the message says why, and the shape checker adds where."""


#: A shape rule: the arguments' shapes and the axis (None when absent) -> the result's shape.
ShapeRule = Callable[[Sequence[Shape], "int | None"], Shape]


def _same_shape(args: Sequence[Shape], axis: int | None) -> Shape:
    """Elementwise, or normalised along an axis: the argument's shape."""
    return args[0]


def _reduction(args: Sequence[Shape], axis: int | None) -> Shape:
    """Reduced along ``axis`` with the axis kept (length 1), or over every entry (1 x 1)."""
    r, c = args[0]
    return (1, 1) if axis is None else ((1, c) if axis == 0 else (r, 1))


def _diag(args: Sequence[Shape], axis: int | None) -> Shape:
    k = vector_length(args[0])
    if k is None:
        raise NotConformable(f"Diag takes a vector (1 x k or k x 1), got {format_shape(args[0])}")
    return (k, k)


def _outer(args: Sequence[Shape], axis: int | None) -> Shape:
    ku, kv = vector_length(args[0]), vector_length(args[1])
    if ku is None or kv is None:
        raise NotConformable(f"outer takes two vectors, got {format_shape(args[0])} and {format_shape(args[1])}")
    return (ku, kv)


class AxisUse(Enum):
    """Whether a call takes the keyword ``axis=0|1``."""

    NONE = "none"
    OPTIONAL = "optional"  # absent: over every entry
    REQUIRED = "required"  # a distribution must say which way it runs


class Form(Enum):
    """How a call is typeset."""

    APPLY = "apply"  # an operator name applied to parenthesised arguments: σ(a), softmax_axis=1(θ)
    BIG_OPERATOR = "big_operator"  # a large operator (∑) applied like a function, parenthesised as an operand
    INFIX = "infix"  # a binary operator between its two arguments: u ⊗ v


@dataclass(frozen=True)
class Notation:
    """The typeset spelling: ``text`` in Unicode (MathML), ``latex`` for the markdown pages."""

    text: str
    latex: str
    form: Form = Form.APPLY


@dataclass(frozen=True)
class Primitive:
    """One function of the math language.

    ``budget`` is the key of the spec's ``tolerance.elementary_error_u`` whose
    ``c u`` the error bound charges to one evaluation of the primitive, or None
    when its rule charges none (its local error is a rounding, a sum's gamma,
    or nothing). ``rational`` marks the primitives exact over the rationals,
    the only ones a precondition may use.
    """

    name: str
    arity: int
    meaning: str
    shape: ShapeRule
    notation: Notation
    axis: AxisUse = AxisUse.NONE
    budget: str | None = None
    rational: bool = False

    @property
    def method(self) -> str:
        """The method an algebra (:class:`conformance.expr.Ops`) implements the primitive with."""
        return f"fn_{self.name}"


def _op(name: str) -> str:
    return rf"\operatorname{{{name}}}"


_ALL = (
    Primitive("sigmoid", 1, "elementwise 1 / (1 + exp(-x))", _same_shape, Notation("σ", r"\sigma"),
              budget="sigmoid"),
    Primitive("tanh", 1, "elementwise hyperbolic tangent", _same_shape, Notation("tanh", r"\tanh"), budget="tanh"),
    Primitive("relu", 1, "elementwise max(x, 0)", _same_shape, Notation("relu", _op("relu"))),
    Primitive("step", 1, "elementwise 1 if x > 0 else 0 (the derivative of relu, 0 at 0)", _same_shape,
              Notation("step", _op("step"))),
    Primitive("exp", 1, "elementwise exponential", _same_shape, Notation("exp", r"\exp"), budget="exp"),
    Primitive("log", 1, "elementwise natural logarithm", _same_shape, Notation("log", r"\log"), budget="log"),
    Primitive("softmax", 1, "exp(x) / sum(exp(x)) along axis (axis required)", _same_shape,
              Notation("softmax", _op("softmax")), AxisUse.REQUIRED, budget="softmax"),
    Primitive("log_softmax", 1, "x - logsumexp(x) along axis (axis required)", _same_shape,
              Notation("log softmax", r"\operatorname{log\,softmax}"), AxisUse.REQUIRED, budget="log_softmax"),
    Primitive("logsumexp", 1, "log(sum(exp(x))) along axis, or over all entries", _reduction,
              Notation("logsumexp", _op("logsumexp")), AxisUse.OPTIONAL, budget="logsumexp"),
    Primitive("sum", 1, "sum along axis (kept as a length-1 axis), or of all entries (1 x 1)", _reduction,
              Notation("∑", r"\sum", Form.BIG_OPERATOR), AxisUse.OPTIONAL, rational=True),
    Primitive("mean", 1, "mean along axis (kept as a length-1 axis), or of all entries (1 x 1)", _reduction,
              Notation("mean", _op("mean")), AxisUse.OPTIONAL, rational=True),
    Primitive("Diag", 1, "k x k diagonal matrix from a 1 x k or k x 1 vector", _diag, Notation("Diag", _op("Diag"))),
    Primitive("outer", 2, "outer product of two vectors, len(u) x len(v)", _outer,
              Notation("⊗", r"\otimes", Form.INFIX)),
)

#: Every primitive by name, in the language's order (the order of the reference documentation).
PRIMITIVES: Mapping[str, Primitive] = MappingProxyType({p.name: p for p in _ALL})


def primitive(name: str) -> Primitive:
    """The record of one primitive (KeyError for a name that is not one: the parser admits no other)."""
    return PRIMITIVES[name]


def missing_methods(algebra: type, names: Iterable[str] | None = None) -> tuple[str, ...]:
    """The primitives (of ``names``, default all) that ``algebra`` has no ``fn_<name>`` method for.

    Why: an algebra that lacks a primitive raises ``UnsupportedPrimitive`` only when a spec uses it;
    checking the class against the registry finds the gap when the primitive is added.
    """
    wanted = PRIMITIVES if names is None else {n: PRIMITIVES[n] for n in names}
    return tuple(n for n, p in wanted.items() if not callable(getattr(algebra, p.method, None)))
