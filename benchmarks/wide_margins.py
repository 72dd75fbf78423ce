"""Accuracy at width: error/allowed of correct implementations and of a 16-bit accumulator on the wide family.

    python benchmarks/wide_margins.py [--oracle flint] [--out benchmarks/wide_margins.txt]

The default families have widths of at most 7, where a float16 accumulator's extra error stays below what a
correct evaluation may make. This runs the spec's wide regime (family ``wide``: n 16, d_in = hidden = 64,
d_out 100; ``--gc-wide`` in a suite run) for the built-in backends, every correct implementation of
``tests/accuracy_backends.py`` and the ``16bit-accumulation`` fault (float16 sums accumulated in float16,
bfloat16 in bfloat16), and prints the worst ratio |computed - exact| / (kappa B + eta) per dtype and per
quantity: for correct code it must stay <= 1 (and says how much of kappa's margin the widths use), for the
fault it must exceed 1 in the 16-bit dtypes. The fault's ratios on the default families are printed beside.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.formats import DTYPES  # noqa: E402
from conformance.run.run import Run, RunCache  # noqa: E402
from conformance.spec import load_spec  # noqa: E402
from conformance.statuses import PASS  # noqa: E402
from tests.accuracy_backends import CORRECT, target  # noqa: E402

SLOW = {"bias-first-fma"}  # exact-rational FMA emulation: minutes at width (run with --all)


def _records(spec, backend, regimes, cache, oracle):
    out = []
    with Run(spec, backend, isolate=False, cache=cache, oracle=oracle) as run:
        for layout in spec.layouts:
            for dtype in DTYPES:
                for regime in regimes:
                    # the kinds a hand-written first-order implementation declines (forward mode, second order)
                    out.extend(r for r in run.group(layout, dtype, regime).records if r.detail != "declined")
    return out


def _summary(name, records, lines):
    worst: dict[str, float] = defaultdict(float)
    per_q: dict[str, tuple[float, str]] = {}
    bad = 0
    for r in records:
        ratio = r.max_ratio or 0.0
        if r.status != PASS and r.detail != "out_of_bound":
            bad += 1
            continue
        worst[r.dtype] = max(worst[r.dtype], ratio)
        if ratio > per_q.get(r.dtype, (-1.0, ""))[0]:
            per_q[r.dtype] = (ratio, r.quantity)
    soft = {d: max((r.max_ratio or 0.0) for r in records if r.dtype == d and r.quantity in ("yhat", "dL/dtheta"))
            for d in DTYPES}
    failed = sum(r.status != PASS for r in records)
    lines.append(f"{name:24s} " + "  ".join(f"{d} {per_q[d][0]:8.3g} ({per_q[d][1]})" for d in DTYPES if d in per_q)
                 + f"   not passing: {failed}/{len(records)}"
                 + "\n" + " " * 25 + "softmax (yhat, dL/dtheta): " + "  ".join(f"{d} {soft[d]:.3g}" for d in DTYPES) + (f" ({bad} not out_of_bound)" if bad else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--oracle", default=None, help="oracle engine (default mpmath)")
    ap.add_argument("--all", action="store_true", help="also the slow FMA emulation")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "wide_margins.txt"))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    spec = load_spec(ROOT / "spec" / "two_layer_sigmoid_xent.yaml")
    wide = [r for r in spec.regimes if spec.is_wide(r)]
    cache = RunCache()
    lines = [f"wide regimes {wide}: family sizes {dict(spec.families['wide'].sizes)}; kappa "
             f"{spec.tolerance.safety_factor}; worst error/allowed (quantity) per dtype", ""]
    names = ["numpy", "torch", "jax"] + [n for n in CORRECT if args.all or n not in SLOW]
    for name in names:
        backend = name if name in ("numpy", "torch", "jax") else target(name)
        t = time.perf_counter()
        try:
            recs = _records(spec, backend, wide, cache, args.oracle)
        except Exception as exc:  # a framework that is not installed
            lines.append(f"{name:24s} unavailable: {exc}")
            continue
        _summary(name, recs, lines)
        print(lines[-1], f"[{time.perf_counter() - t:.0f} s]", flush=True)
    lines += ["", "fault 16bit-accumulation (float16 sums in float16, bfloat16 in bfloat16):"]
    _summary("  wide family", _records(spec, target("16bit-accumulation"), wide, cache, args.oracle), lines)
    print(lines[-1], flush=True)
    narrow = spec.without_wide()
    _summary("  default families", _records(narrow, target("16bit-accumulation"), list(narrow.regimes),
                                            RunCache(), args.oracle), lines)
    print(lines[-1], flush=True)
    lines.append(f"\n({time.perf_counter() - started:.0f} s)")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
