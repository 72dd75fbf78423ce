"""How the spec's expression trees are written as mathematics: symbols, operators, parentheses.

The spec's math language is ASCII (``((yhat - y) @ W2.T) * (h - h*h) @ W1.T``);
a report shows it the way a paper would: ŷ for ``yhat``, W₁ for ``W1``, ⊙ for
the elementwise product, juxtaposition for the matrix product, ᵀ for the
transpose, σ for the sigmoid. This module owns those choices (each
function's spelling comes from its record in :mod:`conformance.primitives`)
and the precedence rules that decide where parentheses go; :mod:`.mathml` and
:mod:`.latex` only spell the result in their markup, so the HTML page and the
markdown page cannot disagree about what a formula says.

Parentheses follow :func:`conformance.expr.to_text`: every grouping the spec's
tree has that precedence would not imply is shown, so the typeset formula has
the same evaluation order (and the same rounding) as the one the harness
checked.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Generic, Sequence, TypeVar

from conformance.expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose
from conformance.primitives import Form, Notation, primitive

__all__ = ["Symbol", "symbol", "Typesetter", "GREEK"]

M = TypeVar("M")

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ", "eta": "η", "theta": "θ",
    "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ",
    "Psi": "Ψ", "Omega": "Ω",
}

_NAME = re.compile(r"^(?P<base>[A-Za-z]+?)(?P<accent>hat|bar|tilde|dot)?(?:_?(?P<sub>\d+|_[A-Za-z0-9]+))?$")


@dataclass(frozen=True)
class Symbol:
    """A variable as typeset: a base (one letter, a Greek letter or an upright word), an accent, a subscript."""

    base: str
    latex: str
    upright: bool = False
    accent: str = ""
    sub: str = ""


def symbol(name: str) -> Symbol:
    """``yhat`` -> ŷ, ``W1`` -> W₁, ``theta`` -> θ, ``x_in`` -> x with subscript "in"; other words stay upright."""
    m = _NAME.match(name)
    base, accent, sub = name, "", ""
    if m and (len(m["base"]) == 1 or m["base"] in GREEK):
        base, accent, sub = m["base"], m["accent"] or "", (m["sub"] or "").lstrip("_")
    elif "_" in name and not name.startswith("_"):
        base, _, sub = name.partition("_")
    if base in GREEK:
        return Symbol(GREEK[base], "\\" + base, accent=accent, sub=sub)
    upright = len(base) > 1
    latex = rf"\mathrm{{{base}}}" if upright else base
    return Symbol(base, latex, upright=upright, accent=accent, sub=sub)


# precedence: sums 1, products 2, unary minus 3, postfix (power, transpose) 4, atoms 5
_PREC = {"+": 1, "-": 1, "*": 2, "/": 5, "@": 2}


class Typesetter(ABC, Generic[M]):
    """Walks an expression tree and asks a markup (MathML, LaTeX) for each construct."""

    # ------------------------------------------------------------ markup primitives
    @abstractmethod
    def sym(self, s: Symbol) -> M: ...

    @abstractmethod
    def number(self, text: str) -> M: ...

    @abstractmethod
    def op(self, op: str) -> M:
        """An operator: '+', '-' (binary minus), 'neg' (unary minus), '*' (Hadamard), '@' (matrix product),
        '=', ','."""

    @abstractmethod
    def infix(self, notation: Notation) -> M:
        """The operator of a primitive written between its two arguments (⊗ for ``outer``)."""

    @abstractmethod
    def row(self, items: Sequence[M]) -> M: ...

    @abstractmethod
    def parens(self, inner: M) -> M: ...

    @abstractmethod
    def frac(self, num: M, den: M) -> M: ...

    @abstractmethod
    def sup(self, base: M, exponent: M) -> M: ...

    @abstractmethod
    def transpose_mark(self) -> M: ...

    @abstractmethod
    def function(self, notation: Notation, axis: int | None) -> M:
        """The operator name of a call (σ, softmax, ∑...), with its axis as a subscript when there is one."""

    def apply(self, fn: M, args: M) -> M:
        """A function name followed by its parenthesised arguments."""
        return self.row([fn, args])

    @abstractmethod
    def partial(self, of: M) -> M:
        """∂ followed by a symbol."""

    # ------------------------------------------------------------ the walk
    def expr(self, e: Expr) -> M:
        return self._go(e, 0)

    def derivative(self, of: str, wrt: str) -> M:
        """∂of/∂wrt, the left-hand side of an identity."""
        return self.frac(self.partial(self.sym(symbol(of))), self.partial(self.sym(symbol(wrt))))

    def equation(self, lhs: M, rhs: M) -> M:
        return self.row([lhs, self.op("="), rhs])

    def _atomic(self, e: Expr) -> M:
        """``e`` as an operand of a postfix operator (power, transpose): parenthesised unless it is an atom."""
        inner = self._go(e, 0)
        if isinstance(e, (Name, Transpose)) or (
                isinstance(e, Call) and primitive(e.fn).notation.form is not Form.BIG_OPERATOR) or (
                isinstance(e, Const) and e.value >= 0 and e.value.denominator == 1):
            return inner
        return self.parens(inner)

    def _go(self, e: Expr, parent: int, right_side: bool = False) -> M:
        if isinstance(e, Name):
            return self.sym(symbol(e.id))
        if isinstance(e, Const):
            return self._const(e)
        if isinstance(e, Transpose):
            return self.sup(self._atomic(e.operand), self.transpose_mark())
        if isinstance(e, Pow):
            return self.sup(self._atomic(e.base), self.number(str(e.exponent)))
        if isinstance(e, Neg):
            out = self.row([self.op("neg"), self._go(e.operand, 3)])
            return self.parens(out) if parent > 3 else out
        if isinstance(e, BinOp):
            if e.op == "/":
                return self.frac(self._go(e.left, 0), self._go(e.right, 0))
            p = _PREC[e.op]
            left = self._go(e.left, p)
            if isinstance(e.left, BinOp) and _PREC[e.left.op] == p == 2 and (e.left.op == "@") != (e.op == "@"):
                left = self.parens(left)
            right = self._go(e.right, p, True)
            out = self.row([left, self.op(e.op), right])
            need = p < parent or (p == parent and right_side)
            return self.parens(out) if need else out
        if isinstance(e, Call):
            notation = primitive(e.fn).notation
            if notation.form is Form.INFIX and len(e.args) == 2:
                out = self.row([self._go(e.args[0], 2), self.infix(notation), self._go(e.args[1], 2, True)])
                return self.parens(out) if parent >= 2 else out
            args: list[M] = []
            for i, a in enumerate(e.args):
                if i:
                    args.append(self.op(","))
                args.append(self._go(a, 0))
            return self.apply(self.function(notation, e.axis), self.parens(self.row(args)))
        raise TypeError(f"not an expression node: {e!r}")

    def _const(self, c: Const) -> M:
        v: Fraction = c.value
        if v.denominator == 1:
            return self.number(str(v.numerator))
        if c.text and not re.fullmatch(r"\d+/\d+", c.text):
            return self.number(c.text)
        return self.frac(self.number(str(v.numerator)), self.number(str(v.denominator)))
