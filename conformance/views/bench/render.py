"""The benchmark's markdown report, from its JSON document."""

from __future__ import annotations

from typing import Any, Mapping

from conformance.views.bench.common import fmt_s
from conformance.views.bench.faults import FAULTS

__all__ = ["render"]


def render(doc: Mapping[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# gradconform benchmark: {m.get('cpu') or 'unknown CPU'}, {m.get('cpu_count')} cores", "",
             f"Run {doc['created']} with `gradconform bench{' ' + doc['args'] if doc['args'] else ''}`; "
             f"load average {m['load_average']} before, {doc.get('load_after')} after "
             f"(other jobs share this machine: wall times above the CPU times mean waiting for a core). "
             f"Python {m.get('python')}, numpy {m.get('numpy')}, BLAS {m.get('blas')}, "
             f"OPENBLAS_CORETYPE={m.get('OPENBLAS_CORETYPE') or '(unset)'}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    stamps = doc.get("measured", {})
    if stamps:
        lines += ["Sections measured: " + "; ".join(f"{k} at {v['at']} (load {v['load_before']})"
                                                     for k, v in stamps.items()) + ".", ""]
    if doc.get("oracle"):
        lines += ["## Oracle per case, by engine and width", "",
                  "Seed network, row layout, one sample, d_in = hidden = d_out = width (5 is the seed's 5-3-5). "
                  "`gradients`: forward values and every gradient identity; `all`: every identity, Jacobians "
                  "included. Certified values plus float64 node values; warm = the same case from the cache.", "",
                  "| width | engine | workload | components | time (wall) | cpu | bits | warm cache |",
                  "|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in doc["oracle"]:
            if "skipped" in r:
                lines.append(f"| {r['width']} | {r['engine']} | {r['workload']} | | skipped: {r['skipped']} | | | |")
                continue
            lines.append(f"| {r['width']} | {r['engine']} | {r['workload']} | {r['components']} | "
                         f"{fmt_s(r['wall_s'])} | {fmt_s(r['cpu_s'])} | {r['precision']} | "
                         f"{fmt_s(r.get('warm_cache_s'))} |")
        lines.append("")
    if doc.get("seed_case"):
        s = doc["seed_case"]
        p = doc.get("peers", {})
        lines += ["## One seed-shape case, warm process, against the peers", "",
                  f"Case {s['case']} (float64, benign): every quantity of the row layout ({s['quantities']}: "
                  "forward values, gradients, Jacobians) judged against the certified oracle with the "
                  "condition-aware bound; the backend (numpy) answers through its isolated worker process. "
                  "Peers check the gradient of L with respect to all five parameters by finite differences.", "",
                  "| check | time per check | faults caught (1e-7 rel. in dL/dx, 1e-4, float32 backward) |",
                  "|---|---:|---|"]
        caught = doc.get("faults_caught_by_us", {})
        for eng in [k for k in ("flint", "mpmath") if k in s]:
            e = s[eng]
            lines.append(f"| gradconform, {eng} oracle (oracle {fmt_s(e['oracle_s'])}, backend "
                         f"{fmt_s(e['backend_roundtrip_s'])}, bounds {fmt_s(e['bounds_s'])}, comparisons "
                         f"{fmt_s(e.get('compare_s'))}) | "
                         f"{fmt_s(e['check_s'])} | {_caught(caught)} |")
        t = p.get("torch", {})
        if "gradcheck_s" in t:
            lines.append(f"| torch.autograd.gradcheck (torch {t['version']}) | {fmt_s(t['gradcheck_s'])} | "
                         f"{_caught(t['caught'])} |")
            lines.append(f"| gradcheck fast_mode | {fmt_s(t['gradcheck_fast_s'])} | |")
        j = p.get("jax", {})
        if "check_grads_s" in j:
            lines.append(f"| jax.test_util.check_grads, rev (jax {j['version']}) | {fmt_s(j['check_grads_s'])} | "
                         f"{_caught(j['caught'])} |")
        if "gradcheck_s" in t:
            best = min((k for k in ("flint", "mpmath") if k in s), key=lambda k: s[k]["check_s"])
            ratio = t["gradcheck_s"] / s[best]["check_s"]
            lines += ["", f"gradcheck / gradconform ({best}): {ratio:.1f}x per check; per quantity checked "
                      f"{t['gradcheck_s'] / 5 / (s[best]['check_s'] / s['quantities']):.1f}x (gradcheck: the 5 "
                      f"parameter gradients; gradconform: {s['quantities']} quantities). torch import "
                      f"{fmt_s(p.get('torch_import_s'))}, jax import {fmt_s(p.get('jax_import_s'))} "
                      "(paid once per worker process)."]
        lines.append("")
    if doc.get("breakdown"):
        lines += ["## Where a run's time goes (in process, numpy backend isolated)", "",
                  "| engine | cache | total | cases | generation | case cache | oracle | backend | bounds | compare | "
                  "records | verification | other |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for eng, by in doc["breakdown"].items():
            for label, b in by.items():
                ph = b["phases"]
                cells = [f"{fmt_s(ph.get(k, 0.0))} ({ph.get(k, 0.0) / b['total_s']:.0%})"
                         for k in ("generation", "case cache", "oracle", "backend", "bounds", "compare", "records",
                                   "verification", "other")]
                lines.append(f"| {eng} | {label} | {fmt_s(b['total_s'])} | {b['cases']} | " + " | ".join(cells) + " |")
        lines += ["", "Backend = the round trips to the isolated worker process (one per group) including the "
                  "backend's own work; oracle and verification include their cache reads when warm; other = "
                  "requests, preconditions, bookkeeping. Harness overhead = everything but the oracle and the "
                  "backend."]
        for eng, by in doc["breakdown"].items():
            for label, b in by.items():
                ph = b["phases"]
                over = b["total_s"] - ph.get("oracle", 0.0) - ph.get("backend", 0.0)
                lines.append(f"- {eng}, {label} cache: harness overhead {fmt_s(over)} of {fmt_s(b['total_s'])} "
                             f"({over / b['total_s']:.0%}), {fmt_s(over / b['cases'])} per case.")
        lines.append("")
    if doc.get("suite"):
        lines += ["## The default suite (`pytest conformance --gc-backend B`), per backend", "",
                  "| backend | oracle | workers | cache | wall | cpu (all processes) | load before | result |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for r in doc["suite"]:
            lines.append(f"| {r['backend']} | {r['engine']} | {r['workers']} | {r['cache']} | {r['wall_s']:.1f} s | "
                         f"{r['cpu_s']:.1f} s | {r['load_before']} | {r['summary']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _caught(c: Mapping[str, bool]) -> str:
    if not c:
        return "-"
    return ", ".join(("caught" if c.get(k) else "missed") for k in FAULTS)
