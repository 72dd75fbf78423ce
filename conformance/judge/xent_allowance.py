"""The composed cross-entropy -sum(y * log(softmax(theta))): the errors of differentiating it, beyond the closed forms'.

Reverse mode through log(softmax) divides by the probabilities and multiplies back, and differentiating that
again cancels terms of size y / p: neither is within a constant factor of the closed form's bound, so each is
added explicitly (docs/tolerances.md, "Reverse mode through log(softmax)" and "Second order through
log(softmax)"). :class:`~conformance.judge.bounds.ErrorBounds` recognises the loss and the closed forms these
allowances belong to (``yhat - y``; ``Diag(yhat) - yhat yhat^T`` and the softmax JVP weighted by the label mass
in a Hessian or HVP) with the matchers here. The functions are an extension of ErrorBounds and share its
memo and internals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.expr import BinOp, Call, Expr, Name, Transpose
from conformance.judge.axes import matrix_axis
from conformance.spec.model import Layout

__all__ = ["ComposedXent", "composed_cross_entropy", "is_xent_gradient", "reverse_mode_allowance",
           "is_softmax_jacobian", "hessian_allowance", "hvp_tangent", "hvp_allowance"]

_INF = np.inf

#: (the probabilities' name, their softmax definition, the labels' name)
ComposedXent = tuple[str, Call, str]

#: The :class:`~conformance.judge.bounds.ErrorBounds` of the case (not imported: bounds.py imports this module).
Bounds = Any


def composed_cross_entropy(layout: Layout) -> ComposedXent | None:
    """(probabilities, their softmax definition, labels) when the loss contains ``labels * log(probs)``
    with ``probs = softmax(...)``: the loss whose reverse mode divides by the probabilities."""
    loss = getattr(layout, "loss", None)
    definitions = getattr(layout, "definitions", {})
    if not loss or loss not in definitions:
        return None
    found: list[ComposedXent] = []

    def visit(e: Expr) -> None:
        if isinstance(e, BinOp) and e.op == "*":
            for lab, lg in ((e.left, e.right), (e.right, e.left)):
                if (isinstance(lab, Name) and lab.id not in definitions and isinstance(lg, Call) and lg.fn == "log"
                        and isinstance(lg.args[0], Name)):
                    target = definitions.get(lg.args[0].id)
                    if isinstance(target, Call) and target.fn == "softmax":
                        found.append((lg.args[0].id, target, lab.id))
        for child in e.children():
            visit(child)

    visit(definitions[loss])
    return found[0] if found else None


def is_xent_gradient(xent: ComposedXent, e: BinOp) -> bool:
    """Whether ``e`` is ``yhat - y`` or ``yhat * sum(y, axis=k) - y`` for the loss's softmax and labels."""
    probs, _, labels = xent
    if e.op != "-" or e.right != Name(labels):
        return False
    left = e.left
    if left == Name(probs):
        return True
    return (isinstance(left, BinOp) and left.op == "*" and left.left == Name(probs)
            and isinstance(left.right, Call) and left.right.fn == "sum" and left.right.args == (Name(labels),))


def reverse_mode_allowance(b: Bounds, xent: ComposedXent) -> np.ndarray:
    """The error that reverse mode through the composed loss -sum(y * log(softmax(theta))) adds to
    dL/dtheta = yhat - y, beyond the closed form's.

    Reverse mode computes g = -y / yhat and then the softmax's vector-Jacobian product. torch
    multiplies g by the stored yhat again (yhat * (g - sum(g * yhat))); jax differentiates
    softmax = s / w and multiplies by s_k / w recomputed, which is the stored yhat_k up to that
    value's rounding eps_k. Either way (first order, three further roundings per term)
        |error_k| <= y_k (eps_k + 3u) + yhat_k sum_j y_j (eps_j + 3u),
    eps_j = u + u 2**emin / yhat_j: the relative rounding of a stored probability, normal or
    subnormal (half a subnormal spacing, u 2**emin, is large relatively when yhat_j is tiny). This
    is not within a constant factor of the closed form's bound (it divides by the probabilities),
    so it is added explicitly rather than left to the safety factor. A finite result needs every
    stored probability of the sample to be positive (y / 0 is inf or NaN otherwise), so eps_j is
    at most 1/2 + u, and where some probability is certain to underflow to 0 the reverse mode
    cannot be finite and nothing is added.
    """
    if "allowance" in b._memo:
        return b._memo["allowance"]
    y, yhat, eps, finite_possible, ax_ = stored_probabilities(b, xent)
    u = b.u
    out = y * (eps + 3 * u) + yhat * np.sum(y * (eps + 3 * u), axis=ax_, keepdims=True)
    out = np.where(finite_possible, out, 0.0)
    b._memo["allowance"] = out
    return out


