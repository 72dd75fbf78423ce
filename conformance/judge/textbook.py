"""Less accurate textbook formulas of a primitive, and whether a failing result is what one of them gives.

Some primitives have a textbook formula that is mathematically equal and
numerically worse in one tail: ``sigmoid(a) = 0.5 * (1 + tanh(a / 2))`` loses
its relative accuracy for a << 0, where ``1 + tanh(a/2)`` cancels (the result
keeps an absolute error of about one unit roundoff while sigmoid(a) itself is
tiny). A backend built that way fails there, in float64 as in bfloat16, and a
diagnosis that says only "unexplained" sends its author looking for a bug in
the backward pass.

The test is the same principle as the verdict's: the spec's forward pass with
the primitive replaced by the textbook formula has its own running error
bound (:class:`conformance.judge.bounds.ErrorBounds`, on interval values of
the rewritten forward pass); a result that is out of the primitive's bound but
within the textbook formula's bound, where that bound is larger, is diagnosed
as that formula, with the tail where it breaks. Being within a larger bound
alone proves little, so the signature is required too: the components that
fail are all ones where the textbook bound is at least twice the primitive's,
and the case reaches the formula's bad tail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from conformance.expr import Call, Expr, Name, free_names, inline, map_tree, walk
from conformance.formats import get_format
from conformance.judge.bounds import ErrorBounds
from conformance.oracle.ivalues import IntervalEnv
from conformance.spec.model import Layout, Spec
from conformance.spec.parse import parse_expr

__all__ = ["Textbook", "TEXTBOOK", "TextbookMatch", "textbook_match"]


@dataclass(frozen=True)
class Textbook:
    """A textbook formula of ``primitive`` (in terms of its argument ``X``) and the tail where it is worse."""

    primitive: str
    formula: str
    tail_sign: int  # -1: the negative tail of the argument, +1: the positive one
    why: str


#: The textbook formulas the diagnosis knows, by primitive.
TEXTBOOK: Mapping[str, tuple[Textbook, ...]] = {
    "sigmoid": (
        Textbook("sigmoid", "0.5 * (1 + tanh(X / 2))", -1,
                 "1 + tanh(a/2) cancels for a << 0: the result keeps an absolute error of about one unit "
                 "roundoff while sigmoid(a) is tiny (sigmoid(a) = exp(-|a|) / (1 + exp(-|a|)) there is accurate)"),
        Textbook("sigmoid", "1 - 1 / (1 + exp(X))", -1,
                 "1 - sigmoid(-a) cancels for a << 0 (sigmoid(-a) is next to 1)"),
    ),
}


@dataclass(frozen=True)
class TextbookMatch:
    textbook: Textbook
    argument_range: tuple[float, float]  # (min, max) over the case of the primitive's argument
    failing: int
    #: the other formulas of the primitive whose bound explains the result as well: the bounds cannot tell them
    #: from ``textbook`` on this case (1 - sigmoid(-a) and the tanh formula both round to 0 deep in the tail)
    alternatives: tuple[Textbook, ...] = ()


def _rewrite(expr: Expr, textbook: Textbook) -> Expr:
    template = parse_expr(textbook.formula, names={"X"})

    def sub(e: Expr) -> Expr | None:
        if isinstance(e, Call) and e.fn == textbook.primitive and len(e.args) == 1:
            arg = e.args[0]
            return map_tree(template, lambda t: arg if isinstance(t, Name) and t.id == "X" else None)
        return None

    return map_tree(expr, sub)


def _uses(layout: Layout, expr: Expr, primitive: str) -> list[Expr]:
    """The arguments of ``primitive`` calls that ``expr`` depends on, through the forward definitions."""
    full = inline(expr, layout.definitions)
    return [e.args[0] for e in walk(full) if isinstance(e, Call) and e.fn == primitive and len(e.args) == 1]


def textbook_match(spec: Spec, layout: Layout, inputs: Mapping[str, np.ndarray], dtype: str, expr: Expr,
                   got: np.ndarray, exact_hi: np.ndarray, allowed: np.ndarray,
                   cache: dict[Textbook, tuple[Layout, IntervalEnv]] | None = None) -> TextbookMatch | None:
    """The textbook formula whose bound explains the failing ``got`` of ``expr`` (see the module doc), or None.
    ``cache``: the rewritten forward passes of one case, shared between its quantities."""
    cache = {} if cache is None else cache
    tol = spec.tolerance
    fmt = get_format(dtype)
    err = np.abs(np.asarray(got, dtype=np.float64) - exact_hi)
    failing = err > allowed
    if not failing.any() or not np.all(np.isfinite(got)):
        return None
    for primitive, books in TEXTBOOK.items():
        args = _uses(layout, expr, primitive)
        if not args:
            continue
        found: list[TextbookMatch] = []
        for book in books:
            target = _rewrite(expr, book)  # the quantity itself may call the primitive (the forward value h)
            try:
                if book not in cache:
                    forward = tuple(replace(d, expr=_rewrite(d.expr, book)) for d in layout.forward)
                    rewritten = replace(layout, forward=forward)
                    cache[book] = (rewritten, IntervalEnv(rewritten, inputs))
                rewritten, env = cache[book]
                if env.approx(target) is None:
                    continue
                arg_values = [env.approx(a) for a in args if free_names(a) <= set(inputs) | set(layout.definitions)]
                bounds = ErrorBounds(rewritten, env.nodes(), inputs, dtype, tol)
                alt = tol.safety_factor * bounds.bound(target) + fmt.eta
            except Exception:  # a formula the bounds or the intervals cannot take: no diagnosis from it
                continue
            alt = np.broadcast_to(alt, err.shape)
            if np.all(np.isfinite(alt)) and np.all(err <= alt) and np.all(alt[failing] >= 2 * allowed[failing]):
                vals = np.concatenate([np.ravel(v) for v in arg_values if v is not None]) if arg_values else None
                rng = (float(vals.min()), float(vals.max())) if vals is not None and vals.size else (0.0, 0.0)
                if (book.tail_sign < 0 and rng[0] >= 0) or (book.tail_sign > 0 and rng[1] <= 0):
                    continue  # the case never reaches the tail where the formula is worse
                found.append(TextbookMatch(book, rng, int(failing.sum())))
        if found:  # the first in TEXTBOOK order, naming the others that fit as well (never a guess between them)
            return replace(found[0], alternatives=tuple(m.textbook for m in found[1:]))
    return None
