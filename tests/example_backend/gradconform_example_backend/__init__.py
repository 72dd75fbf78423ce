"""A hand-written backward pass of gradconform's seed network, as a gradconform backend.

This is the worked example of docs/backends.md: what the author of a
backward pass (or a fused kernel, or a framework) writes to have it checked.
It imports nothing of gradconform but the backend contract.

The network (spec/two_layer_sigmoid_xent.yaml), in the row layout:

    a = x W1 + b1,  h = sigmoid(a),  theta = h W2 + b2,  yhat = softmax(theta),  L = -sum(y * log(yhat))

and the backward pass written out by hand. The column layout is the same
network transposed, so it is computed in the row layout and transposed back.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from conformance.backend import Backend, NotSupported, Request

__all__ = ["HandWrittenBackprop"]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))  # never overflows
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _log_softmax(t: np.ndarray) -> np.ndarray:
    z = t - t.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _row_layout(x, W1, b1, W2, b2, y) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Forward values, gradients of L and the n = 1 Jacobians, samples as rows."""
    a = x @ W1 + b1
    h = _sigmoid(a)
    theta = h @ W2 + b2
    logp = _log_softmax(theta)
    yhat = np.exp(logp)
    L = -np.sum(y * logp, keepdims=True)
    dtheta = yhat * y.sum(axis=1, keepdims=True) - y  # = yhat - y when each label row sums to 1
    dh = dtheta @ W2.T
    sig_prime = h * (1 - h)
    da = dh * sig_prime
    out = {"a": a, "h": h, "theta": theta, "yhat": yhat, "L": L,
           "grad/theta": dtheta, "grad/h": dh, "grad/a": da, "grad/x": da @ W1.T,
           "grad/W1": x.T @ da, "grad/b1": da.sum(axis=0, keepdims=True),
           "grad/W2": h.T @ dtheta, "grad/b2": dtheta.sum(axis=0, keepdims=True)}
    if x.shape[0] == 1:  # Jacobians of one sample, numerator layout: d out_i / d in_j
        out["jac/h/a"] = np.diag(sig_prime[0])
        out["jac/yhat/theta"] = np.diag(yhat[0]) - yhat.T @ yhat
        out["jac/a/x"] = W1.T
    return out


class HandWrittenBackprop(Backend):
    """The seed network's backward pass, written by hand in numpy."""

    name = "example"
    description = "worked example: a hand-written numpy backward pass of the seed network (float64, float32)"

    def dtypes(self) -> frozenset[str]:
        return frozenset({"float64", "float32"})  # the others are recorded as "not supported"

    def versions(self) -> Mapping[str, str]:
        return {"numpy": np.__version__}

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.model.name != "two_layer_sigmoid_xent":
            raise NotSupported(f"model {request.model.name!r}: this backward pass is written for the seed network")
        if request.dtype not in self.dtypes():
            raise NotSupported(f"dtype {request.dtype}")
        if request.device != "cpu":
            raise NotSupported(f"device {request.device!r}")
        column = request.model.layout == "column"
        inputs = {k: np.asarray(v) for k, v in request.inputs.items()}
        if column:  # same network, transposed: every input but the weights changes orientation
            inputs = {k: (v if k in ("W1", "W2") else v.T) for k, v in inputs.items()}
        computed = _row_layout(**inputs)
        out: dict[str, Any] = {}
        for q in request.quantities:
            if q.kind == "value":
                key = q.of
            elif q.kind == "gradient" and q.of == "L":
                key = f"grad/{q.wrt}"
            elif q.kind == "jacobian":
                key = f"jac/{q.of}/{q.wrt}"
            else:
                key = ""
            if key not in computed:
                out[q.id] = NotSupported(f"{q.kind} {q.id!r} is not computed by this backend")
                continue
            value = computed[key]
            if column and not (q.kind == "gradient" and q.wrt in ("W1", "W2")):
                value = value.T  # back to the column layout; Jacobians to denominator layout
            out[q.id] = value.astype(request.dtype)
        return out
