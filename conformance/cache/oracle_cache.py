"""An on-disk cache of oracle results, so that a second run of the same cases costs almost nothing.

An entry is keyed by everything the result depends on:

* the engine (name, library, library version) and the oracle's precision
  settings (start, maximum, tie and target bits);
* a hash of the source of the modules that compute it (the oracle and its
  programs, the certification rule, the engines, the interval algebra, the expression
  interpreter, single rounding): a changed oracle never reads an old entry;
* the layout's forward definitions and preconditions and the identities'
  expressions, as structural trees (not only the spec file's hash: two specs
  that share a layout share its entries, and an edited description does not
  invalidate them);
* the exact bytes of every input, as float64 (the oracle's view of a case:
  a float16 case and a float32 case with the same values share an entry).

Entries are authenticated and checked on every read (:mod:`conformance.cache.store`);
a bad or forged one is recomputed and overwritten, and an audit fraction of the
hits is re-derived and compared (:class:`~conformance.cache.store.CacheAuditError`
on a difference). Failed evaluations (an oracle error) are not
cached. Location: ``--gc-oracle-cache DIR``, else ``$GRADCONFORM_CACHE``, else
the user's cache directory (platformdirs, e.g. ``~/.cache/gradconform``; never
the package's folder); ``--gc-oracle-cache off`` disables it.
"""


from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from platformdirs import user_cache_dir

from conformance import expr as expr_module
from conformance import formats, primitives
from conformance.cache.keys import code_hash
from conformance.cache.store import BlobStore, CacheAuditError
from conformance.expr import Expr
from conformance.oracle import arith, certify, evaluate, higher_order, jets, program
from conformance.oracle.certify import MAX_BITS, START_BITS, TARGET_BITS, TIE_BITS, Exact
from conformance.oracle.engines import base as engine_base
from conformance.oracle.engines import select as engine_select
from conformance.oracle.engines.base import Engine
from conformance.oracle.engines.select import get_engine
from conformance.oracle.evaluate import OracleEvaluation, Verification
from conformance.oracle.program import compile_program

if TYPE_CHECKING:  # pragma: no cover
    from conformance.spec.model import Identity, Layout

__all__ = ["OracleCache", "ENV_CACHE", "DEFAULT_DIR", "resolve_cache_dir", "node_order", "cached_evaluate",
           "cached_verify_identity"]

ENV_CACHE = "GRADCONFORM_CACHE"
DEFAULT_DIR = Path(user_cache_dir("gradconform"))  # the user's cache directory: never the package's folder


def resolve_cache_dir(option: str | None) -> Path | None:
    """The cache directory for an ``--oracle-cache`` value: ``off`` (None), ``on``/unset (the default), or a path."""
    if option is not None and option.lower() in ("off", "no", "false", "0", "none"):
        return None
    if option is not None and option.lower() not in ("on", "yes", "true", "1", ""):
        return Path(option)
    return Path(os.environ[ENV_CACHE]) if os.environ.get(ENV_CACHE) else DEFAULT_DIR


def _oracle_modules() -> tuple[ModuleType, ...]:
    """The modules whose code decides an oracle result or a verification (the cache's code version)."""
    return (evaluate, program, certify, engine_base, engine_select, arith, expr_module, formats, primitives)




_memo: dict[tuple[int, tuple[str, ...]], tuple[Any, list[Expr], dict[str, Any]]] = {}


def _shape_of(layout: "Layout", identities: Sequence["Identity"]) -> tuple[list[Expr], dict[str, Any]]:
    """(node order, layout key), computed once per layout and identity selection (hashing trees is not free)."""
    k = (id(layout), tuple(i.id for i in identities))
    hit = _memo.get(k)
    if hit is None or hit[0] is not layout:
        hit = (layout, node_order(layout, identities), _layout_key(layout, identities))
        _memo[k] = hit
    return hit[1], hit[2]


def node_order(layout: "Layout", identities: Sequence["Identity"]) -> list[Expr]:
    """Every sub-expression the oracle evaluates, in the order of its node table (its program's steps)."""
    return [s.expr for s in compile_program(layout, identities).steps]


def _layout_key(layout: "Layout", identities: Sequence["Identity"]) -> dict[str, Any]:
    return {
        "layout": layout.name,
        "forward": [[d.name, repr(d.expr)] for d in layout.forward],
        "preconditions": [[name, repr(p.expr), str(p.equals)] for name, p in sorted(layout.preconditions.items())],
        "identities": [[i.id, repr(i.expr)] for i in identities],
    }


def _inputs_key(inputs: Mapping[str, np.ndarray]) -> list[list[Any]]:
    out = []
    for name in sorted(inputs):
        a = np.ascontiguousarray(np.asarray(inputs[name]).astype(np.float64))
        out.append([name, list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()])
    return out


