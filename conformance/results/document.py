"""Results files: one JSON document per run (schema ``gradconform-results/1``), merged across processes.

The report layer reads these files and nothing else. Every record says which
quantity, layout, dtype, regime, family and case it is about, its status and
detail, its error (absolute, relative, in ulps), the bound applied and the
ratio error/allowed; the cases are stored with their exact inputs, so every
figure in a report traces back to numbers that can be recomputed. The schema
is in ``conformance/results/schema.json`` and documented in docs/results.md.

A results file is input like any other: reading one is bounded (size,
nesting depth, number range; see docs/results.md, "Threat model: results
files") and every way it can be wrong is a :class:`ResultsFileError` that
names the file, never a traceback.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import math
import os
import platform
import re
import stat
import sys
import tempfile
import zlib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from conformance.atomic import write_bytes_atomic
from conformance.errors import OutputError, ResultsFileError
from conformance.results.summary import summarize

__all__ = ["SCHEMA", "Record", "make_record", "environment", "write_json_atomic", "read_json", "load_results", "merge",
           "validate", "write_results", "ResultsFileError", "MAX_RESULTS_BYTES", "MAX_DEPTH", "MAX_INT_DIGITS",
           "MERGE_KEYS"]

SCHEMA = "gradconform-results/1"

#: the largest results file read, compressed or not, in bytes (a published one is about 15 MB of JSON)
MAX_RESULTS_BYTES = 1 << 30
#: the deepest nesting of arrays and objects in a results file (the schema's own is under 10)
MAX_DEPTH = 32
#: the most digits of an integer in a results file (more is beyond any float, and no count or seed needs it)
MAX_INT_DIGITS = 40


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
        """The record as JSON data: what ``dataclasses.asdict`` gives (lists and dicts copied), with inf and nan as
        strings. Written out field by field: asdict's generic recursion cost 0.2 ms a record, 10 s of a run's
        51 584 records."""
        return {name: _json_float(_copied(getattr(self, name))) for name in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _copied(v: Any) -> Any:
    """``v``, with its lists and dicts copied all the way down (as asdict copies them)."""
    if isinstance(v, list):
        return [_copied(x) if isinstance(x, (list, dict, tuple)) else x for x in v]
    if isinstance(v, (dict, tuple)):
        return copy.deepcopy(v)
    return v


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
        blob = (_readable_json(data) + "\n").encode("utf-8")
    return write_bytes_atomic(p, blob)


def _readable_json(data: Mapping[str, Any]) -> str:
    """JSON for people: one top-level key a line, and each element of a list of objects (the records, the
    cases, the tests) on a line of its own, so that a diff or a grep shows whole records. Each piece goes through
    json's C encoder: ``indent=`` switches to the pure-Python one, about 4 s for a suite's results."""
    enc = json.JSONEncoder(allow_nan=False)
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            text = "[\n  " + ",\n  ".join(enc.encode(v) for v in value) + "\n ]"
        else:
            text = enc.encode(value)
        lines.append(f" {enc.encode(str(key))}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"


def write_results(path: str | Path, data: Mapping[str, Any]) -> tuple[Path, str | None]:
    """Write a results document to ``path``; if that fails (a full disk, a folder removed during the run), to a
    new file in the system's temporary directory instead, so that the verdicts of a long run are not lost.
    Returns where it was written and, after a fallback, why ``path`` could not be (for the caller to print);
    raises :class:`OutputError` (a message, never a traceback) when the fallback cannot be written either."""
    try:
        return write_json_atomic(path, data), None
    except OSError as exc:
        problem = f"cannot write {path} ({exc.strerror or exc})"
    suffix = ".json.gz" if Path(path).name.endswith(".gz") else ".json"
    try:
        fd, fallback = tempfile.mkstemp(prefix="gradconform-results-", suffix=suffix)
        os.close(fd)
        return write_json_atomic(fallback, data), problem
    except OSError as exc:  # the temporary directory is full or unwritable too (often the same disk)
        raise OutputError(f"{problem}, and no temporary file could hold them either ({exc.strerror or exc}): the "
                          f"results of this run are lost; free disk space or give another output path") from None


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


def read_json(path: str | Path, *, max_bytes: int = MAX_RESULTS_BYTES) -> Any:
    """JSON from a plain or gzip-compressed file (recognised by its magic bytes, not its name), within the limits
    above: at most ``max_bytes`` read and decompressed, no ``NaN``/``Infinity`` literal, no number a float
    cannot hold, no integer over :data:`MAX_INT_DIGITS` digits. Anything else is a :class:`ResultsFileError`
    (an OSError for a file that cannot be opened)."""
    p = Path(path)
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ResultsFileError(f"{p}: not a regular file")
    if st.st_size > max_bytes:
        raise ResultsFileError(f"{p}: {st.st_size} bytes, over the limit of {max_bytes} for a results file")
    with open(p, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(max_bytes + 1)
        except (EOFError, OSError, zlib.error) as exc:
            raise ResultsFileError(f"{p}: the gzip data is truncated or corrupt ({exc}); copy the file again") from None
        if len(raw) > max_bytes:
            raise ResultsFileError(f"{p}: decompresses to over {max_bytes} bytes, the limit for a results file")
    try:
        text = raw.decode("utf-8")
        # the integer hook costs a third of the parse: only text with a long run of digits somewhere needs it
        long_digits = _LONG_DIGITS.search(text) is not None
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          parse_int=_bounded_int if long_digits else None)
    except UnicodeDecodeError as exc:
        raise ResultsFileError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ResultsFileError(f"{p}: arrays or objects nested too deeply (a results file nests fewer than "
                               f"{MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except ResultsFileError as exc:
        raise ResultsFileError(f"{p}: {exc}") from None


_LONG_DIGITS = re.compile(r"[0-9]{%d}" % (MAX_INT_DIGITS + 1))


def _no_constant(name: str) -> Any:
    raise ResultsFileError(f"{name} is not JSON (a results file writes \"nan\", \"inf\" and \"-inf\" as strings)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ResultsFileError(f"the number {text[:40]} is beyond the range of a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ResultsFileError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth_over(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests arrays and objects more than ``limit`` deep (iteratively: no recursion to exhaust)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def load_results(path: str | Path) -> dict[str, Any]:
    """A results file, read within the limits of :func:`read_json` and validated against the schema; raises
    :class:`ResultsFileError` (or OSError) with a message that names the file and the problem."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ResultsFileError(f"{path}: not a gradconform results file (not a JSON object)")
    if doc.get("schema") != SCHEMA:
        raise ResultsFileError(f"{path}: not a gradconform results file (schema {str(doc.get('schema'))[:80]!r}, "
                               f"expected {SCHEMA!r})")
    if _depth_over(doc, MAX_DEPTH):
        raise ResultsFileError(f"{path}: arrays or objects nested more than {MAX_DEPTH} deep")
    import jsonschema  # lazy: see validate

    try:
        validate(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "the top level"
        raise ResultsFileError(f"{path}: does not match the results schema: {exc.message[:300]} (at {where})") from None
    return doc


#: what the files merged into one must agree on: (label, path in the document). Records of runs that differ in
#: any of these are not comparable (other cases, other bounds, another oracle, another harness).
MERGE_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("spec hash", ("spec", "sha256")), ("backend", ("backend", "name")), ("seed", ("settings", "seed")),
    ("examples", ("settings", "examples")), ("safety factor", ("settings", "safety_factor")),
    ("oracle engine", ("oracle", "engine")), ("harness version", ("harness", "version")),
    ("wide family", ("settings", "wide")))


