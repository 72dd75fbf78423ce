"""Benchmark section 2: the oracle per case, by engine and network width."""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable

import numpy as np

from conformance.backend import FIRST_ORDER_KINDS
from conformance.views.bench.common import fmt_s, median_time
from conformance.cache.oracle_cache import OracleCache, cached_evaluate
from conformance.oracle import evaluate as oracle
from conformance.spec import load_spec

__all__ = ["width_inputs", "oracle_by_width"]


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

    spec = load_spec(None)
    lay = spec.layouts["row"]
    rows = []
    for w in widths:
        inputs = width_inputs(w)
        sizes = {"n": 1, "d_in": w, "hidden": w, "d_out": w}
        # first order: the workload measured before the spec had forward-mode and second-order identities (whose
        # tangents these inputs do not have), so that the figures stay comparable
        everything = [i for i in lay.identities if all(sizes.get(d) == v for d, v in i.when.items())
                      and i.kind in FIRST_ORDER_KINDS]
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
                    wall, cpu = median_time(go, reps)
                comps = sum(v.hi.size for v in ev[-1].values.values())
                row = {"width": w, "engine": engine, "workload": name, "wall_s": wall, "cpu_s": cpu,
                       "components": comps, "precision": ev[-1].precision}
                if name == "gradients":
                    with tempfile.TemporaryDirectory() as d:
                        cache = OracleCache(d)
                        cached_evaluate(lay, inputs, idents, engine=engine, cache=cache)
                        row["warm_cache_s"] = median_time(
                            lambda: cached_evaluate(lay, inputs, idents, engine=engine, cache=cache),
                            3 if w >= 256 else repeat, min_total=0.05)[0]
                rows.append(row)
                log(f"  oracle {engine:6s} width {w:5d} {name:9s}: {fmt_s(wall)} (cpu {fmt_s(cpu)}), "
                    f"{comps} components, {row['precision']} bits")
    return rows