class OracleCache:
    """Oracle results under ``root/oracle/``."""

    def __init__(self, root: str | Path, *, audit_fraction: float | None = None) -> None:
        """``audit_fraction``: the share of hits re-derived and compared (None: ``$GRADCONFORM_CACHE_AUDIT``)."""
        self.store = BlobStore(root, "oracle", audit_fraction=audit_fraction)
        self.verify_store = BlobStore(root, "verify", audit_fraction=audit_fraction)
        self.bounds_store = BlobStore(root, "bounds", audit_fraction=audit_fraction)
        self.root = Path(root)

    @property
    def stats(self) -> dict[str, Any]:
        out = self.store.stats.as_dict()
        out["verifications"] = self.verify_store.stats.as_dict()
        out["bounds"] = self.bounds_store.stats.as_dict()
        return out

    def key(self, engine: Engine, layout: "Layout", inputs: Mapping[str, np.ndarray],
            identities: Sequence["Identity"], start_bits: int) -> dict[str, Any]:
        sources = _oracle_modules() + (sys.modules[type(engine).__module__],)
        return {
            "kind": "oracle",
            "engine": engine.describe(),
            "bits": {"start": start_bits, "max": MAX_BITS, "tie": TIE_BITS, "target": TARGET_BITS},
            "code": code_hash(*sources),
            "numpy": np.__version__,
            "spec": _shape_of(layout, identities)[1],
            "inputs": _inputs_key(inputs),
        }

    def get(self, engine: Engine, layout: "Layout", inputs: Mapping[str, np.ndarray],
            identities: Sequence["Identity"], start_bits: int) -> OracleEvaluation | None:
        entry = self.store.get(self.key(engine, layout, inputs, identities, start_bits))
        if entry is None:
            return None
        meta, arrays = entry.meta, entry.arrays
        try:
            values = {}
            for name, undecided in meta["values"]:
                values[name] = Exact(arrays[f"v:{name}:hi"], arrays[f"v:{name}:lo"], int(undecided))
            order = _shape_of(layout, identities)[0]
            if len(order) != int(meta["nodes"]):
                raise KeyError("node count")
            fortran = set(meta.get("fortran", []))
            # the same memory layout as a fresh evaluation's: numpy's reductions and BLAS may round differently
            # on another layout, and a warm run must give the very same bounds as a cold one
            nodes = {e: np.asfortranarray(arrays[f"n:{i}"]) if i in fortran else arrays[f"n:{i}"]
                     for i, e in enumerate(order)}
            pre = {str(k): bool(v) for k, v in meta["preconditions"].items()}
            return OracleEvaluation(values=values, nodes=nodes, preconditions=pre, precision=int(meta["precision"]))
        except (KeyError, TypeError, ValueError):
            self.store.unhit("contents")
            return None

    def put(self, engine: Engine, layout: "Layout", inputs: Mapping[str, np.ndarray],
            identities: Sequence["Identity"], start_bits: int, ev: OracleEvaluation) -> bool:
        order = _shape_of(layout, identities)[0]
        if list(ev.nodes) != order:  # not the evaluation this cache knows how to replay: do not store
            return False
        arrays: dict[str, np.ndarray] = {}
        for name, e in ev.values.items():
            arrays[f"v:{name}:hi"] = np.asarray(e.hi, dtype=np.float64)
            arrays[f"v:{name}:lo"] = np.asarray(e.lo, dtype=np.float64)
        fortran = []
        for i, e in enumerate(order):
            a = np.asarray(ev.nodes[e], dtype=np.float64)
            arrays[f"n:{i}"] = a
            if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
                fortran.append(i)
        meta = {"values": [[name, int(e.undecided)] for name, e in ev.values.items()], "nodes": len(order),
                "fortran": fortran,
                "preconditions": {k: bool(v) for k, v in ev.preconditions.items()}, "precision": int(ev.precision)}
        return self.store.put(self.key(engine, layout, inputs, identities, start_bits), arrays, meta)

    # ------------------------------------------------------------------ identity verifications
    def verification_key(self, engine: Engine, layout: "Layout", identity: "Identity",
                         inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int], expr: Expr | None,
                         ignore_requires: bool, start_bits: int) -> dict[str, Any]:
        # the engine that verified (evaluate.verification_engine): another engine's enclosures give the same
        # verdict but may print other midpoints, and an audit must compare like with like
        return {
            "kind": "verify",
            "engine": {**engine.describe(), "derivative": "dual numbers and jets"},
            "bits": {"start": start_bits, "max": MAX_BITS},
            "code": code_hash(*_oracle_modules(), sys.modules[type(engine).__module__], higher_order, jets),
            "spec": _shape_of(layout, ())[1],
            "identity": [identity.id, identity.kind, identity.of, identity.wrt, identity.convention,
                         repr(identity.expr), list(identity.requires), sorted(identity.when.items())],
            "closed_form": repr(expr) if expr is not None else None,
            "ignore_requires": ignore_requires,
            "sizes": sorted((str(k), int(v)) for k, v in sizes.items()),
            "inputs": _inputs_key(inputs),
        }

    def get_verification(self, engine: Engine, layout: "Layout", identity: "Identity",
                         inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int], expr: Expr | None,
                         ignore_requires: bool, start_bits: int) -> Any:
        entry = self.verify_store.get(self.verification_key(engine, layout, identity, inputs, sizes, expr,
                                                            ignore_requires, start_bits))
        if entry is None:
            return None
        try:
            m = dict(entry.meta)
            wi = m.get("worst_index")
            return Verification(identity=str(m["identity"]), layout=str(m["layout"]), verdict=str(m["verdict"]),
                                reason=str(m["reason"]), worst_index=tuple(wi) if wi is not None else None,
                                identity_value=m.get("identity_value"), derivative_value=m.get("derivative_value"),
                                precision=int(m.get("precision", 0)))
        except (KeyError, TypeError, ValueError):
            self.verify_store.unhit("contents")
            return None

    def put_verification(self, engine: Engine, layout: "Layout", identity: "Identity",
                         inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int], expr: Expr | None,
                         ignore_requires: bool, start_bits: int, v: Any) -> bool:
        import math

        def num(x: Any) -> Any:
            return None if x is None or not math.isfinite(x) else float(x)  # JSON has no inf/nan

        if (v.identity_value is not None and num(v.identity_value) is None) or \
                (v.derivative_value is not None and num(v.derivative_value) is None):
            return False  # a non-finite value would not come back identical: do not cache it
        meta = {"identity": v.identity, "layout": v.layout, "verdict": v.verdict, "reason": v.reason,
                "worst_index": list(v.worst_index) if v.worst_index is not None else None,
                "identity_value": num(v.identity_value), "derivative_value": num(v.derivative_value),
                "precision": int(v.precision)}
        return self.verify_store.put(self.verification_key(engine, layout, identity, inputs, sizes, expr,
                                                           ignore_requires, start_bits), {}, meta)


