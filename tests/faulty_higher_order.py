"""Backends wrong in forward mode or at second order only (test-only): their first-order results are right.

Each is a classic mistake that first-order checks cannot see:

* :class:`DiagonalHessian` (numpy): the Hessian of softmax cross-entropy taken as its diagonal;
* :class:`ElementwiseSoftmaxJvp` (torch-composed, so that the loss goes through softmax too): a custom softmax whose forward-mode rule is elementwise,
  t * y * (1 - y), while its reverse-mode rule is right; JVPs come from ``torch.autograd.forward_ad``;
* :class:`DetachedSigmoidDerivative` (torch-composed): a custom sigmoid whose backward multiplies by s (1 - s) with
  ``s`` saved detached, so double backward (``create_graph=True``) loses sigma''; Hessians and HVPs come
  from double backward, as hand-written second-order code computes them;
* :class:`FirstOrderOnly`: a backend written for contract 1.0 (no ``quantity_kinds``), which must never
  be asked for the new kinds.

Loaded by target, e.g. ``tests.faulty_higher_order:DiagonalHessian``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from conformance.backend import FIRST_ORDER_KINDS, Quantity, Request
from impls.forward_graph import evaluate_downstream
from impls.numpy import NumpyBackend
from impls.torch import TorchComposedBackend, TorchOps

try:
    import torch
    import torch.autograd.forward_ad as fwAD
except ImportError:  # the torch-based ones report themselves unavailable
    torch = None  # type: ignore[assignment]


class DiagonalHessian(NumpyBackend):
    """numpy's closed forms, with every Hessian's off-diagonal entries dropped."""

    name = "faulty-diagonal-hessian"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        for q in request.quantities:
            if q.kind == "hessian" and isinstance(out.get(q.id), np.ndarray):
                out[q.id] = np.diag(np.diag(out[q.id])).astype(out[q.id].dtype)
        return out


if torch is not None:
    class _ElementwiseJvpSoftmax(torch.autograd.Function):
        """softmax with a right backward and a wrong (elementwise) forward-mode rule."""

        @staticmethod
        def forward(ctx: Any, x: "torch.Tensor", dim: int) -> "torch.Tensor":
            y = torch.softmax(x, dim=dim)
            ctx.save_for_backward(y)
            ctx.save_for_forward(y)
            ctx.dim = dim
            return y

        @staticmethod
        def backward(ctx: Any, g: "torch.Tensor") -> tuple["torch.Tensor", None]:
            (y,) = ctx.saved_tensors
            return y * (g - (g * y).sum(ctx.dim, keepdim=True)), None

        @staticmethod
        def jvp(ctx: Any, t: "torch.Tensor", _: Any) -> "torch.Tensor":
            (y,) = ctx.saved_tensors
            return t * y * (1 - y)  # the mistake: softmax's Jacobian taken as its diagonal

    class _DetachedSigmoid(torch.autograd.Function):
        """sigmoid whose derivative is built from a detached output: right once, wrong when differentiated."""

        @staticmethod
        def forward(ctx: Any, x: "torch.Tensor") -> "torch.Tensor":
            s = torch.sigmoid(x)
            ctx.save_for_backward(s.detach())
            return s

        @staticmethod
        def backward(ctx: Any, g: "torch.Tensor") -> "torch.Tensor":
            (s,) = ctx.saved_tensors
            return g * (s * (1 - s))  # s is a constant here: double backward sees no sigma''


class _ElementwiseJvpOps(TorchOps):
    def fn_softmax(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        return _ElementwiseJvpSoftmax.apply(x, -1 if axis is None else axis)


class _DetachedSigmoidOps(TorchOps):
    def fn_sigmoid(self, x: "torch.Tensor") -> "torch.Tensor":
        return _DetachedSigmoid.apply(x)


class ElementwiseSoftmaxJvp(TorchComposedBackend):
    """torch, with JVPs by forward-mode AD through a softmax whose forward-mode rule is elementwise."""

    name = "faulty-elementwise-softmax-jvp"

    def _higher_order(self, model: Any, q: Quantity, env: Mapping[str, Any], ops: TorchOps) -> Any:
        if q.kind != "jvp":
            return super()._higher_order(model, q, env, ops)
        fn = evaluate_downstream(model, q.wrt, q.of, env, _ElementwiseJvpOps(ops.dtype, ops.device))
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(env[q.wrt], env[q.direction]))
            tangent = fwAD.unpack_dual(out).tangent
        return tangent if tangent is not None else torch.zeros_like(out)


class DetachedSigmoidDerivative(TorchComposedBackend):
    """torch, with Hessians and HVPs by double backward through a sigmoid whose derivative is detached."""

    name = "faulty-detached-sigmoid-derivative"

    def _higher_order(self, model: Any, q: Quantity, env: Mapping[str, Any], ops: TorchOps) -> Any:
        if q.kind not in ("hessian", "hvp"):
            return super()._higher_order(model, q, env, ops)
        fn = evaluate_downstream(model, q.wrt, q.of, env, _DetachedSigmoidOps(ops.dtype, ops.device))
        w = env[q.wrt].detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fn(w).reshape(()), w, create_graph=True)
            if q.kind == "hvp":
                (hv,) = torch.autograd.grad(g, w, grad_outputs=env[q.direction], allow_unused=True)
                return hv if hv is not None else torch.zeros_like(w)
            flat = g.reshape(-1)
            rows = [torch.autograd.grad(flat[i], w, retain_graph=True, allow_unused=True)[0] for i in range(flat.numel())]
        return torch.stack([r.reshape(-1) if r is not None else torch.zeros(w.numel(), dtype=w.dtype)
                            for r in rows])


class FirstOrderOnly:
    """A backend of contract 1.0 (duck-typed, no ``quantity_kinds``): numpy's answers, and a loud error if it
    is ever asked for a kind that contract did not have."""

    name = "first-order-only"
    description = "numpy's closed forms, written before forward mode and second order were in the contract"

    def __init__(self) -> None:
        self._numpy = NumpyBackend()

    def dtypes(self) -> frozenset[str]:
        return frozenset({"float64", "float32"})

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        unknown = sorted({q.kind for q in request.quantities} - FIRST_ORDER_KINDS)
        if unknown:
            raise RuntimeError(f"asked for kinds contract 1.0 does not have: {', '.join(unknown)}")
        return self._numpy.evaluate(request)
