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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from conformance.views.bench.breakdown import run_breakdown
from conformance.views.bench.common import REPO, WIDTHS, machine, machine_slug
from conformance.views.bench.faults import FaultyBackward
from conformance.views.bench.oracle_width import oracle_by_width, width_inputs
from conformance.views.bench.peers import peers
from conformance.views.bench.render import render
from conformance.views.bench.seed import faults_caught_by_us, seed_case_check
from conformance.views.bench.suite import available_backends, suite_times
from conformance.oracle.engines.base import EngineUnavailable
from conformance.oracle.engines.select import get_engine

__all__ = ["add_arguments", "main", "width_inputs", "FaultyBackward"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="file to write (.md, and .json beside it); default benchmarks/results-<machine>.md")
    p.add_argument("--quick", action="store_true",
                   help="small widths only, no suite runs (a minute)")
    p.add_argument("--widths", default=None, help="comma-separated widths (default 5,16,64,256,1024)")
    p.add_argument("--engines", default="flint,mpmath",
                   help="oracle engines to time (default flint,mpmath; the first one installed is used for the other "
                        "backends' suite runs: flint, the oracle's default, where python-flint is installed)")
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


def main(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, flush=True)

    info = machine()
    doc: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": info,
                           "args": " ".join(a for a in sys.argv[2:]) if len(sys.argv) > 2 else ""}
    log(f"gradconform bench on {info.get('cpu')} ({info.get('cpu_count')} cores), load {info['load_average']}")
    widths = [int(w) for w in args.widths.split(",")] if args.widths else \
        ([5, 16, 64] if args.quick else list(WIDTHS))

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
        doc["faults_caught_by_us"] = faults_caught_by_us(log)
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
