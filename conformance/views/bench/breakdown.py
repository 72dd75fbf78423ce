"""Benchmark section 4: where a run's time goes, phase by phase (the run's own timing hooks)."""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable

from conformance.run.phases import PhaseClock
from conformance.run.run import Run
from conformance.formats import DTYPES
from conformance.spec import load_spec

__all__ = ["run_breakdown"]


def run_breakdown(engine: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Every group of the default suite in process (isolated numpy backend), cold then warm cache."""

    spec = load_spec(None)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for label in ("cold", "warm"):
            clock = PhaseClock()
            with Run(spec, "numpy", oracle=engine, cache_dir=cache_dir, timer=clock) as run:
                run.info
                t0, c0 = time.perf_counter(), time.process_time()
                cells = [(lname, dt, regime) for lname in spec.layouts
                         for dt in [d for d in DTYPES if d in spec.tolerance.accumulate] for regime in spec.regimes]
                run.prefetch(cells)  # as a suite run does: the cases drawn ahead in a second process
                for cell in cells:
                    run.group(*cell)
                for lname, lay in spec.layouts.items():
                    for ident in lay.identities:
                        run.verifications(lname, ident.id)
                total = time.perf_counter() - t0
                cpu = time.process_time() - c0
                n = sum(len(g.cases) for g in run.groups.values())
            timers = dict(clock.seconds)
            timers["other"] = max(0.0, total - sum(timers.values()))
            out[label] = {"total_s": total, "cpu_s": cpu, "cases": n, "phases": dict(timers)}
            shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(timers.items(), key=lambda kv: -kv[1]))
            log(f"  run breakdown ({engine}, {label} cache): {total:.1f} s for {n} cases: {shares}")
    return out
