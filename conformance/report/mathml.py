"""Expression trees as MathML (MathML Core: rendered natively by Chromium, Firefox and Safari, no script, no fonts).

The structure (symbols, precedence, parentheses) comes from
:class:`conformance.report.notation.Typesetter`; this module only spells it.
Every text is escaped, so a spec's names can never inject markup.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

from conformance.expr import Expr
from conformance.primitives import Form, Notation

from .notation import Symbol, Typesetter, symbol

__all__ = ["MathML", "to_mathml", "identity_mathml"]

_OPS = {"+": "+", "-": "−", "neg": "−", "*": "⊙", "@": "\u2062", "=": "=", ",": ","}
_ACCENT = {"hat": "^", "bar": "¯", "tilde": "~", "dot": "˙"}


class MathML(Typesetter[str]):
    def sym(self, s: Symbol) -> str:
        base = f'<mi mathvariant="normal">{escape(s.base)}</mi>' if s.upright else f"<mi>{escape(s.base)}</mi>"
        if s.accent:
            base = f'<mover accent="true">{base}<mo>{_ACCENT[s.accent]}</mo></mover>'
        if s.sub:
            base = f"<msub>{base}<mn>{escape(s.sub)}</mn></msub>" if s.sub.isdigit() else \
                f'<msub>{base}<mi mathvariant="normal">{escape(s.sub)}</mi></msub>'
        return base

    def number(self, text: str) -> str:
        return f"<mn>{escape(text)}</mn>"

    def op(self, op: str) -> str:
        if op == "neg":
            return '<mo form="prefix">−</mo>'
        return f"<mo>{escape(_OPS[op])}</mo>"

    def row(self, items: Sequence[str]) -> str:
        return "<mrow>" + "".join(items) + "</mrow>"

    def parens(self, inner: str) -> str:
        return f"<mrow><mo>(</mo>{inner}<mo>)</mo></mrow>"

    def frac(self, num: str, den: str) -> str:
        return f"<mfrac>{num}{den}</mfrac>"

    def sup(self, base: str, exponent: str) -> str:
        # W₁ᵀ: a subscripted symbol takes the superscript beside its subscript (msubsup), not after it
        if base.startswith("<msub>") and base.endswith("</msub>") and base.count("<msub>") == 1:
            return "<msubsup>" + base[len("<msub>"):-len("</msub>")] + exponent + "</msubsup>"
        return f"<msup>{base}{exponent}</msup>"

    def transpose_mark(self) -> str:
        return '<mi mathvariant="normal">T</mi>'

    def infix(self, notation: Notation) -> str:
        return f"<mo>{escape(notation.text)}</mo>"

    def function(self, notation: Notation, axis: int | None) -> str:
        text = notation.text
        if notation.form is Form.BIG_OPERATOR:
            name = f'<mo largeop="false" movablelimits="false">{escape(text)}</mo>'
        else:
            name = f"<mi>{escape(text)}</mi>" if len(text) == 1 else f'<mi mathvariant="normal">{escape(text)}</mi>'
        if axis is not None:
            name = f'<msub>{name}<mtext class="axis">axis={axis}</mtext></msub>'
        return name + "<mo>\u2061</mo>"

    def partial(self, of: str) -> str:
        return f"<mrow><mo>∂</mo>{of}</mrow>"


def to_mathml(expr: Expr, *, display: str = "inline") -> str:
    """``<math>`` markup of one expression tree."""
    return _wrap(MathML().expr(expr), display)


def identity_mathml(of: str, wrt: str, expr: Expr, *, display: str = "inline") -> str:
    """``∂of/∂wrt = expr`` as one ``<math>`` element."""
    t = MathML()
    return _wrap(t.equation(t.derivative(of, wrt), t.expr(expr)), display, displaystyle=True)


def definition_mathml(name: str, expr: Expr, *, display: str = "inline") -> str:
    """``name = expr`` (a forward definition)."""
    t = MathML()
    return _wrap(t.equation(t.sym(symbol(name)), t.expr(expr)), display)


def _wrap(inner: str, display: str, *, displaystyle: bool = False) -> str:
    """``displaystyle`` keeps fractions (∂L/∂x) full size in an inline formula."""
    style = ' displaystyle="true"' if displaystyle else ""
    return f'<math display="{display}"{style}>{inner}</math>'
