"""How long each backend takes per request, and whether its speed settings help (jax.jit, torch threads).

    python benchmarks/backend_speed.py [--out benchmarks/backend_speed.md]

Runs the backends in this process (no worker), on the requests of a small
sweep of the seed spec (both layouts, four dtypes, the benign and
large_logits regimes, one case per shape family and magnitude), twice: the
first pass pays imports, jit compilations and caches, the second is the
steady state. Figures are printed and written to a markdown file; nothing is
asserted (speed is measured, never tested).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time
from pathlib import Path

from conformance.cases.generate import generate_cases
from conformance.formats import DTYPES
from conformance.run.run import Run
from conformance.spec import load_spec

VARIANTS = [
    ("numpy", "impls.numpy:NumpyBackend", {}),
    ("torch-composed (1 thread, as run)", "impls.torch:TorchComposedBackend", {}),
    ("torch-composed (default threads)", "impls.torch:TorchComposedBackend", {"threads": None}),
    ("torch", "impls.torch:TorchBackend", {}),
    ("jax-composed (jit, as run)", "impls.jax:JaxComposedBackend", {}),
    ("jax-composed (eager)", "impls.jax:JaxComposedBackend", {"jit": False}),
    ("jax", "impls.jax:JaxBackend", {}),
]


def requests():
    spec = load_spec(None)
    run = Run(spec, "numpy", isolate=False)
    out = []
    for layout in spec.layouts:
        for dtype in DTYPES:
            for regime in ("benign", "large_logits"):
                for case in generate_cases(spec, layout, dtype, regime, examples=1):
                    lay = spec.layouts[layout]
                    idents = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
                    out.append(run.request_for(case, idents))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).with_name("backend_speed.md")))
    args = parser.parse_args()
    reqs = requests()
    rows = []
    for label, target, settings in VARIANTS:
        module, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            print(f"{label}: skipped ({exc})")
            continue
        backend = cls()
        if "jit" in settings:
            backend.jit = settings["jit"]
        if "threads" in settings:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        for r in reqs:
            backend.evaluate(r)
        t1 = time.perf_counter()
        for r in reqs:
            backend.evaluate(r)
        t2 = time.perf_counter()
        if "threads" in settings:
            torch.set_num_threads(1)
        rows.append((label, (t1 - t0) * 1e3 / len(reqs), (t2 - t1) * 1e3 / len(reqs)))
        print(f"{label:28s} first pass {rows[-1][1]:8.2f} ms/request   steady {rows[-1][2]:7.2f} ms/request", flush=True)
    lines = [
        "# Backend speed (per request, in process)",
        "",
        f"{len(reqs)} requests (seed spec: 2 layouts x 4 dtypes x benign and large_logits, one case per shape "
        f"family and magnitude), each with every forward value, gradient and Jacobian that applies. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "Written by benchmarks/backend_speed.py.",
        "",
        "| backend | first pass (ms/request) | steady state (ms/request) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {first:.2f} | {steady:.2f} |" for label, first, steady in rows]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
