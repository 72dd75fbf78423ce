"""Failure groups: the failing records of one pytest test (quantity × layout × dtype × regime), its worst case,
its minimal counterexample and the commands that rerun them.

Every figure is copied from a record or a case of the results file; the
inputs are decoded from the exact hex floats stored with each case.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from conformance.results.naming import (FORWARD_TEST, IDENTITY_TEST, QuantityTest, case_rerun_command, node_id,
                                        parse_node_id, parse_quantity_param, pytest_command, quantity_param,
                                        quantity_test_function)
from conformance.spec import spec_dir

from .numbers import fmt_value, num
from .stats import FAILING

__all__ = ["WorstCase", "Counterexample", "FailureGroup", "failure_groups", "case_inputs_text", "ratio_key"]


@dataclass(frozen=True)
class WorstCase:
    case: str
    family: str
    magnitude: float | None
    status: str
    detail: str
    message: str
    index: str
    got: str
    exact: str
    abs_err: float | None
    rel_err: float | None
    ulp: float | None
    bound: str
    allowed: str
    ratio: float | None
    inputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Counterexample:
    case: str
    family: str
    magnitude: float | None
    status: str
    detail: str
    got: str
    exact: str
    ratio: float | None
    inputs: tuple[tuple[str, str], ...]
    rerun: str


@dataclass(frozen=True)
class FailureGroup:
    quantity: str
    kind: str
    layout: str
    dtype: str
    regime: str
    anchor: str
    bad: int
    total: int
    breakdown: tuple[tuple[str, int], ...]  # ("fail (nonfinite)", 16)
    failing_magnitudes: tuple[float, ...]
    magnitudes: tuple[float, ...]
    families: tuple[str, ...]
    worst: WorstCase
    counterexample: Counterexample | None
    rerun: str
    pytest: str
    cause: str = ""  # the diagnosis of the worst record, its explanation only ("an overflow, 0/0 or log(0) on the way")


def _matrix_text(shape: Sequence[int], values: Sequence[str]) -> str:
    """A row-major matrix as a Python literal, one row per line: copyable, and exact (shortest round-trip)."""
    rows, cols = (list(shape) + [1, 1])[:2] if shape else (1, len(values))
    rows, cols = int(rows), int(cols)
    lines = []
    for i in range(rows):
        lines.append("[" + ", ".join(values[i * cols:(i + 1) * cols]) + "]")
    return "[" + ",\n ".join(lines) + "]"


def case_inputs_text(case: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Each input of a case as (name with shape, exact values): decoded from the hex floats of the results file."""
    out = []
    for name, v in case.get("inputs", {}).items():
        vals = []
        for h in v.get("hex", []):
            try:
                vals.append(repr(float.fromhex(h)))
            except (TypeError, ValueError):
                vals.append(str(h))
        shape = v.get("shape", [])
        out.append((f"{name} ({' × '.join(str(s) for s in shape)})", _matrix_text(shape, vals)))
    return tuple(out)


def _pytest_command(doc: Mapping[str, Any], quantity: str, kind: str, layout: str, dtype: str, regime: str) -> str:
    """The pytest command that reruns exactly one test (by node id: ``-k`` matches substrings, and
    ``a-row-float64-benign`` is a substring of ``dL/dtheta-row-float64-benign``)."""
    wanted = QuantityTest(quantity, layout, dtype, regime)
    nodeid = None
    for t in doc.get("tests", []):
        node = parse_node_id(str(t.get("nodeid", "")))
        if node.function in (FORWARD_TEST, IDENTITY_TEST) and parse_quantity_param(node.param) == wanted:
            nodeid = str(t["nodeid"])
            break
    if nodeid is None:
        nodeid = node_id(quantity_test_function(kind), quantity_param(quantity, layout, dtype, regime))
    backend = doc.get("backend", {})
    name = backend.get("target") if backend.get("source") == "module:attr" else (backend.get("requested") or backend.get("name"))
    settings = doc.get("settings", {})
    spec_path = doc.get("spec", {}).get("path")
    device = backend.get("device")
    # the seed always explicit: the command stays exact if the default ever changes
    return pytest_command(nodeid, str(name), seed=settings.get("seed"), examples=settings.get("examples"),
                          spec=str(spec_path) if spec_path and not _is_shipped_spec(str(spec_path)) else None,
                          device=str(device) if device and device != "cpu" else None,
                          wide=settings.get("wide") is True)  # a wide run's tests may exist only with --gc-wide


def _is_shipped_spec(path: str) -> bool:
    name = Path(path).name
    return (spec_dir() / name).is_file() and Path(path).parent.name in ("spec", "_spec")