def cached_evaluate(layout: "Layout", inputs: Mapping[str, np.ndarray], identities: Sequence["Identity"], *,
                    cache: OracleCache | None, engine: "str | Engine | None" = None,
                    start_bits: int = START_BITS) -> OracleEvaluation:
    """The oracle's evaluation of one case, read from ``cache`` when it holds it, else computed and stored."""
    eng = get_engine(engine)
    if cache is not None:
        hit = cache.get(eng, layout, inputs, identities, start_bits)
        if hit is not None and not cache.store.audit():
            return hit
    ev = evaluate.evaluate(layout, inputs, identities, start_bits=start_bits, engine=eng)
    if cache is not None and hit is not None:
        why = _difference(hit, ev)
        if why:
            raise CacheAuditError(f"an audited oracle cache entry under {cache.store.dir} differs from a fresh "
                                  f"evaluation ({why}): the cache cannot be trusted; delete it and find out who "
                                  "wrote it (or which code its key misses)")
        return hit
    if cache is not None:
        cache.put(eng, layout, inputs, identities, start_bits, ev)
    return ev


def _difference(a: OracleEvaluation, b: OracleEvaluation) -> str:
    """What differs between two evaluations of one case ("" when nothing does, bit for bit)."""
    if a.preconditions != b.preconditions or a.precision != b.precision:
        return "preconditions or precision"
    if list(a.values) != list(b.values) or list(a.nodes) != list(b.nodes):
        return "the quantities or nodes evaluated"
    for k in a.values:
        x, y = a.values[k], b.values[k]
        if x.undecided != y.undecided or not (np.array_equal(x.hi, y.hi, equal_nan=True)
                                              and np.array_equal(x.lo, y.lo, equal_nan=True)):
            return f"the exact value of {k}"
    for i, e in enumerate(a.nodes):
        if not np.array_equal(a.nodes[e], b.nodes[e], equal_nan=True):
            return f"node {i}"
    return ""


def cached_verify_identity(layout: "Layout", identity: "Identity", inputs: Mapping[str, np.ndarray],
                           sizes: Mapping[str, int], *, cache: OracleCache | None, expr: Expr | None = None,
                           ignore_requires: bool = False, start_bits: int = START_BITS,
                           engine: "str | Engine | None" = None) -> Verification:
    """:func:`conformance.oracle.evaluate.verify_identity`, read from ``cache`` when it holds the verdict."""
    eng = get_engine(engine)
    if cache is None:
        return evaluate.verify_identity(layout, identity, inputs, sizes, expr=expr,
                                        ignore_requires=ignore_requires, start_bits=start_bits, engine=eng)
    args = (eng, layout, identity, inputs, sizes, expr, ignore_requires, start_bits)
    hit = cache.get_verification(*args)
    if hit is not None and not cache.verify_store.audit():
        return hit
    fresh = evaluate.verify_identity(layout, identity, inputs, sizes, expr=expr,
                                     ignore_requires=ignore_requires, start_bits=start_bits, engine=eng)
    if hit is None:
        cache.put_verification(*args, fresh)
    elif hit != fresh:
        raise CacheAuditError(f"an audited verification cache entry under {cache.verify_store.dir} differs from a "
                              f"fresh verification of {identity.id}: the cache cannot be trusted; delete it")
    return fresh
