"""The numpy backend: evaluates the spec's formulas, in the requested dtype.

It is the reference floating-point evaluation of the spec: forward values
from the forward definitions, gradients and Jacobians from the identities'
closed forms (there is no autodiff in numpy), and so are the JVPs, VJPs,
Hessians and Hessian-vector products. Careful where care is standard
practice, and nowhere else:

* softmax, log-softmax and logsumexp subtract the maximum first;
* sigmoid uses exp(-|a|), so neither branch overflows;
* sums and matrix products of float16 and bfloat16 accumulate in float32 and
  round once at the end (numpy's own float16 matmul does; ml_dtypes' bfloat16
  sum does not, so it is done here explicitly);
* ``numpy`` rewrites ``log(softmax(.))`` into ``log_softmax(.)`` for the loss;
  ``numpy-composed`` evaluates the loss exactly as written, and shows where
  that formula breaks (log of an underflowed probability).

It imports only the backend contract from the harness.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from conformance.backend import DTYPES, QUANTITY_KINDS, Backend, NotSupported, Ops, Request, UnsupportedPrimitive, \
    fuse_log_softmax, interpret, numpy_dtype

__all__ = ["NumpyBackend", "NumpyComposedBackend", "NumpyOps"]


class NumpyOps(Ops[np.ndarray]):
    """The math language's primitives in numpy, at one dtype."""

    def __init__(self, dtype: str) -> None:
        self.dtype = numpy_dtype(dtype)
        self.narrow = dtype in ("float16", "bfloat16")
        self.acc = np.dtype(np.float32) if self.narrow else self.dtype

    def _out(self, x: Any) -> np.ndarray:
        return np.asarray(x).astype(self.dtype)

    def const(self, value: Fraction) -> np.ndarray:
        return np.full((1, 1), float(value)).astype(self.dtype)

    def neg(self, x: np.ndarray) -> np.ndarray:
        return -x

    def add(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._out(x + y)

    def sub(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._out(x - y)

    def mul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._out(x * y)

    def div(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._out(x / y)

    def matmul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._out(x.astype(self.acc) @ y.astype(self.acc))

    def transpose(self, x: np.ndarray) -> np.ndarray:
        return x.T

    def _sum(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        if axis is None:
            return self._out(np.sum(x.astype(self.acc)).reshape(1, 1))
        return self._out(np.sum(x.astype(self.acc), axis=axis, keepdims=True))

    def fn_sum(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return self._sum(x, axis)

    def fn_mean(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        count = x.size if axis is None else x.shape[axis]
        return self._out(self._sum(x, axis) / self.dtype.type(count))

    def fn_exp(self, x: np.ndarray) -> np.ndarray:
        return self._out(np.exp(x))

    def fn_log(self, x: np.ndarray) -> np.ndarray:
        return self._out(np.log(x))

    def fn_tanh(self, x: np.ndarray) -> np.ndarray:
        return self._out(np.tanh(x))

    def fn_relu(self, x: np.ndarray) -> np.ndarray:
        return self._out(np.maximum(x, self.dtype.type(0)))

    def fn_step(self, x: np.ndarray) -> np.ndarray:
        return self._out(x > 0)

    def fn_sigmoid(self, x: np.ndarray) -> np.ndarray:
        e = self._out(np.exp(-np.abs(x)))  # in (0, 1]: never overflows
        one = self.dtype.type(1)
        pos = self._out(one / self._out(one + e))
        neg = self._out(e / self._out(one + e))
        return np.where(x >= 0, pos, neg).astype(self.dtype)

    def _shifted(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        m = np.max(x) if axis is None else np.max(x, axis=axis, keepdims=True)
        return self._out(x - m)

    def fn_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        e = self._out(np.exp(self._shifted(x, axis)))
        return self._out(e / self._sum(e, axis))

    def fn_logsumexp(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        m = np.max(x) if axis is None else np.max(x, axis=axis, keepdims=True)
        s = self._sum(self._out(np.exp(self._out(x - m))), axis)
        return self._out(m + self._out(np.log(s)))

    def fn_log_softmax(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        z = self._shifted(x, axis)
        s = self._sum(self._out(np.exp(z)), axis)
        return self._out(z - self._out(np.log(s)))

    def fn_Diag(self, x: np.ndarray) -> np.ndarray:
        return np.diag(x.reshape(-1)).astype(self.dtype)

    def fn_outer(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._out(np.multiply.outer(u.reshape(-1), v.reshape(-1)))


class NumpyBackend(Backend):
    """Closed forms in numpy; the loss through log_softmax (stable)."""

    name = "numpy"
    description = "numpy, the spec's closed forms; loss via log_softmax (stable)"
    fused = True

    def dtypes(self) -> frozenset[str]:
        return frozenset(DTYPES)

    def quantity_kinds(self) -> frozenset[str]:
        """Every kind: each is a closed form of the spec (a JVP, VJP, Hessian or HVP as much as a gradient)."""
        return QUANTITY_KINDS

    def versions(self) -> Mapping[str, str]:
        import ml_dtypes

        return {"numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.dtype not in self.dtypes():
            raise NotSupported(f"dtype {request.dtype}")
        if request.device != "cpu":
            raise NotSupported(f"device {request.device!r} (numpy runs on the CPU)")
        ops = NumpyOps(request.dtype)
        definitions = request.model.definitions
        env: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in request.inputs.items()}
        out: dict[str, Any] = {}
        with np.errstate(all="ignore"):
            for name, expr in request.model.forward:
                if self.fused:
                    expr = fuse_log_softmax(expr, definitions)
                env[name] = interpret(expr, env, ops)
            for q in request.quantities:
                try:
                    if q.kind == "value":
                        out[q.id] = env[q.of]
                    elif q.expr is None:
                        raise NotSupported(f"{q.kind} {q.id!r} without a closed form (numpy has no autodiff)")
                    else:
                        out[q.id] = interpret(q.expr, env, ops)
                except UnsupportedPrimitive as exc:
                    out[q.id] = NotSupported(f"primitive {exc}")
                except NotSupported as exc:
                    out[q.id] = exc
                except Exception as exc:  # one quantity's failure (a shape error...) is that quantity's error
                    out[q.id] = exc
        return out


class NumpyComposedBackend(NumpyBackend):
    """Closed forms in numpy; the loss exactly as written, -sum(y * log(softmax(theta)))."""

    name = "numpy-composed"
    description = "numpy, the spec's closed forms; loss as written, log(softmax(theta))"
    fused = False
