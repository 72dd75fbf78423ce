"""Benchmark section 3: one seed-shape case checked end to end, and whether the check catches seeded faults."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.views.bench.common import fmt_s, median_time
from conformance.views.bench.faults import FAULTS
from conformance.cases.generate import Case, case_id
from conformance.judge.bounds import ErrorBounds
from conformance.judge.compare import compare, compare_many
from conformance.oracle import evaluate as oracle
from conformance.run.run import Run
from conformance.spec import load_spec
from conformance.spec.model import DIRECTION_ROLES
from conformance.spec.shapes import concrete

__all__ = ["seed_case", "seed_case_check", "faults_caught_by_us"]


def seed_case() -> Any:
    """A generic seed-shape case (x 1x5, W1 5x3, W2 3x5), float64: standard normal inputs, a one-hot label.
    (Not the first generated case: hypothesis starts from the simplest inputs, zeros included.)"""

    spec = load_spec(None)
    rng = np.random.default_rng(20161104)
    inputs = {"x": rng.standard_normal((1, 5)), "W1": rng.standard_normal((5, 3)), "b1": rng.standard_normal((1, 3)),
              "W2": rng.standard_normal((3, 5)), "b2": rng.standard_normal((1, 5)), "y": np.eye(5)[[2]]}
    sizes = {"n": 1, "d_in": 5, "hidden": 3, "d_out": 5}
    shapes = spec.layouts["row"].shapes
    for name, info in spec.inputs.items():  # the tangents and cotangents of the forward-mode and second-order kinds
        if info.get("role") in DIRECTION_ROLES and name in shapes:
            inputs[name] = rng.standard_normal(tuple(d if isinstance(d, int) else sizes[d] for d in shapes[name]))
    cid = case_id("row", "float64", "benign", "seed", None, inputs)
    return spec, Case(cid, "row", "float64", "benign", "seed", sizes, None, inputs)


def seed_case_check(repeat: int, log: Callable[[str], None], engines: tuple[str, ...] = ("flint", "mpmath")
                    ) -> dict[str, Any]:
    """Our end-to-end check of one seed-shape case, warm, per engine (cache off), and its phases."""

    spec, case = seed_case()
    lay = spec.layouts["row"]
    out: dict[str, Any] = {"case": case.id, "quantities": 0}
    for engine in engines:
        with Run(spec, "numpy", oracle=engine) as run:
            run.info
            records: list[Any] = []

            def check() -> None:
                records[:] = run.evaluate_case(case)[0]

            wall, cpu = median_time(check, repeat)
            sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
            ev_holder: list[Any] = []
            o_wall, _ = median_time(lambda: ev_holder.append(oracle.evaluate(lay, case.inputs, sized,
                                                                              engine=engine)), repeat)
            ev = ev_holder[-1]
            req = run.request_for(case, sized)
            b_wall, _ = median_time(lambda: run.worker.evaluate(req), repeat)
            def bounds() -> None:
                b = ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, spec.tolerance)
                for i in sized:
                    b.bound(i.expr, i.kind)

            bd_wall, _ = median_time(bounds, repeat)
            reply = run.worker.evaluate(req)
            bnd = ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, spec.tolerance)
            items = [(d.name, d.expr, d.shape) for d in lay.forward] + [(i.id, i.expr, i.shape) for i in sized]
            kinds = {i.id: i.kind for i in sized}
            bl = {q: bnd.bound(e, kinds.get(q)) for q, e, _ in items}
            shapes = {q: concrete(sh, case.sizes) for q, _, sh in items}
            kappa = spec.tolerance.safety_factor
            cmp_wall, _ = median_time(lambda: compare_many([(reply.values[q], ev.values[q], bl[q], shapes[q])
                                                            for q, _, _ in items], dtype=case.dtype,
                                                           safety_factor=kappa), repeat)
            one_wall, _ = median_time(lambda: [compare(reply.values[q], ev.values[q], bl[q], dtype=case.dtype,
                                                        expected_shape=shapes[q], safety_factor=kappa)
                                                for q, _, _ in items], repeat)
        out[engine] = {"check_s": wall, "check_cpu_s": cpu, "oracle_s": o_wall, "backend_roundtrip_s": b_wall,
                       "bounds_s": bd_wall, "compare_s": cmp_wall,
                       "compare_one_by_one_s": one_wall, "statuses": sorted({r.status for r in records})}
        out["quantities"] = len(records)
        log(f"  one seed case, {engine} oracle: {fmt_s(wall)} for {len(records)} quantities "
            f"(oracle {fmt_s(o_wall)}, backend round trip {fmt_s(b_wall)}, bounds {fmt_s(bd_wall)}, "
            f"comparisons {fmt_s(cmp_wall)} stacked, {fmt_s(one_wall)} one by one)")
    return out


def faults_caught_by_us(log: Callable[[str], None]) -> dict[str, bool]:
    """Our verdict on dL/dx (and every gradient) of the seed case, for each seeded fault."""

    spec, case = seed_case()
    found = {}
    for fault in FAULTS:
        with Run(spec, f"conformance.views.bench.faults:_fault_{fault}", isolate=False) as run:
            records = run.evaluate_case(case)[0]
        found[fault] = any(r.status == "fail" for r in records if r.quantity.startswith("dL/dx"))
    log(f"  faults caught by the conformance check: {found}")
    return found
