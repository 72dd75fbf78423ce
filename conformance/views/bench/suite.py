"""Benchmark section 5: the full default suite per installed backend, as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from conformance.views.bench.common import REPO
from conformance.execution.registry import BUILTIN, find
from conformance.execution.worker import Worker

__all__ = ["available_backends", "suite_times"]


def available_backends() -> list[str]:

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
                        cmd = [sys.executable, "-m", "pytest", str(REPO / "conformance"), "--gc-backend", backend,
                               "--gc-oracle", engine, "--gc-oracle-cache", cache, "--gc-results", str(res), "-q",
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
