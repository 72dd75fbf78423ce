"""What a backend page says around its figures: the environment, the quantities and formulas, the tolerance, the regimes.

Pure functions of the results document and the spec it names (see
:mod:`.spec_source`); nothing here is a figure, only the words and formulas
a reader needs to read the figures.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from conformance.formats import get_format

from .latex import definition_latex, identity_latex
from .mathml import definition_mathml, identity_mathml
from .spec_source import SpecSource

__all__ = ["QuantityInfo", "display_path", "ordered", "environment_rows", "quantity_infos", "tolerance",
           "regime_sweeps"]


@dataclass(frozen=True)
class QuantityInfo:
    """A checked quantity as the report presents it (formula present only when the spec was verified)."""

    id: str
    kind: str  # value | gradient | jacobian | jvp | vjp | hessian | hvp
    layout: str
    mathml: str = ""
    latex: str = ""
    text: str = ""
    shape: str = ""
    requires: tuple[str, ...] = ()
    when: str = ""
    description: str = ""
    verified: int = 0
    verifications: int = 0
    refuted_reason: str = ""


def display_path(path: str | Path) -> str:
    """How a results file is named in commands: relative to the working directory when it is inside it."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, Path.cwd())).as_posix() if p.resolve().is_relative_to(Path.cwd().resolve()) \
            else p.as_posix()
    except ValueError:
        return p.as_posix()


def ordered(seen: Iterable[str], preferred: Sequence[str]) -> tuple[str, ...]:
    seen_set = list(dict.fromkeys(seen))
    out = [x for x in preferred if x in seen_set]
    out += sorted(x for x in seen_set if x not in out)
    return tuple(out)


def _shape_text(shape: Sequence[Any]) -> str:
    return " × ".join(str(s) for s in shape)


def environment_rows(doc: Mapping[str, Any], results_name: str, results_sha: str) -> tuple[tuple[str, str], ...]:
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


def quantity_infos(doc: Mapping[str, Any], source: SpecSource, layouts: Sequence[str],
                    seen: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, tuple[QuantityInfo, ...]]:
    verifs: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for v in doc.get("verifications", []):
        verifs[(str(v.get("layout")), str(v.get("identity")))].append(v)
    out: dict[str, tuple[QuantityInfo, ...]] = {}
    for lname in layouts:
        infos: list[QuantityInfo] = []
        lay = source.spec.layouts.get(lname) if source.spec is not None else None
        if lay is not None:
            for d in lay.forward:
                infos.append(QuantityInfo(d.name, "value", lname, definition_mathml(d.name, d.expr),
                                          definition_latex(d.name, d.expr), d.text, _shape_text(d.shape),
                                          description=d.description))
            for i in lay.identities:
                vs = verifs.get((lname, i.id), [])
                refuted = [v for v in vs if v.get("verdict") != "holds"]
                infos.append(QuantityInfo(
                    i.id, i.kind, lname, identity_mathml(i.of, i.wrt, i.expr), identity_latex(i.of, i.wrt, i.expr),
                    i.text, _shape_text(i.shape), tuple(i.requires),
                    ", ".join(f"{k} = {v}" for k, v in i.when.items()), i.description,
                    len(vs) - len(refuted), len(vs),
                    (f"{refuted[0].get('verdict')}: {refuted[0].get('reason', '')}" if refuted else "")))
        known = {q.id for q in infos}
        for qid, kind in seen.get(lname, ()):
            if qid not in known:  # checked but not in the spec at hand (absent or different spec)
                infos.append(QuantityInfo(qid, kind, lname))
                known.add(qid)
        out[lname] = tuple(infos)
    return out


def tolerance(source: SpecSource, doc: Mapping[str, Any], dtypes: Sequence[str]) -> dict[str, Any]:
    settings = doc.get("settings", {})
    tol: dict[str, Any] = {"safety_factor": settings.get("safety_factor"), "method": None, "dtypes": [],
                           "elementary": []}
    if source.spec is not None:
        pol = source.spec.tolerance
        tol["safety_factor"] = pol.safety_factor
        tol["method"] = pol.method
        tol["elementary"] = sorted(pol.elementary_error_u.items())
    for d in dtypes:
        try:
            fmt = get_format(d)
        except Exception:
            continue
        acc = source.spec.tolerance.accumulate.get(d, "?") if source.spec is not None else "?"
        acc_u = None
        try:
            acc_u = get_format(acc).u if acc != "?" else None
        except Exception:
            pass
        tol["dtypes"].append({"dtype": d, "p": fmt.p, "u": fmt.u, "eta": fmt.eta, "emin": fmt.emin,
                              "accumulate": acc, "acc_u": acc_u})
    return tol


def regime_sweeps(source: SpecSource) -> dict[str, str]:
    out: dict[str, str] = {}
    if source.spec is None:
        return out
    for name, reg in source.spec.regimes.items():
        parts = []
        for inp, g in reg.generators.items():
            if g.magnitude_sign:
                sign = "−" if g.magnitude_sign < 0 else "+"
                what = {"spike": f"one entry set to {sign}magnitude", "tied": "two equal entries of magnitude",
                        "signs": "entries of ±magnitude", "normal": "normal with scale magnitude"}.get(g.kind, g.kind)
                parts.append(f"{inp}: {what}")
        if parts:
            out[name] = "; ".join(parts)
    return out
