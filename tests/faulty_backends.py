"""Deliberately broken backends, one per failure class of conformance.judge.diagnose (test-only).

Each is the numpy backend with one classic mistake, so the diagnosis must name
that mistake. Loaded by target, e.g. ``tests.faulty_backends:SignFlipped``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from conformance.backend import Backend, NotSupported, Request, fuse_log_softmax, interpret
from impls.numpy import NumpyBackend, NumpyOps


class _OneQuantity(NumpyBackend):
    """The numpy backend, with ``corrupt`` applied to the quantities named in ``targets``."""

    targets: tuple[str, ...] = ()

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        """Each subclass spoils the value in its own way; this base class leaves it as it is."""
        return value

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        for qid in self.targets:
            if isinstance(out.get(qid), np.ndarray):
                out[qid] = self.corrupt(out[qid], request)
        return out


class Transposed(_OneQuantity):
    """dL/dW2 returned transposed (d_out x hidden)."""

    name = "faulty-transposed"
    targets = ("dL/dW2",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        return value.T.copy()


class WrongLayout(_OneQuantity):
    """dL/dx returned in the other layout's shape (its transpose)."""

    name = "faulty-wrong-layout"
    targets = ("dL/dx",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        return value.T.copy()


class MeanBias(_OneQuantity):
    """dL/db1 averaged over the batch, though the loss is summed."""

    name = "faulty-mean-bias"
    targets = ("dL/db1",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        n = request.inputs["x"].shape[0 if request.model.layout == "row" else 1]
        return (value / value.dtype.type(n)).astype(value.dtype)


class SignFlipped(_OneQuantity):
    """dL/dtheta with the sign flipped (y - yhat)."""

    name = "faulty-sign"
    targets = ("dL/dtheta",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        return -value


class DiagonalSoftmax(_OneQuantity):
    """The softmax Jacobian taken as its diagonal (softmax treated as elementwise)."""

    name = "faulty-diagonal-softmax"
    targets = ("dyhat/dtheta",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        return np.diag(np.diag(value)).astype(value.dtype)


class Float32Inside(NumpyBackend):
    """Claims float64 but computes everything in float32."""

    name = "faulty-float32"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.dtype != "float64":
            return super().evaluate(request)
        narrow = replace(request, dtype="float32", inputs={k: v.astype(np.float32) for k, v in request.inputs.items()})
        out = dict(super().evaluate(narrow))
        return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in out.items()}


class _Forward(NumpyBackend):
    """The numpy backend with a hook on each forward value (``post(name, value)``)."""

    def post(self, name: str, value: np.ndarray, ops: NumpyOps) -> np.ndarray:
        return value

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        ops = self.make_ops(request.dtype)
        definitions = request.model.definitions
        env = {k: np.asarray(v) for k, v in request.inputs.items()}
        out: dict[str, Any] = {}
        with np.errstate(all="ignore"):
            for name, expr in request.model.forward:
                env[name] = self.post(name, interpret(fuse_log_softmax(expr, definitions), env, ops), ops)
            for q in request.quantities:
                if q.kind == "value":
                    out[q.id] = env[q.of]
                elif q.expr is None:
                    out[q.id] = NotSupported("no closed form")
                else:
                    out[q.id] = interpret(q.expr, env, ops)
        return out

    def make_ops(self, dtype: str) -> NumpyOps:
        return NumpyOps(dtype)


class ClampedLogits(_Forward):
    """Clips the logits to [-30, 30] "for safety": right in the bulk, wrong where logits are large."""

    name = "faulty-clamped-logits"

    def post(self, name: str, value: np.ndarray, ops: NumpyOps) -> np.ndarray:
        return np.clip(value, -30, 30).astype(value.dtype) if name == "theta" else value


class _NaiveSoftmaxOps(NumpyOps):
    def fn_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        e = self._out(np.exp(x))  # no max subtraction: overflows for large logits
        return self._out(e / self._sum(e, axis))


class NaiveSoftmax(_Forward):
    """softmax as exp(x) / sum(exp(x)), without subtracting the maximum: inf / inf = NaN for large logits."""

    name = "faulty-naive-softmax"

    def make_ops(self, dtype: str) -> NumpyOps:
        return _NaiveSoftmaxOps(dtype)


class WrongConvention(_OneQuantity):
    """The Jacobian da/dx in the other convention (W1 instead of W1.T in numerator layout)."""

    name = "faulty-wrong-convention"
    targets = ("da/dx",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        return value.T.copy()


class LayoutSkew(_OneQuantity):
    """dL/dx off by one part in 2**20, in the column layout only (a layout-specific bug)."""

    name = "faulty-layout-skew"
    targets = ("dL/dx",)

    def corrupt(self, value: np.ndarray, request: Request) -> np.ndarray:
        if request.model.layout != "column":
            return value
        return (value * (1 + 2.0 ** -20)).astype(value.dtype)


class NormalizedLabelsAssumed(NumpyBackend):
    """Computes the 'general' dL/dtheta as yhat - y, as if labels always summed to 1: right on normalized labels."""

    name = "faulty-normalized-labels"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        if isinstance(out.get("dL/dtheta.general"), np.ndarray) and "yhat" in out:
            out["dL/dtheta.general"] = (out["yhat"] - request.inputs["y"]).astype(out["yhat"].dtype)
        return out


class AllNaN(NumpyBackend):
    """Returns NaN for everything: consistent with itself, and garbage."""

    name = "faulty-all-nan"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        return {k: (np.full_like(v, np.nan) if isinstance(v, np.ndarray) else v) for k, v in out.items()}


class InputGradientsOnly(Backend):
    """A hand-written backward pass that answers only the gradients of the inputs and parameters (what most
    backward passes return), declining everything else; computed in float64, rounded once to the dtype.
    Correct: dL/dtheta = yhat * sum(y) - y per sample. The control of :class:`YhatMinusYThroughout`."""

    name = "hand-written-input-gradients"
    assumes_normalized_labels = False

    def dtypes(self) -> frozenset[str]:
        return frozenset({"float64", "float32"})

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.model.name != "two_layer_sigmoid_xent":
            raise NotSupported("written for the seed network only")
        column = request.model.layout == "column"
        f = {k: np.asarray(v, dtype=np.float64) for k, v in request.inputs.items()}
        if column:  # the same network transposed: compute in rows
            f = {k: (v if k in ("W1", "W2") else v.T) for k, v in f.items()}
        x, W1, b1, W2, b2, y = (f[k] for k in ("x", "W1", "b1", "W2", "b2", "y"))
        a = x @ W1 + b1
        e = np.exp(-np.abs(a))
        h = np.where(a >= 0, 1 / (1 + e), e / (1 + e))
        theta = h @ W2 + b2
        z = np.exp(theta - theta.max(axis=1, keepdims=True))
        yhat = z / z.sum(axis=1, keepdims=True)
        g = yhat - y if self.assumes_normalized_labels else yhat * y.sum(axis=1, keepdims=True) - y
        da = (g @ W2.T) * (h * (1 - h))
        grads = {"x": da @ W1.T, "W1": x.T @ da, "b1": da.sum(axis=0, keepdims=True), "W2": h.T @ g,
                 "b2": g.sum(axis=0, keepdims=True)}
        out: dict[str, Any] = {}
        for q in request.quantities:
            if q.kind == "gradient" and q.of == "L" and q.wrt in grads:
                v = grads[q.wrt] if not column or q.wrt in ("W1", "W2") else grads[q.wrt].T
                out[q.id] = np.ascontiguousarray(v).astype(request.dtype)
            else:
                out[q.id] = NotSupported("only the gradients of the inputs and parameters are computed")
        return out


class YhatMinusYThroughout(InputGradientsOnly):
    """dL/dtheta = yhat - y throughout the backward pass, as if every label row summed to 1 (the seed's trap):
    right on normalized labels, wrong (relative differences of 0.2 to 56) on labels that do not sum to 1."""

    name = "faulty-yhat-minus-y"
    assumes_normalized_labels = True
