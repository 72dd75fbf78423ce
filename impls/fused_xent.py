"""Recognise softmax cross-entropy in a spec's forward definitions, for backends with a fused loss.

Users of a framework have two choices for this loss: compose it as written,
``-sum(y * log(softmax(theta, axis=k)))``, or call the library's fused loss
(torch ``F.cross_entropy`` on the logits, ``log_softmax``-based losses in
jax). The two agree in exact arithmetic and differ where the softmax
underflows, which is why both are reported. A fused backend finds the
pattern in the tree (through names: ``log(yhat)`` with
``yhat = softmax(theta, axis=1)``) and puts a private call in its place,
which its :class:`~conformance.expr.Ops` evaluates with the library's loss:

* ``cross_entropy_sum(y, theta, axis=k)``: the pattern summed over every
  entry, a 1 x 1 value (``reduction='sum'``);
* ``cross_entropy(y, theta, axis=k)``: summed along the class axis only, one
  loss per sample (``reduction='none'``), the class axis kept with length 1.

Accepted spellings (``k`` the class axis, ``P`` = ``log(softmax(theta, axis=k))``
or ``log_softmax(theta, axis=k)``, either seen through names, the product in
either order): ``-sum(y * P)``, ``sum(-y * P)``, ``sum(y * -P)``,
``sum(-(y * P))``, each with no axis or ``axis=k``. Anything else is left as
written. It imports only the backend contract.
"""

from __future__ import annotations

from typing import Mapping

from conformance.backend import BinOp, Call, Expr, Model, Name, Neg
from conformance.expr import map_tree

__all__ = ["XENT_SUM", "XENT_PER_SAMPLE", "FUSED_CALLS", "fuse_cross_entropy", "match_cross_entropy"]

XENT_SUM = "cross_entropy_sum"
XENT_PER_SAMPLE = "cross_entropy"
FUSED_CALLS = frozenset({XENT_SUM, XENT_PER_SAMPLE})


def _resolve(e: Expr, definitions: Mapping[str, Expr]) -> Expr:
    seen: set[str] = set()
    while isinstance(e, Name) and e.id in definitions and e.id not in seen:
        seen.add(e.id)
        e = definitions[e.id]
    return e


def _log_probs(e: Expr, definitions: Mapping[str, Expr]) -> tuple[Expr, int] | None:
    """(logits, class axis) when ``e`` is log(softmax(logits)) or log_softmax(logits)."""
    e = _resolve(e, definitions)
    if isinstance(e, Call) and e.fn == "log_softmax" and e.axis is not None:
        return e.args[0], e.axis
    if isinstance(e, Call) and e.fn == "log" and len(e.args) == 1:
        inner = _resolve(e.args[0], definitions)
        if isinstance(inner, Call) and inner.fn == "softmax" and inner.axis is not None:
            return inner.args[0], inner.axis
    return None


def _negated_product(e: Expr, definitions: Mapping[str, Expr]) -> tuple[Expr, Expr, int] | None:
    """(labels, logits, class axis) when ``e`` is -(labels * log-probabilities), the sign anywhere."""
    if isinstance(e, Neg):
        return _product(e.operand, definitions, negated=True)
    return _product(e, definitions, negated=False)


def _product(e: Expr, definitions: Mapping[str, Expr], *, negated: bool) -> tuple[Expr, Expr, int] | None:
    if not (isinstance(e, BinOp) and e.op == "*"):
        return None
    for labels, probs in ((e.left, e.right), (e.right, e.left)):
        sign_flips = 0
        if isinstance(labels, Neg):
            labels, sign_flips = labels.operand, sign_flips + 1
        if isinstance(probs, Neg):
            probs, sign_flips = probs.operand, sign_flips + 1
        if (sign_flips + negated) % 2 != 1:
            continue
        found = _log_probs(probs, definitions)
        if found is not None and _log_probs(labels, definitions) is None:
            return labels, found[0], found[1]
    return None


def match_cross_entropy(e: Expr, definitions: Mapping[str, Expr]) -> Call | None:
    """The fused call that replaces ``e``, or None when ``e`` is not softmax cross-entropy."""
    negated = isinstance(e, Neg)
    core = e.operand if negated else e
    if not (isinstance(core, Call) and core.fn == "sum" and len(core.args) == 1):
        return None
    body = core.args[0]
    found = _product(body, definitions, negated=True) if negated else _negated_product(body, definitions)
    if found is None:
        return None
    labels, logits, axis = found
    if core.axis is None:
        return Call(XENT_SUM, (labels, logits), axis, col=e.col)
    if core.axis == axis:
        return Call(XENT_PER_SAMPLE, (labels, logits), axis, col=e.col)
    return None


def fuse_cross_entropy(model: Model) -> tuple[Model, tuple[str, ...]]:
    """The model with every softmax cross-entropy replaced by a fused call, and the definitions changed."""
    definitions = model.definitions
    changed: list[str] = []
    forward = []
    for name, expr in model.forward:
        new = map_tree(expr, lambda e: match_cross_entropy(e, definitions))
        if new != expr:
            changed.append(name)
        forward.append((name, new))
    fused = Model(model.name, model.layout, model.inputs, tuple(forward), model.loss)
    return fused, tuple(changed)