def stored_probabilities(b: Bounds, xent: ComposedXent
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(labels, probabilities, eps, finite_possible, class axis) of the composed cross-entropy, for the
    allowances of differentiating it: eps is the relative rounding of a stored probability, normal or
    subnormal, over the range the probability can take given the logits' error (the lowest value, where
    half a subnormal spacing is largest relatively), at most 1/2 + u; finite_possible says, per sample,
    whether every probability can be positive (otherwise y / yhat is not finite and nothing is allowed)."""
    if "stored" in b._memo:
        return b._memo["stored"]  # type: ignore[return-value]
    probs, softmax, labels = xent
    theta = softmax.args[0]
    ax_ = matrix_axis(softmax.axis)
    y = b._inputs[labels]
    yhat, p, rho, _ = b._softmax_parts(b.value(theta), b.bound(theta), softmax.axis)
    yhat, p = yhat.reshape(y.shape), p.reshape(y.shape)
    rho = np.broadcast_to(rho, p.shape).reshape(y.shape)
    k = y.shape[ax_]
    tiny, u = b.fmt.tiny, b.u
    with np.errstate(all="ignore"):
        lowest = yhat * np.exp(-np.minimum(p, 700.0)) * (1 - np.minimum(rho, 0.5))
        highest = yhat * np.exp(np.minimum(p, 700.0)) * (1 + rho)
        eps = np.minimum(u + u * b.eta / np.maximum(lowest, tiny), 0.5 + u)
    finite_possible = np.all(highest * 2 * k >= tiny / 2, axis=ax_, keepdims=True)
    out = (y, yhat, eps, finite_possible, ax_)
    b._memo["stored"] = out  # type: ignore[assignment]
    return out


def second_order_allowance(b: Bounds, xent: ComposedXent) -> np.ndarray:
    """Per sample, the k x k matrix A (class axes last, shape (n, k, k), after the stack's axes) that differentiating the composed
    cross-entropy -sum(y * log(softmax(theta))) twice adds to its Hessian in theta, w (Diag(p) - p p^T)
    with w = sum(y), beyond the closed form's error (docs/tolerances.md, "Second order through
    log(softmax)").

    Why: a second-order autodiff (double backward, forward over reverse, jax.hessian) differentiates the
    reverse mode r_i = p_i (g_i - S), g = -y / p, S = sum_k g_k p_k, along e_j. With dp_k = p_k (d_kj - p_j)
    the derivative is the sum of four products of stored values,
        T1 + T2 = dp_i g_i + p_i dg_i                       (= 0 exactly, each of size y_i |d_ij - p_j|)
        T3      = -dp_i S                                   (= w p_i (d_ij - p_j): the Hessian itself)
        T4      = -p_i sum_k (dg_k p_k + g_k dp_k)          (= 0 exactly, the k-th pair of size y_k |d_kj - p_j|)
    so the computed Hessian carries the rounding of terms that cancel and that are not within a constant
    factor of the Hessian: for an unlikely labelled class c, T4's error is about u p_i against an entry
    p_i p_c. Each pair mixes up to four occurrences of p_k (a stored or a recomputed probability, within
    eps_k of each other, jax recomputing s / w) and six roundings, S and the sum over k add gamma_k, so
    (first order in u, N_ij = d_ij + p_j >= |dp_i / p_i|, which also covers the rounding of dp itself):
        A_ij = y_i N_ij (4 eps_i + 6u) + p_i sum_k y_k N_kj (4 eps_k + (6 + k) u)
               + p_i N_ij sum_k y_k (2 eps_k + (4 + k) u),
    taken symmetric (max of A_ij and A_ji: a backend may fill its Hessian by rows or by columns). Zero
    where the composed reverse mode cannot be finite, as for first order."""
    if "second" in b._memo:
        return b._memo["second"]
    y, yhat, eps, finite_possible, ax_ = stored_probabilities(b, xent)
    Y, P, E = (np.moveaxis(a, ax_, -1) for a in (y, yhat, eps))  # (..., n, k)
    fin = np.moveaxis(finite_possible, ax_, -1)  # (..., n, 1)
    k, u = Y.shape[-1], b.u
    N = np.eye(k) + P[..., :, None, :]  # N[..., s, i, j] = d_ij + p_j
    t12 = (Y * (4 * E + 6 * u))[..., :, :, None] * N
    t4 = P[..., :, :, None] * np.einsum("...sk,...skj->...sj", Y * (4 * E + (6 + k) * u), N)[..., :, None, :]
    t3 = P[..., :, :, None] * N * np.sum(Y * (2 * E + (4 + k) * u), axis=-1)[..., :, None, None]
    a = t12 + t4 + t3
    a = np.maximum(a, np.swapaxes(a, -1, -2))
    a = np.where(fin[..., :, :, None], a, 0.0)
    b._memo["second"] = a
    return a


def is_softmax_jacobian(xent: ComposedXent, e: BinOp) -> bool:
    """Whether ``e`` is ``Diag(yhat) - yhat.T @ yhat`` (row) or ``Diag(yhat) - yhat @ yhat.T`` (column) of the
    loss's softmax: in a Hessian of the composed loss, the Hessian in theta per unit of label mass."""
    probs = Name(xent[0])
    if e.op != "-" or e.left != Call("Diag", (probs,)):
        return False
    return e.right in (BinOp("@", Transpose(probs), probs), BinOp("@", probs, Transpose(probs)))


def hessian_allowance(b: Bounds, xent: ComposedXent, e: BinOp) -> np.ndarray:
    """The second-order allowance of a Hessian in theta written as ``Diag(yhat) - yhat yhat^T`` (one sample):
    A / w, so that the spec's ``sum(y) * (...)`` carries A; the normalised form (w = 1) carries A itb."""
    a = second_order_allowance(b, xent)
    shape = b.value(e).shape
    if a.shape[-3] != 1 or shape[-2:] != a.shape[-2:]:
        return np.full(shape, _INF)  # a Hessian of several samples at once: not a form this rule knows
    y, _, _, _, ax_ = stored_probabilities(b, xent)
    w = np.sum(y, axis=(-2, -1), keepdims=True)  # the label mass of each case
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w != 0, a[..., 0, :, :] / w, 0.0)