def _get(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for k in path:
        value = value.get(k) if isinstance(value, Mapping) else None
    return value


def merge(docs: Iterable[Mapping[str, Any]], names: Iterable[str] | None = None) -> dict[str, Any]:
    """Merge results of one backend and spec produced by several processes or machines (shards, xdist workers).

    Cases are united by id, records by (quantity, layout, dtype, case). The documents must agree on every key
    of :data:`MERGE_KEYS`, and two records (or cases) for the same check must be equal: otherwise the merged
    verdict would depend on the order of the files, so this raises :class:`ResultsFileError` naming the
    difference and the two files (``names``: how to call the documents; default: "file 1", "file 2", ...).
    """
    docs = list(docs)
    if not docs:
        raise ResultsFileError("nothing to merge")
    labels = list(names) if names is not None else [f"file {i}" for i in range(1, len(docs) + 1)]
    if len(labels) != len(docs):
        raise ValueError(f"merge: {len(docs)} documents but {len(labels)} names")  # a caller's mistake, not a file's
    first = docs[0]
    for doc, label in zip(docs[1:], labels[1:]):
        for what, path in MERGE_KEYS:
            a, b = _get(first, path), _get(doc, path)
            if path == ("settings", "wide"):  # a file from before the option: a run without it
                a, b = bool(a), bool(b)
            if a != b:
                raise ResultsFileError(f"cannot merge results of different runs: {labels[0]} and {label} differ in "
                                       f"{what} ({str(a)[:80]!r} vs {str(b)[:80]!r})")
    out = json.loads(json.dumps(first))
    cases: dict[str, tuple[dict[str, Any], str]] = {}
    records: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}
    extra: dict[str, dict[Any, Any]] = {k: {} for k in ("counterexamples", "verifications", "tests", "refutations",
                                                         "metamorphic", "groups")}
    for doc, label in zip(docs, labels):
        for c in doc["cases"]:
            _unite(cases, c["id"], c, label, lambda: f"case {c['id']}")
        for r in doc["records"]:
            key = (r["quantity"], r["layout"], r["dtype"], r["case"])
            _unite(records, key, r, label, lambda: f"the check of {r['quantity']} ({r['layout']}, {r['dtype']}) on "
                                                   f"case {r['case']}")
        for name in extra:
            for item in doc.get(name, []):
                extra[name].setdefault(json.dumps(item, sort_keys=True), item)
        out["created"] = max(out.get("created", ""), doc.get("created", ""))
        out["seconds"] = max(out.get("seconds", 0.0), doc.get("seconds", 0.0))
    out["cases"] = [c for c, _ in cases.values()]
    out["records"] = [r for r, _ in records.values()]
    for name, items in extra.items():
        out[name] = list(items.values())
    out["summary"] = summarize(out["records"])  # of the merged records, never one part's
    return out


def _unite(seen: dict[Any, tuple[dict[str, Any], str]], key: Any, item: dict[str, Any], label: str,
           what: Callable[[], str]) -> None:
    """Keep ``item`` under ``key``; the same key again must bring the same content."""
    if key not in seen:
        seen[key] = (item, label)
        return
    kept, where = seen[key]
    if kept != item:
        diff = sorted(k for k in set(kept) | set(item) if kept.get(k) != item.get(k))
        raise ResultsFileError(f"cannot merge: {where} and {label} hold conflicting results for {what()} "
                               f"(they differ in {', '.join(diff[:6])}: status {kept.get('status')!r} vs "
                               f"{item.get('status')!r}); rerun that part instead of merging both")