def _anchor(*parts: str) -> str:
    raw = "-".join(parts)
    safe = "".join(c if c.isalnum() else "-" for c in raw).strip("-")
    while "--" in safe:
        safe = safe.replace("--", "-")
    return "fail-" + safe.lower() + "-" + hashlib.sha256(raw.encode()).hexdigest()[:6]


def failure_groups(doc: Mapping[str, Any], by_group: Mapping[tuple[str, str, str, str], Sequence[Mapping[str, Any]]],
                   order: Callable[[tuple[str, str, str, str]], Any], results_display: str) -> tuple[FailureGroup, ...]:
    """The failure groups of a run, in ``order`` of their (quantity, layout, dtype, regime) key: one per pytest test
    with a failing record, grouped as the tests are."""
    cex_by_group: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for ce in doc.get("counterexamples", []):
        key = (ce.get("quantity"), ce.get("layout"), ce.get("dtype"), ce.get("regime"))
        cex_by_group.setdefault(key, ce)  # type: ignore[arg-type]
    cases = {c["id"]: c for c in doc.get("cases", [])}
    failures: list[FailureGroup] = []
    for key in sorted(by_group, key=order):
        recs = by_group[key]
        bad = [r for r in recs if r["status"] in FAILING]
        if not bad:
            continue
        q, lname, d, reg = key
        kinds = Counter(r["status"] + (f" ({r['detail']})" if r.get("detail") else "") for r in bad)
        w = max(bad, key=lambda r: (r["status"] == "fail", ratio_key(r.get("max_ratio")), r["case"]))
        case = cases.get(w["case"], {})
        worst_case = WorstCase(
            case=w["case"], family=str(w.get("family", "")), magnitude=num(w.get("magnitude")), status=w["status"],
            detail=str(w.get("detail", "")), message=str(w.get("message", "")),
            index=str(tuple(w["worst_index"])) if w.get("worst_index") is not None else "—",
            got=fmt_value(w.get("worst_got")), exact=fmt_value(w.get("worst_exact")),
            abs_err=num(w.get("max_abs_err")), rel_err=num(w.get("max_rel_err")), ulp=num(w.get("max_ulp")),
            bound=fmt_value(w.get("worst_bound")), allowed=fmt_value(w.get("worst_allowed")),
            ratio=num(w.get("max_ratio")), inputs=case_inputs_text(case) if case else ())
        cex = None
        ce = cex_by_group.get(key)
        if ce is not None:
            crec = next((r for r in ce.get("records", []) if r.get("quantity") == q), {})
            ccase = ce.get("case", {})
            cex = Counterexample(
                case=str(ccase.get("id", "?")), family=str(ccase.get("family", "")), magnitude=num(ccase.get("magnitude")),
                status=str(crec.get("status", "?")), detail=str(crec.get("detail", "")),
                got=fmt_value(crec.get("worst_got")), exact=fmt_value(crec.get("worst_exact")),
                ratio=num(crec.get("max_ratio")), inputs=case_inputs_text(ccase),
                rerun=case_rerun_command(results_display, str(ccase.get("id", "?")), q))
        all_mags = sorted({m for m in (num(r.get("magnitude")) for r in recs) if m is not None})
        bad_mags = sorted({m for m in (num(r.get("magnitude")) for r in bad) if m is not None})
        failures.append(FailureGroup(
            quantity=q, kind=str(w.get("kind", "")), layout=lname, dtype=d, regime=reg, anchor=_anchor(q, lname, d, reg),
            bad=len(bad), total=len(recs), breakdown=tuple(sorted(kinds.items())),
            failing_magnitudes=tuple(bad_mags), magnitudes=tuple(all_mags),
            families=tuple(sorted({str(r.get("family", "")) for r in bad})), worst=worst_case, counterexample=cex,
            rerun=case_rerun_command(results_display, w["case"], q),
            pytest=_pytest_command(doc, q, str(w.get("kind", "")), lname, d, reg), cause=_cause(w)))

    return tuple(failures)


def _cause(record: Mapping[str, Any]) -> str:
    """What the diagnosis of a record says the mistake is, without the figures before it (the last clause after
    a colon of its message), or "" when the record has no diagnosis."""
    diag = record.get("diagnosis") or {}
    message = str(diag.get("message", "")) if isinstance(diag, Mapping) else ""
    return message.rsplit(": ", 1)[-1].strip() if ": " in message else ""


def ratio_key(x: Any) -> float:
    f = num(x)
    if f is None:
        return -1.0
    return float("inf") if f != f else f


