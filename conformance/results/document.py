"""Results files: one JSON document per run (schema ``gradconform-results/1``), merged across processes.

The report layer reads these files and nothing else. Every record says which
quantity, layout, dtype, regime, family and case it is about, its status and
detail, its error (absolute, relative, in ulps), the bound applied and the
ratio error/allowed; the cases are stored with their exact inputs, so every
figure in a report traces back to numbers that can be recomputed. The schema
is in ``conformance/results_schema.json`` and documented in docs/results.md.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from conformance.atomic import write_bytes_atomic
from conformance.results.summary import summarize

__all__ = ["SCHEMA", "Record", "make_record", "environment", "write_json_atomic", "read_json", "load_results", "merge",
           "validate"]

SCHEMA = "gradconform-results/1"


@dataclass(frozen=True)
class Record:
    """The verdict and grade of one quantity on one case."""

    quantity: str
    kind: str
    layout: str
    dtype: str
    regime: str
    family: str
    magnitude: float | None
    case: str
    status: str
    detail: str = ""
    message: str = ""
    components: int = 0
    max_ratio: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_ulp: float | None = None
    median_ulp: float | None = None
    worst_index: list[int] | None = None
    worst_got: float | None = None
    worst_exact: float | None = None
    worst_bound: float | None = None
    worst_allowed: float | None = None
    uninformative: int = 0
    toward_zero: int = 0  # inexact components below the exact value in magnitude (the sign-bias finding)
    away_from_zero: int = 0
    ulp_hist: list[int] = field(default_factory=list)
    diagnosis: dict[str, Any] | None = None  # for a failure: its class and why (conformance.judge.diagnose)

    def to_json(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in asdict(self).items()}


def _json_float(v: Any) -> Any:
    """JSON has no inf/nan: encode them as strings, keep everything else."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return v


def make_record(*, quantity: str, kind: str, layout: str, dtype: str, regime: str, family: str,
                magnitude: float | None, case: str, status: str, detail: str = "", message: str = "",
                diagnosis: dict[str, Any] | None = None, **measures: Any) -> Record:
    """A record; ``measures`` are the comparison's numbers (components, max_ratio, ... ulp_hist: the fields of
    :class:`Record` after ``message``), filled in by the judging step of the run."""
    return Record(quantity, kind, layout, dtype, regime, family, magnitude, case, status, detail, message,
                  diagnosis=diagnosis, **measures)


def _blas() -> str:
    try:
        import numpy as np

        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def environment() -> dict[str, Any]:
    import hypothesis
    import mpmath
    import numpy as np

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "mpmath": mpmath.__version__,
        "hypothesis": hypothesis.__version__,
        "blas": _blas(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON to ``path`` through a temporary file and a rename: readers see the old or the new file.

    A name ending in ``.gz`` is written gzip-compressed and compact (about a
    tenth of the size: what a repository that publishes its results can keep),
    with no time stamp in the gzip header, so equal documents give equal bytes.
    """
    p = Path(path)
    if p.name.endswith(".gz"):
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
        blob = gzip.compress(payload, mtime=0)
    else:
        blob = (json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")
    return write_bytes_atomic(p, blob)


def _schema() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _compiled_validator() -> Callable[[Any], Any]:
    """The schema compiled to Python once per process (fastjsonschema): about 40 times faster than jsonschema
    on a published results file (0.2 s against 8 s), which is most of a report rebuild. The schema uses only
    draft-07 keywords (type, enum, const, pattern, items, properties, required, additionalProperties), which
    fastjsonschema implements in full."""
    import fastjsonschema  # lazy: only reading a results file needs it, not `gradconform --help`

    return fastjsonschema.compile(_schema())


def validate(doc: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` is not a results document.

    The compiled validator decides; only a document it rejects is validated again with jsonschema, whose
    error names the failing path and is what callers catch."""
    import fastjsonschema  # lazy: see _compiled_validator

    try:
        _compiled_validator()(doc)
    except fastjsonschema.JsonSchemaException:
        import jsonschema  # lazy: only a rejected document needs the detailed error

        jsonschema.validate(doc, _schema())
        raise


def read_json(path: str | Path) -> Any:
    """JSON from a plain or gzip-compressed file (recognised by its magic bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw.decode("utf-8"))


def load_results(path: str | Path) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a gradconform results file (not a JSON object)")
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a gradconform results file (schema {doc.get('schema')!r}, expected {SCHEMA!r})")
    validate(doc)
    return doc


def merge(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge results of one backend and spec produced by several processes or machines (shards, xdist workers).

    Cases are united by id, records by (quantity, layout, dtype, case); the
    documents must agree on the spec hash, the backend and the seed.
    """
    docs = list(docs)
    if not docs:
        raise ValueError("nothing to merge")
    first = docs[0]
    key = (first["spec"]["sha256"], first["backend"]["name"], first["settings"]["seed"])
    out = json.loads(json.dumps(first))
    cases = {c["id"]: c for c in first["cases"]}
    records = {(r["quantity"], r["layout"], r["dtype"], r["case"]): r for r in first["records"]}
    extra: dict[str, dict[Any, Any]] = {k: {} for k in ("counterexamples", "verifications", "tests", "refutations",
                                                         "metamorphic", "groups")}
    for name in extra:
        for item in first.get(name, []):
            extra[name][json.dumps(item, sort_keys=True)] = item
    for doc in docs[1:]:
        other = (doc["spec"]["sha256"], doc["backend"]["name"], doc["settings"]["seed"])
        if other != key:
            raise ValueError(f"cannot merge results of different runs: {other} vs {key} (spec hash, backend, seed)")
        for c in doc["cases"]:
            cases.setdefault(c["id"], c)
        for r in doc["records"]:
            records.setdefault((r["quantity"], r["layout"], r["dtype"], r["case"]), r)
        for name in extra:
            for item in doc.get(name, []):
                extra[name].setdefault(json.dumps(item, sort_keys=True), item)
        out["created"] = max(out.get("created", ""), doc.get("created", ""))
        out["seconds"] = max(out.get("seconds", 0.0), doc.get("seconds", 0.0))
    out["cases"] = list(cases.values())
    out["records"] = list(records.values())
    for name, items in extra.items():
        out[name] = list(items.values())
    out["summary"] = summarize(out["records"])  # of the merged records, never one part's
    return out
