"""Benchmark section 3, the peers: torch.autograd.gradcheck and jax check_grads on the seed case."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Callable

import numpy as np

from conformance.views.bench.common import fmt_s, median_time
from conformance.views.bench.faults import FAULTS, FaultyBackward
from conformance.views.bench.seed import seed_case

__all__ = ["peers"]


def peers(repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """gradcheck and check_grads on the seed case (float64): time per call, and faults caught."""
    spec, case = seed_case()
    arrays = [np.asarray(case.inputs[k], dtype=np.float64) for k in ("x", "W1", "b1", "W2", "b2", "y")]
    out: dict[str, Any] = {"torch_import_s": _import_seconds("torch"), "jax_import_s": _import_seconds("jax")}
    try:
        import torch

        out["torch"] = _torch_peer(torch, arrays, repeat)
        log(f"  torch.autograd.gradcheck: {fmt_s(out['torch']['gradcheck_s'])} per call "
            f"(fast_mode {fmt_s(out['torch']['gradcheck_fast_s'])}); faults caught {out['torch']['caught']}")
    except ImportError as exc:
        out["torch"] = {"skipped": str(exc)}
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        out["jax"] = _jax_peer(jax, arrays, repeat)
        log(f"  jax.test_util.check_grads: {fmt_s(out['jax']['check_grads_s'])} per call; "
            f"faults caught {out['jax']['caught']}")
    except ImportError as exc:
        out["jax"] = {"skipped": str(exc)}
    return out


def _import_seconds(module: str) -> float | None:
    """Seconds to import ``module`` in a fresh interpreter (what a worker process pays once)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        return float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def _torch_peer(torch: Any, arrays: list[np.ndarray], repeat: int) -> dict[str, Any]:
    def loss(x, W1, b1, W2, b2, y):  # noqa: ANN001
        h = torch.sigmoid(x @ W1 + b1)
        return -(y * torch.log_softmax(h @ W2 + b2, dim=1)).sum()

    def faulty(fault: str | None) -> Callable[..., Any]:
        bw = FaultyBackward(fault)

        class F(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, W1, b1, W2, b2, y):  # noqa: ANN001
                ctx.save_for_backward(x, W1, b1, W2, b2, y)
                return loss(x, W1, b1, W2, b2, y)

            @staticmethod
            def backward(ctx, gout):  # noqa: ANN001
                vals = [t.detach().numpy() for t in ctx.saved_tensors]
                dx, dW1, db1, dW2, db2 = (torch.from_numpy(g) * gout for g in bw.grads(*vals))
                return dx, dW1, db1, dW2, db2, None

        return F.apply

    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=(i < 5)) for i, a in enumerate(arrays)]
    t_full = median_time(lambda: torch.autograd.gradcheck(loss, ts), repeat)[0]
    t_fast = median_time(lambda: torch.autograd.gradcheck(loss, ts, fast_mode=True), repeat)[0]
    caught = {}
    for fault in FAULTS:
        try:
            ok = torch.autograd.gradcheck(faulty(fault), ts, raise_exception=False)
        except Exception:
            ok = False
        caught[fault] = not ok
    correct_ok = torch.autograd.gradcheck(faulty(None), ts, raise_exception=False)
    return {"gradcheck_s": t_full, "gradcheck_fast_s": t_fast, "caught": caught,
            "hand_written_correct_passes": bool(correct_ok), "version": torch.__version__}


def _jax_peer(jax: Any, arrays: list[np.ndarray], repeat: int) -> dict[str, Any]:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    def loss(x, W1, b1, W2, b2, y):  # noqa: ANN001
        h = jax.nn.sigmoid(x @ W1 + b1)
        return -(y * jax.nn.log_softmax(h @ W2 + b2, axis=1)).sum()

    args = tuple(jnp.asarray(a) for a in arrays)
    f = lambda *p: loss(*p, args[5])  # noqa: E731
    t = median_time(lambda: check_grads(f, args[:5], order=1, modes=("rev",)), repeat)[0]
    caught = {}
    for fault in FAULTS:
        bw = FaultyBackward(fault)

        @jax.custom_vjp
        def g(x, W1, b1, W2, b2):  # noqa: ANN001
            return f(x, W1, b1, W2, b2)

        def g_fwd(*p):  # noqa: ANN002
            return g(*p), p

        def g_bwd(p, gout, bw=bw):  # noqa: ANN001
            grads = bw.grads(*[np.asarray(v) for v in p], arrays[5])
            return tuple(jnp.asarray(v) * gout for v in grads)

        g.defvjp(g_fwd, g_bwd)
        try:
            check_grads(g, args[:5], order=1, modes=("rev",))
            caught[fault] = False
        except AssertionError:
            caught[fault] = True
    return {"check_grads_s": t, "caught": caught, "version": jax.__version__}
