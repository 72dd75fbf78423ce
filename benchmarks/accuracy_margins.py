"""How tight the tolerance is: error/allowed ratios of correct implementations, and detection margins of faults.

    python benchmarks/accuracy_margins.py [--examples N] [--out benchmarks/accuracy_margins.txt]

``ratio`` is the verdict's |computed - exact| / (safety_factor * bound + eta) of the worst component of a
record: a pass is a ratio <= 1. For correct code the largest ratio says how close the policy comes to a
false alarm (kappa * ratio is the error in units of the bound itself); for a fault the smallest flagged ratio
says by how much it misses the tolerance. "uninformative" counts components whose bound is at least the
exact value's magnitude (the bound says nothing about them: typically results that are noise for every
correct evaluation, such as dL/da in a saturated sigmoid).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.judge.compare import PASS  # noqa: E402
from conformance.formats import DTYPES  # noqa: E402
from conformance.spec import load_spec  # noqa: E402
from tests.accuracy_backends import CORRECT, FAULTS  # noqa: E402
from tests.accuracy_support import sweep  # noqa: E402



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=None, help="cases per cell (default: the spec's counts)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "accuracy_margins.txt"))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    spec = load_spec(ROOT / "spec" / "two_layer_sigmoid_xent.yaml")
    kappa = spec.tolerance.safety_factor
    lines: list[str] = []
    runs = {name: sweep(spec, name, examples=args.examples) for name in list(CORRECT) + list(FAULTS)}

    # correct code: the largest ratios, per dtype and per quantity
    comps: dict[str, int] = defaultdict(int)
    worst: dict[str, tuple[float, str]] = {}
    per_q: dict[tuple[str, str], float] = defaultdict(float)
    ratios: dict[str, list[float]] = defaultdict(list)
    nonfinite = 0
    for name in CORRECT:
        for r in runs[name]:
            if r.status != PASS:
                nonfinite += r.detail == "nonfinite"
                continue
            comps[r.dtype] += r.components
            ratio = r.max_ratio or 0.0
            ratios[r.dtype].append(ratio)
            per_q[(r.quantity, r.dtype)] = max(per_q[(r.quantity, r.dtype)], ratio)
            if ratio > worst.get(r.dtype, (-1.0, ""))[0]:
                worst[r.dtype] = (ratio, f"{name}: {r.quantity} [{r.layout}, {r.regime}"
                                         + (f" {r.magnitude:g}" if r.magnitude is not None else "") + "]")
    lines.append(f"Correct implementations ({len(CORRECT)}), every layout/dtype/regime of the seed spec, "
                 f"{'spec counts of' if args.examples is None else args.examples} case(s) per cell; safety factor "
                 f"{kappa:g}.")
    lines.append(f"Non-passing records: {nonfinite}, all non-finite results of the composed forms where a "
                 "probability underflows.")
    lines.append("")
    lines.append(f"{'dtype':10s}{'components':>12s}{'max ratio':>11s}{'p99':>8s}{'median':>8s}  worst at")
    for d in DTYPES:
        rs = np.array(ratios[d])
        lines.append(f"{d:10s}{comps[d]:>12d}{worst[d][0]:>11.3f}{np.quantile(rs, 0.99):>8.3f}"
                     f"{np.median(rs):>8.3f}  {worst[d][1]}")
    lines.append("")
    lines.append("Largest ratio per quantity (correct code; 1 = the tolerance itself; 1/ratio = unused headroom):")
    quantities = sorted({q for q, _ in per_q})
    lines.append(f"{'quantity':20s}" + "".join(f"{d:>10s}" for d in DTYPES))
    for q in quantities:
        lines.append(f"{q:20s}" + "".join(f"{per_q[(q, d)]:>10.3f}" for d in DTYPES))

    # how informative the bound is: components whose bound is no smaller than the value itself
    lines.append("")
    lines.append("Uninformative components (bound >= |exact|), spec-order implementation, per regime:")
    unin: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in runs["spec-order"]:
        unin[(r.regime, r.dtype)][0] += r.uninformative
        unin[(r.regime, r.dtype)][1] += r.components
    lines.append(f"{'regime':22s}" + "".join(f"{d:>10s}" for d in DTYPES))
    for regime in spec.regimes:
        cells = []
        for d in DTYPES:
            u, n = unin[(regime, d)]
            cells.append(f"{100 * u / n:>9.1f}%" if n else f"{'-':>10s}")
        lines.append(f"{regime:22s}" + "".join(cells))

    # faults: how far beyond the tolerance
    lines.append("")
    lines.append("Seeded faults: case-quantities flagged, and the smallest / median ratio among flagged finite results:")
    for name in FAULTS:
        parts = []
        for d in DTYPES:
            rs = [r for r in runs[name] if r.dtype == d]
            bad = [r for r in rs if r.status != PASS]
            fin = sorted(r.max_ratio for r in bad if r.detail == "out_of_bound")
            nf = sum(r.detail == "nonfinite" for r in bad)
            if not bad:
                parts.append(f"{d} 0/{len(rs)}")
            else:
                tail = f", ratio >= {fin[0]:.3g} (median {np.median(fin):.3g})" if fin else ""
                parts.append(f"{d} {len(bad)}/{len(rs)}" + (f" ({nf} non-finite)" if nf else "") + tail)
        lines.append(f"  {name}: " + "; ".join(parts))
    lines.append("")
    lines.append(f"(benchmarks/accuracy_margins.py, {time.perf_counter() - started:.0f} s)")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
