"""The torch backends: torch's own autograd over the spec's forward definitions.

What is tested is what a torch user's code does. The forward definitions
(the spec's expression trees) are interpreted with torch operations, the
library's own careful primitives where it has them (``torch.sigmoid``,
``torch.softmax``, ``torch.log_softmax``, ``torch.logsumexp``), and every
derivative comes from torch's autodiff, never from the spec's closed forms:

* gradients in reverse mode, ``torch.autograd.grad`` of the scalar ``of``
  with respect to the input leaves *and* the retained intermediate tensors
  (``theta``, ``h``, ``a``), all in one backward pass per ``of``;
* Jacobians with ``torch.autograd.functional.jacobian`` of the function
  ``wrt -> of`` (the forward definitions after ``wrt``, re-interpreted),
  flattened to (len(of), len(wrt)) in numerator layout and transposed for
  denominator layout, as the quantity states;
* forward mode and second order with ``torch.func`` over the same slice
  ``wrt -> of``: ``jvp`` (forward-mode AD), ``vjp``, ``hessian``
  (``torch.func.hessian``: forward over reverse) and ``hvp``
  (``torch.func.jvp`` of ``torch.func.grad``).

Two variants, because users have two choices for the loss (the naming rule
of every built-in: the plain name is the stable form, ``-composed`` the
formula as written):

* ``torch``: softmax cross-entropy recognised in the tree and computed
  by ``F.cross_entropy(logits, probability targets, reduction='sum')`` (the
  class axis moved last for the column layout). A loss without that pattern
  is evaluated as written. (Formerly ``torch-fused``, still accepted.)
* ``torch-composed``: the loss exactly as written, ``-sum(y * log(softmax(theta)))``,
  so autograd goes through ``log`` of a probability that can underflow.

dtypes float16, bfloat16, float32 and float64, on the CPU or on a CUDA
device (``--device cuda``). Results come back as numpy arrays of exactly
the requested dtype (bfloat16 as ``ml_dtypes.bfloat16``, bit for bit).
It imports only the backend contract from the harness; a machine without
torch sees the backends as unavailable, with the reason.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from conformance.backend import DTYPES, QUANTITY_KINDS, Backend, Model, NotSupported, Ops, Quantity, Request, \
    UnsupportedPrimitive, interpret
from impls.forward_graph import depends_on, evaluate_downstream
from impls.fused_xent import XENT_PER_SAMPLE, XENT_SUM, fuse_cross_entropy

try:
    import torch
    import torch.nn.functional as F

    _IMPORT_ERROR: BaseException | None = None
except Exception as exc:  # not installed, or a broken install (a missing shared library...)
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

__all__ = ["TorchBackend", "TorchComposedBackend", "TorchFusedBackend", "TorchOps"]


def _torch_dtype(name: str) -> "torch.dtype":
    return {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[name]


class TorchOps(Ops["torch.Tensor"]):
    """The math language's primitives as torch operations, at one dtype on one device."""

    def __init__(self, dtype: "torch.dtype", device: "torch.device") -> None:
        self.dtype = dtype
        self.device = device

    def const(self, value: Fraction) -> "torch.Tensor":
        return torch.full((1, 1), float(value), dtype=self.dtype, device=self.device)

    def neg(self, x: "torch.Tensor") -> "torch.Tensor":
        return -x

    def add(self, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        return x + y

    def sub(self, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        return x - y

    def mul(self, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        return x * y

    def div(self, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        return x / y

    def matmul(self, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        return x @ y

    def pow(self, x: "torch.Tensor", n: int) -> "torch.Tensor":
        return x ** n

    def transpose(self, x: "torch.Tensor") -> "torch.Tensor":
        return x.mT

    def call(self, fn: str, args: tuple["torch.Tensor", ...], axis: int | None) -> "torch.Tensor":
        if fn in (XENT_SUM, XENT_PER_SAMPLE):
            return self.cross_entropy(*args, axis=axis, per_sample=fn == XENT_PER_SAMPLE)
        return super().call(fn, args, axis)

    # ---------------------------------------------------------------- functions
    def fn_sum(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        return torch.sum(x).reshape(1, 1) if axis is None else torch.sum(x, dim=axis, keepdim=True)

    def fn_mean(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        return torch.mean(x).reshape(1, 1) if axis is None else torch.mean(x, dim=axis, keepdim=True)

    def fn_exp(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.exp(x)

    def fn_log(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.log(x)

    def fn_tanh(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.tanh(x)

    def fn_relu(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.relu(x)

    def fn_step(self, x: "torch.Tensor") -> "torch.Tensor":
        return (x > 0).to(x.dtype)

    def fn_sigmoid(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.sigmoid(x)

    def fn_softmax(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        if axis is None:
            return torch.softmax(x.reshape(-1), dim=0).reshape(x.shape)
        return torch.softmax(x, dim=axis)

    def fn_log_softmax(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        if axis is None:
            return torch.log_softmax(x.reshape(-1), dim=0).reshape(x.shape)
        return torch.log_softmax(x, dim=axis)

    def fn_logsumexp(self, x: "torch.Tensor", axis: int | None) -> "torch.Tensor":
        if axis is None:
            return torch.logsumexp(x.reshape(-1), dim=0).reshape(1, 1)
        return torch.logsumexp(x, dim=axis, keepdim=True)

    def fn_Diag(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.diag(x.reshape(-1))

    def fn_outer(self, u: "torch.Tensor", v: "torch.Tensor") -> "torch.Tensor":
        return torch.outer(u.reshape(-1), v.reshape(-1))

    def cross_entropy(self, labels: "torch.Tensor", logits: "torch.Tensor", *, axis: int | None,
                      per_sample: bool) -> "torch.Tensor":
        """``F.cross_entropy`` with probability targets; it wants classes on axis 1 of (N, C)."""
        if labels.shape != logits.shape:
            raise UnsupportedPrimitive(f"cross_entropy of labels {tuple(labels.shape)} and logits "
                                       f"{tuple(logits.shape)} (F.cross_entropy needs equal shapes)")
        inp, target = (logits, labels) if axis == 1 else (logits.mT, labels.mT)
        if not per_sample:
            return F.cross_entropy(inp, target, reduction="sum").reshape(1, 1)
        losses = F.cross_entropy(inp, target, reduction="none")
        return losses.reshape(-1, 1) if axis == 1 else losses.reshape(1, -1)


class TorchBackend(Backend):
    """torch autograd over the forward definitions; softmax cross-entropy by ``F.cross_entropy`` on the logits
    (the stable form a torch user writes: the plain name)."""

    name = "torch"
    description = ("torch autograd over the forward definitions; loss by F.cross_entropy(logits, probability "
                   "targets, reduction='sum') where it is -sum(y * log(softmax(theta))), any other loss as written")
    fused = True

    def __init__(self) -> None:
        if torch is not None:
            # These shapes are tiny: with one thread a request takes 1.9 ms, with the
            # default pool 12 ms (benchmarks/backend_speed.md, 2 shared CPU cores).
            torch.set_num_threads(1)

    def unavailable_reason(self) -> str | None:
        if _IMPORT_ERROR is None:
            return None
        if isinstance(_IMPORT_ERROR, ImportError) and getattr(_IMPORT_ERROR, "name", None) == "torch":
            return "torch is not installed (pip install 'gradconform[torch]')"
        return f"torch cannot be imported: {type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}"

    def dtypes(self) -> frozenset[str]:
        return frozenset(DTYPES)

    def quantity_kinds(self) -> frozenset[str]:
        return QUANTITY_KINDS

    def devices(self) -> tuple[str, ...]:
        if torch is not None and torch.cuda.is_available():
            return ("cpu", "cuda")
        return ("cpu",)

    def versions(self) -> Mapping[str, str]:
        if torch is None:
            return {}
        out = {"torch": str(torch.__version__), "numpy": np.__version__}
        if torch.cuda.is_available():
            out["cuda"] = str(torch.version.cuda)
        return out

    # ------------------------------------------------------------------ evaluate
    def _device(self, name: str) -> "torch.device":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise NotSupported(f"device {name!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise NotSupported(f"device {name!r}: torch {torch.__version__} sees no CUDA device here "
                               "(torch.cuda.is_available() is False)")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise NotSupported(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        if device.type not in ("cpu", "cuda"):
            raise NotSupported(f"device {name!r}: this backend runs on cpu or cuda")
        return device

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.dtype not in DTYPES:
            raise NotSupported(f"dtype {request.dtype}")
        device = self._device(request.device)
        dtype = _torch_dtype(request.dtype)
        spec_model = request.model
        model = fuse_cross_entropy(spec_model)[0] if self.fused else spec_model
        ops = TorchOps(dtype, device)

        env: dict[str, torch.Tensor] = {}
        for name, value in request.inputs.items():
            env[name] = _to_tensor(value, request.dtype, device).requires_grad_(True)
        with torch.enable_grad():
            for name, expr in model.forward:
                env[name] = interpret(expr, env, ops)
        out: dict[str, Any] = {}
        grads = self._gradients(request, spec_model, env)
        detached = {k: v.detach() for k, v in env.items()}
        for q in request.quantities:
            try:
                if q.kind == "value":
                    result = env[q.of]
                elif q.kind == "gradient":
                    result = grads[(q.of, q.wrt)]
                elif q.kind == "jacobian":
                    result = self._jacobian(model, q.of, q.wrt, q.convention, detached, ops)
                elif q.kind in ("jvp", "vjp", "hessian", "hvp"):
                    result = self._higher_order(model, q, detached, ops)
                else:
                    raise NotSupported(f"quantity kind {q.kind!r}")
                out[q.id] = result if isinstance(result, BaseException) else _to_numpy(result, request.dtype)
            except (NotSupported, UnsupportedPrimitive) as exc:
                out[q.id] = NotSupported(str(exc))
            except Exception as exc:  # one quantity's failure is that quantity's error, not the case's
                out[q.id] = exc
        return out

    def _gradients(self, request: Request, spec_model: Model, env: Mapping[str, "torch.Tensor"]
                   ) -> dict[tuple[str, str | None], Any]:
        """Every requested gradient: one ``torch.autograd.grad`` call per scalar ``of``."""
        wanted: dict[str, list[str]] = {}
        for q in request.quantities:
            if q.kind == "gradient" and q.wrt is not None and q.wrt not in wanted.setdefault(q.of, []):
                wanted[q.of].append(q.wrt)
        out: dict[tuple[str, str | None], Any] = {}
        for of, wrts in wanted.items():
            try:
                target = env[of]
                if target.numel() != 1:
                    raise NotSupported(f"gradient of {of!r}, which is not a scalar (shape {tuple(target.shape)})")
                tensors = [env[w] for w in wrts]
                results = torch.autograd.grad(target, tensors, grad_outputs=torch.ones_like(target),
                                              retain_graph=True, allow_unused=True)
            except Exception as exc:
                out.update({(of, w): exc for w in wrts})
                continue
            for w, t, g in zip(wrts, tensors, results):
                if g is not None:
                    out[(of, w)] = g
                elif depends_on(spec_model, of, w):
                    out[(of, w)] = NotSupported(f"{of} does not pass through {w} in this backend's computation "
                                                "(the fused loss goes from the logits straight to the loss)")
                else:
                    out[(of, w)] = torch.zeros_like(t)
        return out

    def _jacobian(self, model: Model, of: str, wrt: str | None, convention: str | None,
                  env: Mapping[str, "torch.Tensor"], ops: TorchOps) -> "torch.Tensor":
        if wrt is None:
            raise NotSupported("a Jacobian without 'wrt'")
        fn = evaluate_downstream(model, wrt, of, env, ops)
        at = env[wrt]
        jac = torch.autograd.functional.jacobian(fn, at)
        flat = jac.reshape(env[of].numel(), at.numel())  # numerator layout: d of_i / d wrt_j
        if convention == "denominator":
            return flat.mT
        if convention not in (None, "numerator"):
            raise NotSupported(f"Jacobian convention {convention!r}")
        return flat

    def _higher_order(self, model: Model, q: Quantity, env: Mapping[str, "torch.Tensor"],
                      ops: TorchOps) -> "torch.Tensor":
        """Forward mode and second order with torch.func: ``jvp``, ``vjp``, ``hessian`` (forward over reverse,
        torch.func.hessian) and ``hvp`` (torch.func.jvp of torch.func.grad), of the function ``wrt -> of``."""
        if q.wrt is None:
            raise NotSupported(f"a {q.kind} without 'wrt'")
        fn = evaluate_downstream(model, q.wrt, q.of, env, ops)
        at = env[q.wrt]
        if q.kind == "hessian":
            return torch.func.hessian(lambda w: fn(w).reshape(()))(at).reshape(at.numel(), at.numel())
        if q.direction is None or q.direction not in env:
            raise NotSupported(f"a {q.kind} without its direction among the inputs ({q.direction!r})")
        d = env[q.direction]
        if q.kind == "jvp":
            return torch.func.jvp(fn, (at,), (d,))[1]
        if q.kind == "vjp":
            _, pull = torch.func.vjp(fn, at)
            return pull(d)[0]
        return torch.func.jvp(torch.func.grad(lambda w: fn(w).reshape(())), (at,), (d,))[1]


class TorchComposedBackend(TorchBackend):
    """torch autograd over the forward definitions; the loss exactly as written."""

    name = "torch-composed"
    description = ("torch autograd over the forward definitions; the loss exactly as written "
                   "(log(softmax(theta)) stays composed)")
    fused = False


#: Deprecated: the old import target of the stable form (``torch-fused``), now :class:`TorchBackend`.
TorchFusedBackend = TorchBackend


# ---------------------------------------------------------------------- conversions

def _to_tensor(value: np.ndarray, dtype: str, device: "torch.device") -> "torch.Tensor":
    """A numpy array of the request's dtype as a tensor of the same dtype, bit for bit."""
    arr = np.ascontiguousarray(value)
    if dtype == "bfloat16":  # torch.from_numpy knows no ml_dtypes.bfloat16: move the bits
        t = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(arr.astype(dtype, copy=True))
    return t.to(device)


def _to_numpy(t: "torch.Tensor", dtype: str) -> np.ndarray:
    """A tensor as a numpy array of the requested dtype, bit for bit (bfloat16 as ml_dtypes.bfloat16)."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    return t.numpy().copy()
