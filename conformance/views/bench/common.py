"""Helpers of the benchmark: timing by medians, formatting, the machine it runs on."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping
from conformance.results.document import environment

__all__ = ["WIDTHS", "REPO", "median_time", "fmt_s", "machine", "machine_slug"]

WIDTHS = (5, 16, 64, 256, 1024)
REPO = Path(__file__).resolve().parents[3]


def median_time(fn: Callable[[], Any], repeat: int, min_total: float = 0.2) -> tuple[float, float]:
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


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def machine() -> dict[str, Any]:

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
