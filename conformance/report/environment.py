"""The environment table of a backend report: harness, spec, backend, machine, oracle and settings of a run.

Read from the results document only (its ``harness``, ``spec``, ``backend``,
``environment``, ``oracle`` and ``settings`` sections), one (label, value) row
per fact, in the order the report prints them.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["environment_rows"]


def environment_rows(doc: Mapping[str, Any], results_name: str, results_sha: str) -> tuple[tuple[str, str], ...]:
    """(label, value) rows that say what was run where, so a reader can judge and repeat a report's figures."""
    env = dict(doc.get("environment", {}))
    backend = doc.get("backend", {})
    spec = doc.get("spec", {})
    oracle = doc.get("oracle", {})
    settings = doc.get("settings", {})
    rows: list[tuple[str, str]] = []
    harness = doc.get("harness", {})
    rows.append(("harness", f"{harness.get('name', 'gradconform')} {harness.get('version', '?')}"))
    rows.append(("spec", f"{spec.get('name', '?')} — {spec.get('title', '')}".rstrip(" —")))
    rows.append(("spec sha256", str(spec.get("sha256", "?"))))
    target = backend.get("target", "")
    source = backend.get("source", "")
    rows.append(("backend", f"{backend.get('name', '?')}" + (f" ({target}, {source})" if target else "")))
    if backend.get("description"):
        rows.append(("backend computes", str(backend["description"])))
    versions = backend.get("versions") or {}
    rows.append(("backend libraries", ", ".join(f"{k} {v}" for k, v in versions.items()) or "—"))
    rows.append(("device", str(backend.get("device", "—"))))
    if backend.get("dtypes"):
        rows.append(("dtypes offered", ", ".join(backend["dtypes"])))
    if not backend.get("available", True):
        rows.append(("backend unavailable", str(backend.get("reason", ""))))
    py = env.pop("python", None)
    impl = env.pop("implementation", None)
    if py:
        rows.append(("Python", f"{py}" + (f" ({impl})" if impl else "")))
    for key, label in (("platform", "platform"), ("machine", "machine")):
        if key in env:
            rows.append((label, str(env.pop(key))))
    cpu = env.pop("cpu", None)
    count = env.pop("cpu_count", None)
    if cpu is not None or count is not None:
        rows.append(("CPU", f"{cpu or '?'}" + (f" ({count} logical cores)" if count else "")))
    if "blas" in env:
        rows.append(("BLAS (numpy)", str(env.pop("blas"))))
    if "OPENBLAS_CORETYPE" in env:
        v = env.pop("OPENBLAS_CORETYPE")
        rows.append(("OPENBLAS_CORETYPE", str(v) if v else "(unset)"))
    for key in ("numpy", "mpmath", "hypothesis"):
        if key in env:
            rows.append((f"{key} (harness)", str(env.pop(key))))
    for key in sorted(env):
        rows.append((key, str(env[key])))
    precisions = [c.get("precision") for c in doc.get("cases", []) if isinstance(c.get("precision"), int) and c.get("precision")]
    oracle_text = str(oracle.get("engine", "?"))
    if oracle.get("start_bits"):
        oracle_text += f"; starts at {oracle['start_bits']} bits, escalates up to {oracle.get('max_bits', '?')} bits"
    if oracle.get("target_bits"):
        oracle_text += f" until {oracle['target_bits']} bits are certified"
    rows.append(("oracle", oracle_text))
    if precisions:
        rows.append(("oracle precision used", f"{min(precisions)}–{max(precisions)} bits "
                                               f"({sum(p > min(precisions) for p in precisions)} of {len(precisions)} "
                                               f"cases needed more than {min(precisions)})"))
    rows.append(("seed", str(settings.get("seed", "?"))))
    rows.append(("cases per cell", "the spec's own" if settings.get("examples") is None else str(settings["examples"])))
    if "timeout" in settings:
        rows.append(("timeout per case", f"{settings['timeout']:g} s"))
    if "isolate" in settings:
        rows.append(("isolation", "backend in a worker process" if settings["isolate"] else "backend in the test process"))
    rows.append(("date", str(doc.get("created", "?"))))
    if doc.get("seconds") is not None:
        rows.append(("run time", f"{float(doc['seconds']):.0f} s"))
    rows.append(("results file", f"{results_name} (sha256 {results_sha})"))
    return tuple(rows)
