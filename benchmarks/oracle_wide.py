"""Issue 15, wide layers: time the flint oracle at widths 16-1024 and digest its certified values.

Why: a speed-up of the oracle must not move a certified value. ``--digest``
prints, per (width, seed), a SHA-256 of every certified ``hi``, ``lo``,
undecided count, the preconditions, the precision and the node approximations;
run it on two checkouts and diff the outputs (bit for bit or not at all).
Without it, the oracle of the seed network (row layout, first-order
gradients, as ``gradconform bench --sections oracle``) is timed, median of
several runs. Run with ``PYTHONPATH=<checkout>``; see oracle_wide.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from typing import Any

import numpy as np

from conformance.backend import FIRST_ORDER_KINDS
from conformance.oracle import evaluate as oracle
from conformance.spec import load_spec
from conformance.views.bench.oracle_width import width_inputs


def _identities(lay: Any, w: int, workload: str) -> list[Any]:
    sizes = {"n": 1, "d_in": w, "hidden": w, "d_out": w}
    every = [i for i in lay.identities
             if all(sizes.get(d) == v for d, v in i.when.items()) and i.kind in FIRST_ORDER_KINDS]
    return [i for i in every if i.kind == "gradient"] if workload == "gradients" else every


def digest(lay: Any) -> None:
    """One line per case: width, seed, precision, digest (seed 2: inputs times 40, saturated logits)."""
    for w in [3, 5, 16, 64, 256, 1024]:
        for seed in ([0, 1, 2] if w <= 64 else [0]):
            inputs = width_inputs(w, seed)
            if seed == 2:
                inputs = {k: v * 40 for k, v in inputs.items()}
            ev = oracle.evaluate(lay, inputs, _identities(lay, w, "all" if w <= 256 else "gradients"),
                                 engine="flint")
            h = hashlib.sha256()
            for k in sorted(ev.values):
                e = ev.values[k]
                h.update(k.encode()); h.update(e.hi.tobytes()); h.update(e.lo.tobytes())
                h.update(str(e.undecided).encode())
            h.update(repr(sorted(ev.preconditions.items())).encode()); h.update(str(ev.precision).encode())
            for node, arr in ev.nodes.items():
                h.update(repr(node).encode()); h.update(np.ascontiguousarray(arr).tobytes())
            print(w, seed, ev.precision, h.hexdigest()[:16], flush=True)


def timing(lay: Any, w: int, workload: str, runs: int) -> None:
    """Median wall time of ``runs`` evaluations after one warm-up."""
    inputs, idents = width_inputs(w), _identities(lay, w, workload)
    oracle.evaluate(lay, inputs, idents, engine="flint")
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        oracle.evaluate(lay, inputs, idents, engine="flint")
        ts.append(time.perf_counter() - t)
    print(w, workload, "median %.4f s" % sorted(ts)[len(ts) // 2], ["%.4f" % t for t in ts], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digest", action="store_true")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--workload", choices=("gradients", "all"), default="gradients")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    lay = load_spec(None).layouts["row"]
    if a.digest:
        digest(lay)
    else:
        timing(lay, a.width, a.workload, a.runs)


if __name__ == "__main__":
    main()
