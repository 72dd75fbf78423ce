"""The results document of a run (schema ``gradconform-results/1``), built from its parts.

The fields and their order are those of conformance/results/schema.json and
docs/results.md; the report layer reads nothing else.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from conformance._version import __version__
from conformance.cache.case_cache import CaseCache
from conformance.cache.oracle_cache import OracleCache
from conformance.execution.registry import BackendRef
from conformance.execution.wire import versions_dict
from conformance.execution.worker import BackendInfo
from conformance.oracle import evaluate as oracle
from conformance.oracle.engines.base import Engine
from conformance.results.document import SCHEMA, environment, now
from conformance.results.summary import summarize
from conformance.run.group import Group
from conformance.formats import DTYPES
from conformance.spec.model import Spec

__all__ = ["oracle_section", "backend_section", "build_document"]


def oracle_section(engine: Engine, oracle_cache: OracleCache | None, case_cache: CaseCache | None) -> dict[str, Any]:
    """The results file's ``oracle``: the engine and its version, the precision settings, the cache."""
    out: dict[str, Any] = dict(engine.describe())
    out.update(start_bits=oracle.START_BITS, max_bits=oracle.MAX_BITS, target_bits=oracle.TARGET_BITS,
               tie_bits=oracle.TIE_BITS)
    if oracle_cache is not None and case_cache is not None:
        out["cache"] = {"path": str(oracle_cache.root), "oracle": oracle_cache.stats, "cases": case_cache.stats}
    else:
        out["cache"] = None
    return out


def backend_section(ref: BackendRef, info: BackendInfo, device: str) -> dict[str, Any]:
    """The results file's ``backend``: what was asked for, what answered, its versions and dtypes."""
    # "requested": what reruns it (`gradconform rerun`, `--gc-backend`): the target of a module:attr backend
    requested = ref.target if ref.source in ("module:attr", "object") else ref.name
    # normalised here too, on write: whatever BackendInfo holds, the file must pass its own schema
    return {"name": str(info.name if info.available else ref.name), "requested": str(requested),
            "target": str(ref.target), "source": str(ref.source), "description": str(info.description or ""),
            "available": bool(info.available), "reason": str(info.reason or ""),
            "versions": versions_dict(info.versions), "dtypes": [str(d) for d in info.dtypes], "device": str(device)}


def build_document(*, spec: Spec, seconds: float, backend: Mapping[str, Any], oracle_info: Mapping[str, Any],
                   settings: Mapping[str, Any], groups: Iterable[Group], worker: str,
                   verifications: list[dict[str, Any]], collected: Mapping[str, list[dict[str, Any]]]
                   ) -> dict[str, Any]:
    """The whole results document. ``settings``: seed, examples, timeout, shard and isolate (the spec's
    own settings are added here); ``collected``: the sections of conformance.run.collector."""
    groups = list(groups)
    cases: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for g in groups:
        for c in g.cases:
            cj = c.to_json()
            cj["precision"] = g.precision.get(c.id, 0)
            cases.append(cj)
        records.extend(r.to_json() for r in g.records)
    return {
        "schema": SCHEMA,
        "created": now(),
        "seconds": round(seconds, 3),
        "harness": {"name": "gradconform", "version": __version__},
        "spec": {"name": spec.name, "title": spec.title, "path": spec.path, "sha256": spec.sha256, "text": spec.source},
        "backend": dict(backend),
        "environment": environment(),
        "oracle": dict(oracle_info),
        "settings": {**settings, "safety_factor": spec.tolerance.safety_factor,
                     "dtypes": [d for d in DTYPES if d in spec.tolerance.accumulate],
                     "layouts": list(spec.layouts), "regimes": list(spec.regimes)},
        "cases": cases,
        "records": records,
        "summary": summarize(records),
        "verifications": verifications,
        "counterexamples": collected["counterexamples"],
        "tests": collected["tests"],
        "refutations": collected["refutations"],
        "metamorphic": collected["metamorphic"],
        "groups": [{"layout": g.layout, "dtype": g.dtype, "regime": g.regime, "cases": len(g.cases),
                    "seconds": round(g.seconds, 4), "worker": worker} for g in groups],
    }
