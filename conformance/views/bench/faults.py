"""Seeded faults in a hand-written backward pass of the seed network, for the benchmark's detection table.

The faulty backends are reachable as ``conformance.views.bench.faults:_fault_rel7`` (and ``_fault_rel4``,
``_fault_f32``), so that a run can load them by ``module:attr`` like any backend.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["FAULTS", "FaultyBackward", "make_fault_backend"]

#: the seeded faults: dL/dx off by a relative 1e-7, by 1e-4, the backward pass in float32
FAULTS = ("rel7", "rel4", "f32")


class FaultyBackward:
    """The seed network's backward pass written by hand (float64), with one optional seeded fault:
    ``rel7`` (dL/dx off by a relative 1e-7), ``rel4`` (1e-4), ``f32`` (the backward in float32)."""

    def __init__(self, fault: str | None = None) -> None:
        self.fault = fault

    def grads(self, x: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray,
              y: np.ndarray) -> tuple[np.ndarray, ...]:
        dt = np.float32 if self.fault == "f32" else np.float64
        x, W1, b1, W2, b2, y = (np.asarray(v, dtype=dt) for v in (x, W1, b1, W2, b2, y))
        a = x @ W1 + b1
        h = 1 / (1 + np.exp(-a))
        t = h @ W2 + b2
        e = np.exp(t - t.max(axis=1, keepdims=True))
        yhat = e / e.sum(axis=1, keepdims=True)
        g = yhat * y.sum(axis=1, keepdims=True) - y
        da = (g @ W2.T) * (h - h * h)
        dx = da @ W1.T
        if self.fault == "rel7":
            dx = dx * (1 + 1e-7)
        elif self.fault == "rel4":
            dx = dx * (1 + 1e-4)
        out = (dx, x.T @ da, da.sum(axis=0, keepdims=True), h.T @ g, g.sum(axis=0, keepdims=True))
        return tuple(np.asarray(v, dtype=np.float64) for v in out)


def make_fault_backend(fault: str) -> Any:
    from impls.numpy import NumpyBackend

    class _Faulty(NumpyBackend):
        name = f"numpy-fault-{fault}"

        def evaluate(self, request: Any) -> Mapping[str, Any]:
            out = dict(super().evaluate(request))
            if request.model.layout != "row":
                return out
            args = [request.inputs[k] for k in ("x", "W1", "b1", "W2", "b2", "y")]
            dx = FaultyBackward(fault).grads(*args)[0]
            for q in request.quantities:
                if q.id in ("dL/dx", "dL/dx.chain"):
                    out[q.id] = dx.astype(request.inputs["x"].dtype)
            return out

    return _Faulty()


def __getattr__(name: str) -> Any:  # _fault_rel7 etc.: backends for `module:attr` (built on first use)
    if name.startswith("_fault_"):
        return make_fault_backend(name[len("_fault_"):])
    raise AttributeError(name)