def hvp_tangent(xent: ComposedXent, e: BinOp) -> Expr | None:
    """T when ``e`` is ``sum(y, axis=k) * (yhat * T - yhat * sum(yhat * T, axis=k))`` for the loss's labels and
    softmax: the Hessian in theta applied to a tangent T of theta, per sample (the spec's Hessian-vector
    products chain it down to a and x); else None."""
    probs, softmax, labels = xent
    ax_ = 1 if softmax.axis is None else softmax.axis  # the spec's axis, as written in the expression
    for mass, jvp in ((e.left, e.right), (e.right, e.left)):
        if mass != Call("sum", (Name(labels),), ax_) or not isinstance(jvp, BinOp) or jvp.op != "-":
            continue
        first, second = jvp.left, jvp.right
        if not (isinstance(first, BinOp) and first.op == "*" and first.left == Name(probs)):
            continue
        tangent = first.right
        if second == BinOp("*", Name(probs), Call("sum", (BinOp("*", Name(probs), tangent),), ax_)):
            return tangent
    return None


def hvp_allowance(b: Bounds, xent: ComposedXent, tangent: Expr) -> np.ndarray:
    """The second-order allowance of H T per sample: sum_j A_ij |T_j|, with |T| through its absolute chain
    plus its own error bound (the backend's tangent is the computed one)."""
    _, _, _, _, ax_ = stored_probabilities(b, xent)
    a = second_order_allowance(b, xent)
    t = np.moveaxis(b.absval(tangent) + b.bound(tangent), ax_, -1)  # (..., n, k)
    out = np.einsum("...sij,...sj->...si", a, t)
    return np.moveaxis(out, -1, ax_)
