"""``gradconform bench``: what a conformance check costs, measured on this machine, printed and written down.

Sections (each a table in the output):

1. the machine: CPU, cores, load average before and after, library versions;
2. the oracle per case by engine and width: the seed network in the row layout
   with d_in = hidden = d_out = w and one sample (5-3-5 is the seed shape),
   forward values and every gradient identity ("gradients") or every identity,
   Jacobians included ("all"); Xavier-scaled normal weights, a one-hot label;
   a warm cache hit for comparison;
3. one seed-shape case checked end to end in a warm process (case in hand:
   oracle + backend round trip + bounds + comparison of every quantity), next to
   ``torch.autograd.gradcheck`` and ``jax.test_util.check_grads`` on the same
   network and inputs (float64), and whether each catches three seeded faults
   in a hand-written backward pass;
4. where the time of a run goes (generation, oracle, backend, bounds,
   comparison, the rest), in process, cold and warm cache;
5. the full default suite per installed backend (``pytest conformance``, a
   subprocess each): cold and warm cache, one and two xdist workers, per engine.

Timings are wall-clock medians of repeats (CPU time beside them, which a
loaded machine inflates less). Nothing here is asserted: targets are compared
in the report, by a person.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

__all__ = ["add_arguments", "main", "width_inputs", "FaultyBackward"]

WIDTHS = (5, 16, 64, 256, 1024)
REPO = Path(__file__).resolve().parent.parent.parent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="file to write (.md, and .json beside it); default benchmarks/results-<machine>.md")
    p.add_argument("--quick", action="store_true",
                   help="small widths only, no suite runs (a minute)")
    p.add_argument("--widths", default=None, help="comma-separated widths (default 5,16,64,256,1024)")
    p.add_argument("--engines", default="mpmath,flint",
                   help="oracle engines to time (default mpmath,flint; the first is used for the other backends)")
    p.add_argument("--mpmath-max-width", type=int, default=256,
                   help="widest network timed with the mpmath engine (it grows as width^2: 1024 takes minutes)")
    p.add_argument("--backends", default=None,
                   help="backends for the suite runs (default: every built-in backend that is available)")
    p.add_argument("--no-suite", action="store_true", help="skip the full-suite runs")
    p.add_argument("--suite-workers", default="1,2", help="xdist worker counts for the suite runs (default 1,2)")
    p.add_argument("--repeat", type=int, default=5, help="repeats of each small timing (median reported)")
    p.add_argument("--sections", default="oracle,seed,breakdown,suite",
                   help="what to measure (default all: oracle,seed,breakdown,suite); the other sections of an "
                        "existing --out file are kept")


# ---------------------------------------------------------------------------- helpers

def _median_time(fn: Callable[[], Any], repeat: int, min_total: float = 0.2) -> tuple[float, float]:
    """(wall, cpu) seconds per call: median over ``repeat`` rounds, each round long enough to time."""
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_total / repeat / one))
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        walls.append((time.perf_counter() - w) / inner)
        cpus.append((time.process_time() - c) / inner)
    return statistics.median(walls), statistics.median(cpus)


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def machine() -> dict[str, Any]:
    from conformance.results.document import environment

    env = environment()
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    versions: dict[str, str] = {}
    for mod in ("flint", "torch", "jax", "hypothesis", "mpmath", "numpy"):
        try:
            versions[mod] = str(__import__(mod).__version__)
        except Exception:
            versions[mod] = "not installed"
    return {**env, "load_average": [round(x, 2) for x in load], "versions": versions,
            "node": platform.node()}


def machine_slug(info: Mapping[str, Any]) -> str:
    cpu = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", str(info.get("cpu") or "cpu"))
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", cpu).strip("-").lower() or "cpu"
    return f"{info.get('cpu_count', '?')}core-{cpu}"


# ---------------------------------------------------------------------------- 2. oracle by width

def width_inputs(w: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the seed network (row layout, one sample) at width w: Xavier-scaled normal weights,
    normal input and biases, a one-hot label."""
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(w)
    return {"x": rng.standard_normal((1, w)), "W1": rng.standard_normal((w, w)) * s,
            "b1": rng.standard_normal((1, w)), "W2": rng.standard_normal((w, w)) * s,
            "b2": rng.standard_normal((1, w)), "y": np.eye(w)[[w // 2]]}


def oracle_by_width(widths: list[int], engines: list[str], repeat: int, mpmath_max: int,
                    log: Callable[[str], None]) -> list[dict[str, Any]]:
    from conformance.oracle import evaluate as oracle
    from conformance.cache.oracle_cache import OracleCache, cached_evaluate
    from conformance.spec import load_spec

    spec = load_spec(None)
    lay = spec.layouts["row"]
    rows = []
    for w in widths:
        inputs = width_inputs(w)
        sizes = {"n": 1, "d_in": w, "hidden": w, "d_out": w}
        everything = [i for i in lay.identities if all(sizes.get(d) == v for d, v in i.when.items())]
        workloads = {"gradients": [i for i in everything if i.kind == "gradient"], "all": everything}
        for engine in engines:
            if engine == "mpmath" and w > mpmath_max:
                rows.append({"width": w, "engine": engine, "workload": "gradients", "skipped":
                             f"over --mpmath-max-width {mpmath_max}"})
                continue
            for name, idents in workloads.items():
                if w >= 1024 and name == "all" and engine == "mpmath":
                    continue
                reps = repeat if w <= 64 else (3 if w <= 256 else 1)
                ev: list[Any] = []

                def go() -> None:
                    ev.append(oracle.evaluate(lay, inputs, idents, engine=engine))

                if w >= 256:  # one timed call (no warm-up round) at the widest sizes
                    t0, c0 = time.perf_counter(), time.process_time()
                    go()
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                else:
                    wall, cpu = _median_time(go, reps)
                comps = sum(v.hi.size for v in ev[-1].values.values())
                row = {"width": w, "engine": engine, "workload": name, "wall_s": wall, "cpu_s": cpu,
                       "components": comps, "precision": ev[-1].precision}
                if name == "gradients":
                    with tempfile.TemporaryDirectory() as d:
                        cache = OracleCache(d)
                        cached_evaluate(lay, inputs, idents, engine=engine, cache=cache)
                        row["warm_cache_s"] = _median_time(
                            lambda: cached_evaluate(lay, inputs, idents, engine=engine, cache=cache),
                            3 if w >= 256 else repeat, min_total=0.05)[0]
                rows.append(row)
                log(f"  oracle {engine:6s} width {w:5d} {name:9s}: {_fmt_s(wall)} (cpu {_fmt_s(cpu)}), "
                    f"{comps} components, {row['precision']} bits")
    return rows


# ---------------------------------------------------------------------------- 3. one seed case vs peers

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


def _seed_case() -> Any:
    """A generic seed-shape case (x 1x5, W1 5x3, W2 3x5), float64: standard normal inputs, a one-hot label.
    (Not the first generated case: hypothesis starts from the simplest inputs, zeros included.)"""
    from conformance.cases.generate import Case, case_id
    from conformance.spec import load_spec

    spec = load_spec(None)
    rng = np.random.default_rng(20161104)
    inputs = {"x": rng.standard_normal((1, 5)), "W1": rng.standard_normal((5, 3)), "b1": rng.standard_normal((1, 3)),
              "W2": rng.standard_normal((3, 5)), "b2": rng.standard_normal((1, 5)), "y": np.eye(5)[[2]]}
    sizes = {"n": 1, "d_in": 5, "hidden": 3, "d_out": 5}
    cid = case_id("row", "float64", "benign", "seed", None, inputs)
    return spec, Case(cid, "row", "float64", "benign", "seed", sizes, None, inputs)


def seed_case_check(repeat: int, log: Callable[[str], None], engines: tuple[str, ...] = ("flint", "mpmath")
                    ) -> dict[str, Any]:
    """Our end-to-end check of one seed-shape case, warm, per engine (cache off), and its phases."""
    from conformance.oracle import evaluate as oracle
    from conformance.judge.bounds import ErrorBounds
    from conformance.run.run import Run

    spec, case = _seed_case()
    lay = spec.layouts["row"]
    out: dict[str, Any] = {"case": case.id, "quantities": 0}
    for engine in engines:
        with Run(spec, "numpy", oracle=engine) as run:
            run.info
            records: list[Any] = []

            def check() -> None:
                records[:] = run.evaluate_case(case)[0]

            wall, cpu = _median_time(check, repeat)
            sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
            ev_holder: list[Any] = []
            o_wall, _ = _median_time(lambda: ev_holder.append(oracle.evaluate(lay, case.inputs, sized,
                                                                              engine=engine)), repeat)
            ev = ev_holder[-1]
            req = run.request_for(case, sized)
            b_wall, _ = _median_time(lambda: run.worker.evaluate(req), repeat)
            def bounds() -> None:
                b = ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, spec.tolerance)
                for i in sized:
                    b.bound(i.expr)

            bd_wall, _ = _median_time(bounds, repeat)
            reply = run.worker.evaluate(req)
            bnd = ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, spec.tolerance)
            items = [(d.name, d.expr, d.shape) for d in lay.forward] + [(i.id, i.expr, i.shape) for i in sized]
            from conformance.judge.compare import compare
            from conformance.spec.shapes import concrete

            bl = {q: bnd.bound(e) for q, e, _ in items}
            shapes = {q: concrete(sh, case.sizes) for q, _, sh in items}
            cmp_wall, _ = _median_time(lambda: [compare(reply.values[q], ev.values[q], bl[q], dtype=case.dtype,
                                                        expected_shape=shapes[q],
                                                        safety_factor=spec.tolerance.safety_factor)
                                                for q, _, _ in items], repeat)
        out[engine] = {"check_s": wall, "check_cpu_s": cpu, "oracle_s": o_wall, "backend_roundtrip_s": b_wall,
                       "bounds_s": bd_wall, "compare_s": cmp_wall, "statuses": sorted({r.status for r in records})}
        out["quantities"] = len(records)
        log(f"  one seed case, {engine} oracle: {_fmt_s(wall)} for {len(records)} quantities "
            f"(oracle {_fmt_s(o_wall)}, backend round trip {_fmt_s(b_wall)}, bounds {_fmt_s(bd_wall)}, "
            f"comparisons {_fmt_s(cmp_wall)})")
    return out


def _faults_caught_by_us(log: Callable[[str], None]) -> dict[str, bool]:
    """Our verdict on dL/dx (and every gradient) of the seed case, for each seeded fault."""
    from conformance.run.run import Run

    spec, case = _seed_case()
    found = {}
    for fault in ("rel7", "rel4", "f32"):
        with Run(spec, f"conformance.views.bench:_fault_{fault}", isolate=False) as run:
            records = run.evaluate_case(case)[0]
        found[fault] = any(r.status == "fail" for r in records if r.quantity.startswith("dL/dx"))
    log(f"  faults caught by the conformance check: {found}")
    return found


def _make_fault_backend(fault: str) -> Any:
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
        return _make_fault_backend(name[len("_fault_"):])
    raise AttributeError(name)


def peers(repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """gradcheck and check_grads on the seed case (float64): time per call, and faults caught."""
    spec, case = _seed_case()
    arrays = [np.asarray(case.inputs[k], dtype=np.float64) for k in ("x", "W1", "b1", "W2", "b2", "y")]
    out: dict[str, Any] = {"torch_import_s": _import_seconds("torch"), "jax_import_s": _import_seconds("jax")}
    try:
        import torch

        out["torch"] = _torch_peer(torch, arrays, repeat)
        log(f"  torch.autograd.gradcheck: {_fmt_s(out['torch']['gradcheck_s'])} per call "
            f"(fast_mode {_fmt_s(out['torch']['gradcheck_fast_s'])}); faults caught {out['torch']['caught']}")
    except ImportError as exc:
        out["torch"] = {"skipped": str(exc)}
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        out["jax"] = _jax_peer(jax, arrays, repeat)
        log(f"  jax.test_util.check_grads: {_fmt_s(out['jax']['check_grads_s'])} per call; "
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
    t_full = _median_time(lambda: torch.autograd.gradcheck(loss, ts), repeat)[0]
    t_fast = _median_time(lambda: torch.autograd.gradcheck(loss, ts, fast_mode=True), repeat)[0]
    caught = {}
    for fault in ("rel7", "rel4", "f32"):
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
    t = _median_time(lambda: check_grads(f, args[:5], order=1, modes=("rev",)), repeat)[0]
    caught = {}
    for fault in ("rel7", "rel4", "f32"):
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


# ---------------------------------------------------------------------------- 4. where a run's time goes

@contextlib.contextmanager
def _phase_timers(timers: dict[str, float]) -> Iterator[None]:
    """Wrap the run's phases with timers (the functions run.py calls, patched for the duration)."""
    from conformance.run import run as run_mod

    patched: list[tuple[Any, str, Any]] = []

    depth: dict[str, int] = {}

    def wrap(obj: Any, attr: str, key: str) -> None:
        orig = getattr(obj, attr)

        def timed(*a: Any, **k: Any) -> Any:
            if depth.get(key):  # a recursive call (verify_identity through its cache): timed by the outer one
                return orig(*a, **k)
            depth[key] = 1
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                depth[key] = 0
                timers[key] = timers.get(key, 0.0) + time.perf_counter() - t

        patched.append((obj, attr, orig))
        setattr(obj, attr, timed)

    wrap(run_mod, "generate_cases", "generation")
    wrap(run_mod.oracle, "evaluate", "oracle")
    wrap(run_mod.oracle, "verify_identity", "verification")
    wrap(run_mod, "compare", "compare")
    wrap(run_mod, "make_record", "records")
    def timed_class(base: Any) -> Any:
        class Timed(base):  # type: ignore[misc, valid-type]
            """The bounds, timed at the top level only (bound() recurses)."""

            def __init__(self, *a: Any, **k: Any) -> None:
                self._depth = 0
                t = time.perf_counter()
                try:
                    super().__init__(*a, **k)
                finally:
                    timers["bounds"] = timers.get("bounds", 0.0) + time.perf_counter() - t

            def bound(self, e: Any) -> Any:
                if getattr(self, "_depth", 1):
                    return super().bound(e)
                self._depth = 1
                t = time.perf_counter()
                try:
                    return super().bound(e)
                finally:
                    self._depth = 0
                    timers["bounds"] = timers.get("bounds", 0.0) + time.perf_counter() - t

            def flush(self) -> None:
                t = time.perf_counter()
                try:
                    getattr(super(), "flush", lambda: None)()
                finally:
                    timers["bounds"] = timers.get("bounds", 0.0) + time.perf_counter() - t

        return Timed

    for name in ("ErrorBounds", "CachedBounds"):
        base = getattr(run_mod, name)
        patched.append((run_mod, name, base))
        setattr(run_mod, name, timed_class(base))
    try:
        yield
    finally:
        for obj, attr, orig in reversed(patched):
            setattr(obj, attr, orig)


def run_breakdown(engine: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Every group of the default suite in process (isolated numpy backend), cold then warm cache."""
    from conformance.run.run import Run
    from conformance.formats import DTYPES
    from conformance.spec import load_spec

    spec = load_spec(None)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for label in ("cold", "warm"):
            timers: dict[str, float] = {}
            with Run(spec, "numpy", oracle=engine, cache_dir=cache_dir) as run:
                run.info
                for attr in ("evaluate", "evaluate_many"):
                    orig = getattr(run.worker, attr)

                    def backend(req: Any, _orig: Any = orig) -> Any:
                        t = time.perf_counter()
                        try:
                            return _orig(req)
                        finally:
                            timers["backend"] = timers.get("backend", 0.0) + time.perf_counter() - t

                    setattr(run.worker, attr, backend)
                for attr in ("get", "put"):
                    orig = getattr(run.case_cache, attr)

                    def cases(*a: Any, _orig: Any = orig) -> Any:
                        t = time.perf_counter()
                        try:
                            return _orig(*a)
                        finally:
                            timers["case cache"] = timers.get("case cache", 0.0) + time.perf_counter() - t

                    setattr(run.case_cache, attr, cases)
                t0, c0 = time.perf_counter(), time.process_time()
                with _phase_timers(timers):
                    for lname in spec.layouts:
                        for dt in [d for d in DTYPES if d in spec.tolerance.accumulate]:
                            for regime in spec.regimes:
                                run.group(lname, dt, regime)
                    for lname, lay in spec.layouts.items():
                        for ident in lay.identities:
                            run.verifications(lname, ident.id)
                total = time.perf_counter() - t0
                cpu = time.process_time() - c0
                n = sum(len(g.cases) for g in run.groups.values())
            timers["other"] = max(0.0, total - sum(timers.values()))
            out[label] = {"total_s": total, "cpu_s": cpu, "cases": n, "phases": dict(timers)}
            shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(timers.items(), key=lambda kv: -kv[1]))
            log(f"  run breakdown ({engine}, {label} cache): {total:.1f} s for {n} cases: {shares}")
    return out


# ---------------------------------------------------------------------------- 5. the suite per backend

def available_backends() -> list[str]:
    from conformance.execution.registry import BUILTIN, find
    from conformance.execution.worker import Worker

    names = []
    for name in BUILTIN:
        w = Worker(find(name), startup_timeout=120)
        try:
            if w.start().available:
                names.append(name)
        finally:
            w.close()
    return names


def suite_times(backends: list[str], engines: list[str], workers: list[int],
                log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for b_index, backend in enumerate(backends):
        # the full matrix for the first backend; the default engine, one worker, for the others
        for engine in (engines if b_index == 0 else engines[:1]):
            for n in (workers if b_index == 0 else workers[:1]):
                cache = tempfile.mkdtemp(prefix="gradconform-bench-cache-")
                try:
                    for label in ("cold", "warm"):
                        res = Path(cache) / f"results-{label}.json"
                        cmd = [sys.executable, "-m", "pytest", str(REPO / "conformance"), "--backend", backend,
                               "--oracle", engine, "--oracle-cache", cache, "--results", str(res), "-q",
                               "-p", "no:cacheprovider", "--tb=no", "-rN", "--no-header", f"--rootdir={REPO}"]
                        if n > 1:
                            cmd += ["-n", str(n)]
                        load0 = os.getloadavg()[0]
                        t0 = time.perf_counter()
                        before = os.times()
                        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                        after = os.times()
                        wall = time.perf_counter() - t0
                        cpu = (after.children_user - before.children_user) + (after.children_system
                                                                              - before.children_system)
                        tail = (proc.stdout.strip().splitlines() or [""])[-1]
                        row = {"backend": backend, "engine": engine, "workers": n, "cache": label, "wall_s": wall,
                               "cpu_s": cpu, "exit": proc.returncode, "summary": tail,
                               "load_before": round(load0, 2)}
                        rows.append(row)
                        log(f"  suite {backend} {engine} -n {n} {label}: {wall:.1f} s (cpu {cpu:.1f} s, load "
                            f"{load0:.1f}) {tail}")
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------- report

def render(doc: Mapping[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# gradconform benchmark: {m.get('cpu') or 'unknown CPU'}, {m.get('cpu_count')} cores", "",
             f"Run {doc['created']} with `gradconform bench{' ' + doc['args'] if doc['args'] else ''}`; "
             f"load average {m['load_average']} before, {doc.get('load_after')} after "
             f"(other jobs share this machine: wall times above the CPU times mean waiting for a core). "
             f"Python {m.get('python')}, numpy {m.get('numpy')}, BLAS {m.get('blas')}, "
             f"OPENBLAS_CORETYPE={m.get('OPENBLAS_CORETYPE') or '(unset)'}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    stamps = doc.get("measured", {})
    if stamps:
        lines += ["Sections measured: " + "; ".join(f"{k} at {v['at']} (load {v['load_before']})"
                                                     for k, v in stamps.items()) + ".", ""]
    if doc.get("oracle"):
        lines += ["## Oracle per case, by engine and width", "",
                  "Seed network, row layout, one sample, d_in = hidden = d_out = width (5 is the seed's 5-3-5). "
                  "`gradients`: forward values and every gradient identity; `all`: every identity, Jacobians "
                  "included. Certified values plus float64 node values; warm = the same case from the cache.", "",
                  "| width | engine | workload | components | time (wall) | cpu | bits | warm cache |",
                  "|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in doc["oracle"]:
            if "skipped" in r:
                lines.append(f"| {r['width']} | {r['engine']} | {r['workload']} | | skipped: {r['skipped']} | | | |")
                continue
            lines.append(f"| {r['width']} | {r['engine']} | {r['workload']} | {r['components']} | "
                         f"{_fmt_s(r['wall_s'])} | {_fmt_s(r['cpu_s'])} | {r['precision']} | "
                         f"{_fmt_s(r.get('warm_cache_s'))} |")
        lines.append("")
    if doc.get("seed_case"):
        s = doc["seed_case"]
        p = doc.get("peers", {})
        lines += ["## One seed-shape case, warm process, against the peers", "",
                  f"Case {s['case']} (float64, benign): every quantity of the row layout ({s['quantities']}: "
                  "forward values, gradients, Jacobians) judged against the certified oracle with the "
                  "condition-aware bound; the backend (numpy) answers through its isolated worker process. "
                  "Peers check the gradient of L with respect to all five parameters by finite differences.", "",
                  "| check | time per check | faults caught (1e-7 rel. in dL/dx, 1e-4, float32 backward) |",
                  "|---|---:|---|"]
        caught = doc.get("faults_caught_by_us", {})
        for eng in [k for k in ("flint", "mpmath") if k in s]:
            e = s[eng]
            lines.append(f"| gradconform, {eng} oracle (oracle {_fmt_s(e['oracle_s'])}, backend "
                         f"{_fmt_s(e['backend_roundtrip_s'])}, bounds {_fmt_s(e['bounds_s'])}, comparisons "
                         f"{_fmt_s(e.get('compare_s'))}) | "
                         f"{_fmt_s(e['check_s'])} | {_caught(caught)} |")
        t = p.get("torch", {})
        if "gradcheck_s" in t:
            lines.append(f"| torch.autograd.gradcheck (torch {t['version']}) | {_fmt_s(t['gradcheck_s'])} | "
                         f"{_caught(t['caught'])} |")
            lines.append(f"| gradcheck fast_mode | {_fmt_s(t['gradcheck_fast_s'])} | |")
        j = p.get("jax", {})
        if "check_grads_s" in j:
            lines.append(f"| jax.test_util.check_grads, rev (jax {j['version']}) | {_fmt_s(j['check_grads_s'])} | "
                         f"{_caught(j['caught'])} |")
        if "gradcheck_s" in t:
            best = min((k for k in ("flint", "mpmath") if k in s), key=lambda k: s[k]["check_s"])
            ratio = t["gradcheck_s"] / s[best]["check_s"]
            lines += ["", f"gradcheck / gradconform ({best}): {ratio:.1f}x per check; per quantity checked "
                      f"{t['gradcheck_s'] / 5 / (s[best]['check_s'] / s['quantities']):.1f}x (gradcheck: the 5 "
                      f"parameter gradients; gradconform: {s['quantities']} quantities). torch import "
                      f"{_fmt_s(p.get('torch_import_s'))}, jax import {_fmt_s(p.get('jax_import_s'))} "
                      "(paid once per worker process)."]
        lines.append("")
    if doc.get("breakdown"):
        lines += ["## Where a run's time goes (in process, numpy backend isolated)", "",
                  "| engine | cache | total | cases | generation | case cache | oracle | backend | bounds | compare | "
                  "records | verification | other |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for eng, by in doc["breakdown"].items():
            for label, b in by.items():
                ph = b["phases"]
                cells = [f"{_fmt_s(ph.get(k, 0.0))} ({ph.get(k, 0.0) / b['total_s']:.0%})"
                         for k in ("generation", "case cache", "oracle", "backend", "bounds", "compare", "records",
                                   "verification", "other")]
                lines.append(f"| {eng} | {label} | {_fmt_s(b['total_s'])} | {b['cases']} | " + " | ".join(cells) + " |")
        lines += ["", "Backend = the round trips to the isolated worker process (one per group) including the "
                  "backend's own work; oracle and verification include their cache reads when warm; other = "
                  "requests, preconditions, bookkeeping. Harness overhead = everything but the oracle and the "
                  "backend."]
        for eng, by in doc["breakdown"].items():
            for label, b in by.items():
                ph = b["phases"]
                over = b["total_s"] - ph.get("oracle", 0.0) - ph.get("backend", 0.0)
                lines.append(f"- {eng}, {label} cache: harness overhead {_fmt_s(over)} of {_fmt_s(b['total_s'])} "
                             f"({over / b['total_s']:.0%}), {_fmt_s(over / b['cases'])} per case.")
        lines.append("")
    if doc.get("suite"):
        lines += ["## The default suite (`pytest conformance --backend B`), per backend", "",
                  "| backend | oracle | workers | cache | wall | cpu (all processes) | load before | result |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for r in doc["suite"]:
            lines.append(f"| {r['backend']} | {r['engine']} | {r['workers']} | {r['cache']} | {r['wall_s']:.1f} s | "
                         f"{r['cpu_s']:.1f} s | {r['load_before']} | {r['summary']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _caught(c: Mapping[str, bool]) -> str:
    if not c:
        return "-"
    return ", ".join(("caught" if c.get(k) else "missed") for k in ("rel7", "rel4", "f32"))


def main(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, flush=True)

    info = machine()
    doc: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": info,
                           "args": " ".join(a for a in sys.argv[2:]) if len(sys.argv) > 2 else ""}
    log(f"gradconform bench on {info.get('cpu')} ({info.get('cpu_count')} cores), load {info['load_average']}")
    widths = [int(w) for w in args.widths.split(",")] if args.widths else \
        ([5, 16, 64] if args.quick else list(WIDTHS))
    from conformance.oracle.engines.base import EngineUnavailable, get_engine

    engines = []
    for e in (e.strip() for e in args.engines.split(",") if e.strip()):
        try:
            get_engine(e)
            engines.append(e)
        except EngineUnavailable as exc:
            log(f"oracle engine {e} skipped: {exc}")
    sections = {x.strip() for x in args.sections.split(",")}
    if args.quick:
        sections -= {"breakdown", "suite"}
    if args.no_suite:
        sections.discard("suite")
    out = Path(args.out) if args.out else REPO / "benchmarks" / f"results-{machine_slug(info)}.md"
    previous: dict[str, Any] = {}
    if out.with_suffix(".json").exists():
        try:
            previous = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    for key in ("oracle", "seed_case", "faults_caught_by_us", "peers", "breakdown", "suite", "measured"):
        if key in previous:
            doc[key] = previous[key]
    measured = dict(previous.get("measured", {}))
    stamp = {"at": doc["created"], "load_before": info["load_average"]}
    if "oracle" in sections:
        log("oracle by width")
        doc["oracle"] = oracle_by_width(widths, engines, args.repeat, args.mpmath_max_width, log)
        measured["oracle"] = stamp
    if "seed" in sections:
        log("one seed-shape case, and the peers")
        doc["seed_case"] = seed_case_check(args.repeat, log, tuple(engines))
        doc["faults_caught_by_us"] = _faults_caught_by_us(log)
        doc["peers"] = peers(args.repeat, log)
        measured["seed"] = stamp
    if "breakdown" in sections:
        log("where a run's time goes")
        doc["breakdown"] = {e: run_breakdown(e, log) for e in engines}
        measured["breakdown"] = stamp
    if "suite" in sections:
        backends = [b.strip() for b in args.backends.split(",")] if args.backends else available_backends()
        log(f"full suite: {', '.join(backends)}")
        workers = [int(n) for n in args.suite_workers.split(",")]
        doc["suite"] = suite_times(backends, engines, workers, log)
        measured["suite"] = stamp
    doc["measured"] = measured
    doc["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(doc), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    log(f"written: {out} and {out.with_suffix('.json')}")
    return 0
