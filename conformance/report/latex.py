"""Expression trees as LaTeX, for the markdown pages (GitHub renders ``$`...`$`` math with MathJax).

The structure comes from :class:`conformance.report.notation.Typesetter`, the
same as the MathML of the HTML pages; this module only spells it. Names are
restricted by the spec's parser to letters, digits and underscores, so no
LaTeX command can be smuggled in through a spec.
"""

from __future__ import annotations

from typing import Sequence

from conformance.expr import Expr
from conformance.primitives import Notation

from .notation import Symbol, Typesetter, symbol

__all__ = ["LaTeX", "to_latex", "identity_latex", "definition_latex", "inline_math"]

_OPS = {"+": "+", "-": "-", "neg": "-", "*": r"\odot", "@": r"\,", "=": "=", ",": ",\\,"}
_ACCENT = {"hat": r"\hat", "bar": r"\bar", "tilde": r"\tilde", "dot": r"\dot"}


class LaTeX(Typesetter[str]):
    def sym(self, s: Symbol) -> str:
        out = s.latex
        if s.accent:
            out = f"{_ACCENT[s.accent]}{{{out}}}"
        if s.sub:
            out += f"_{{{s.sub}}}" if s.sub.isdigit() else rf"_{{\mathrm{{{s.sub}}}}}"
        return out

    def number(self, text: str) -> str:
        return text

    def op(self, op: str) -> str:
        return _OPS[op]

    def row(self, items: Sequence[str]) -> str:
        out = ""
        for it in items:
            if out and not out.endswith(("{", "(")) and it not in (r"\,",) and not out.endswith(r"\,"):
                out += " "
            out += it
        return out

    def parens(self, inner: str) -> str:
        return rf"\left({inner}\right)"

    def frac(self, num: str, den: str) -> str:
        return rf"\frac{{{num}}}{{{den}}}"

    def sup(self, base: str, exponent: str) -> str:
        if base.endswith("}") and "_{" in base and not base.startswith(r"\left("):
            return f"{base}^{{{exponent}}}"
        return f"{{{base}}}^{{{exponent}}}"

    def transpose_mark(self) -> str:
        return r"\top"

    def infix(self, notation: Notation) -> str:
        return notation.latex

    def function(self, notation: Notation, axis: int | None) -> str:
        name = notation.latex
        if axis is not None:
            name += rf"_{{\text{{axis}}={axis}}}"
        return name

    def apply(self, fn: str, args: str) -> str:
        return fn + args

    def partial(self, of: str) -> str:
        return rf"\partial {of}"


def to_latex(expr: Expr) -> str:
    return LaTeX().expr(expr)


def identity_latex(of: str, wrt: str, expr: Expr) -> str:
    t = LaTeX()
    return t.equation(t.derivative(of, wrt), t.expr(expr))


def definition_latex(name: str, expr: Expr) -> str:
    t = LaTeX()
    return t.equation(t.sym(symbol(name)), t.expr(expr))


def inline_math(latex: str) -> str:
    """GitHub's inline math with backtick delimiters: the markdown parser leaves the LaTeX inside untouched."""
    return f"$`{latex}`$"
