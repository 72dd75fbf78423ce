"""One conformance run: spec -> cases -> oracle and backend -> comparison -> records.

The pytest plugin and the command line are views of this object. Work is done
lazily per (layout, dtype, regime) group, so a selection (``-k``) only pays
for what it selects; each case is sent to the backend once with every
quantity it needs (forward values, gradients, Jacobians), in the backend's
worker process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from conformance._version import __version__

from conformance.oracle import evaluate as oracle
from conformance.backend import Model, Quantity, Request
from conformance.cache.case_cache import CaseCache
from conformance.oracle.engines.base import get_engine
from conformance.cache.oracle_cache import OracleCache, cached_evaluate, cached_verify_identity
from conformance.judge.bounds import ErrorBounds
from conformance.cache.bounds_cache import CachedBounds
from conformance.cases.generate import DEFAULT_SEED, Case, generate_cases
from conformance.judge.compare import CRASHED, ERROR, FAIL, NOT_SUPPORTED, TIMED_OUT, compare
from conformance.judge.diagnose import CaseDiagnoser, refine_group
from conformance.formats import get_format
from conformance.errors import GradconformError, OracleError
from conformance.results.document import SCHEMA, Record, environment, make_record, now
from conformance.spec.shapes import concrete
from conformance.formats import DTYPES
from conformance.spec.model import Identity, Layout, Spec
from conformance.execution.worker import BackendInfo, make_worker
from conformance.execution import registry

__all__ = ["Run", "RunCache", "Group", "QuantityDecl", "quantities_of", "identity_applies_to_regime"]


@dataclass(frozen=True)
class QuantityDecl:
    """A quantity the suite checks: a forward value or an identity."""

    id: str
    kind: str  # value | gradient | jacobian
    layout: str
    identity: Identity | None = None


def quantities_of(layout: Layout) -> list[QuantityDecl]:
    out = [QuantityDecl(d.name, "value", layout.name) for d in layout.forward]
    out += [QuantityDecl(i.id, i.kind, layout.name, i) for i in layout.identities]
    return out


def identity_applies_to_regime(spec: Spec, identity: Identity, regime: str) -> bool:
    """Whether some case of the regime can satisfy the identity (its pinned sizes and preconditions)."""
    reg = spec.regimes[regime]
    if any(r in reg.violates for r in identity.requires):
        return False
    families = spec.families_for(reg)
    return any(all(f.sizes.get(d) == v for d, v in identity.when.items()) for f in families)


def _same_request(a: Request, b: Request) -> bool:
    """Whether a prefetched request is the one asked for (same case inputs, dtype and quantities)."""
    return (a.dtype == b.dtype and tuple(q.id for q in a.quantities) == tuple(q.id for q in b.quantities)
            and a.inputs.keys() == b.inputs.keys()
            and all(a.inputs[k] is b.inputs[k] or (a.inputs[k].tobytes() == b.inputs[k].tobytes()) for k in a.inputs))


@dataclass
class RunCache:
    """Work that depends on the spec, the seed and the cases only, not on the backend: the generated
    cases of each group and the oracle's evaluation of each case. Runs of several backends over the
    same spec and seed (the harness's own accuracy tests, checker comparisons) share one, so the oracle
    runs once per case. Never share one between different specs."""

    cases: dict[tuple[Any, ...], list[Case]] = field(default_factory=dict)
    oracle: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)


@dataclass
class Group:
    layout: str
    dtype: str
    regime: str
    cases: list[Case] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    precision: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def for_quantity(self, quantity: str) -> list[Record]:
        return [r for r in self.records if r.quantity == quantity]


class Run:
    """A run of the suite for one backend. Use as a context manager (it owns a worker process)."""

    def __init__(self, spec: Spec, backend: str, *, seed: int = DEFAULT_SEED, examples: int | None = None,
                 timeout: float = 60.0, isolate: bool = True, device: str = "cpu", oracle: str | None = None,
                 cache_dir: str | Path | None = None, cache: RunCache | None = None) -> None:
        self.spec = spec
        self.engine = get_engine(oracle)  # EngineUnavailable for an unknown or missing engine: a usage error
        self.oracle_cache = OracleCache(cache_dir) if cache_dir is not None else None
        self.shard: str | None = None  # "i/N" when this run is one shard of a suite
        self.worker_name = "main"  # which process computed the groups (an xdist worker id, for instance)
        self.case_cache = CaseCache(cache_dir) if cache_dir is not None else None
        # in-memory work (cases, oracle evaluations), shared with other runs of the same spec and seed when given
        self.cache = cache if cache is not None else RunCache()
        self.ref = registry.find(backend)  # BackendNotFound for an unknown name: a usage error
        self.seed = seed
        self.examples = examples
        self.timeout = timeout
        self.isolate = isolate
        self.device = device
        self.worker = make_worker(self.ref, isolate=isolate, timeout=timeout, device=device)
        self._info: BackendInfo | None = None
        self._groups: dict[tuple[str, str, str], Group] = {}
        self._verifications: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._cases: dict[tuple[Any, ...], list[Case]] = {}
        self._prefetched: dict[str, tuple[Request, Any]] = {}
        self.counterexamples: list[dict[str, Any]] = []
        self.tests: list[dict[str, Any]] = []
        self.refutations: list[dict[str, Any]] = []  # negative identities (conformance.checks.negative), backend-free
        self.metamorphic: list[dict[str, Any]] = []  # metamorphic properties (conformance.checks.metamorphic)
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ backend
    @property
    def info(self) -> BackendInfo:
        if self._info is None:
            self._info = self.worker.start()
        return self._info

    def supports(self, dtype: str) -> bool:
        return self.info.available and (not self.info.dtypes or dtype in self.info.dtypes)

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ groups
    def group(self, layout: str, dtype: str, regime: str) -> Group:
        key = (layout, dtype, regime)
        if key not in self._groups:
            start = time.perf_counter()
            g = Group(layout, dtype, regime)
            g.cases = self.cases(layout, dtype, regime)
            self._prefetch(g.cases)
            for case in g.cases:
                records, bits = self.evaluate_case(case)
                g.records.extend(records)
                g.precision[case.id] = bits
            g.records = refine_group(g.records, self.spec, regime)
            self._prefetched.clear()
            g.seconds = time.perf_counter() - start
            self._groups[key] = g
        return self._groups[key]

    def cases(self, layout: str, dtype: str, regime: str, *, examples: int | None | str = "run") -> list[Case]:
        """The cases of (layout, dtype, regime) with this run's seed (``examples``: the run's setting unless
        given): generated once per process, and kept in the case cache when there is one."""
        n = self.examples if examples == "run" else examples
        key = (self.spec.sha256, layout, dtype, regime, self.seed, n)
        if key in self._cases:
            return self._cases[key]
        if key in self.cache.cases:
            self._cases[key] = self.cache.cases[key]
            return self._cases[key]
        hit = self.case_cache.get(*key) if self.case_cache is not None else None
        if hit is None:
            hit = generate_cases(self.spec, layout, dtype, regime, seed=self.seed, examples=n)  # type: ignore[arg-type]
            if self.case_cache is not None:
                self.case_cache.put(*key, hit)  # type: ignore[arg-type]
        self._cases[key] = hit
        self.cache.cases[key] = hit
        return hit

    @property
    def groups(self) -> Mapping[tuple[str, str, str], Group]:
        return self._groups

    # ------------------------------------------------------------------ backend calls, batched per group
    def _prefetch(self, cases: Sequence[Case]) -> None:
        """Send a group's requests to the backend in one message (one round trip to the worker process
        instead of one per case); :meth:`evaluate_case` then takes its reply from here. The requests are
        the ones it would send (the applicable identities need only the exact preconditions)."""
        batch: list[tuple[str, Request]] = []
        for case in cases:
            if not self.supports(case.dtype):
                continue
            lay = self.spec.layouts[case.layout]
            pre = oracle.preconditions_hold(lay, case.inputs)
            idents = [i for i in lay.identities if oracle.applicable(i, case.sizes, pre)]
            batch.append((case.id, self.request_for(case, idents)))
        if len(batch) < 2:
            return
        replies = self.worker.evaluate_many([r for _, r in batch])
        for (cid, req), rep in zip(batch, replies):
            self._prefetched[cid] = (req, rep)

    def _reply(self, case: Case, request: Request) -> Any:
        hit = self._prefetched.pop(case.id, None)
        if hit is not None and _same_request(hit[0], request):
            return hit[1]
        return self.worker.evaluate(request)

    # ------------------------------------------------------------------ one case
    def oracle_evaluation(self, case: Case, identities: Sequence[Identity]) -> Any:
        """The oracle's certified evaluation of ``case`` (with this run's engine), computed once per process
        and kept in the on-disk cache when there is one. Raises OracleError/ArithmeticError."""
        okey = (case.id, tuple(i.id for i in identities), self.engine.name)
        ev = self.cache.oracle.get(okey)
        if ev is None:
            lay = self.spec.layouts[case.layout]
            ev = cached_evaluate(lay, case.inputs, identities, engine=self.engine, cache=self.oracle_cache)
            self.cache.oracle[okey] = ev
        return ev

    def request_for(self, case: Case, identities: Sequence[Identity]) -> Request:
        lay = self.spec.layouts[case.layout]
        model = Model(self.spec.name, lay.name, tuple(self.spec.inputs), tuple((d.name, d.expr) for d in lay.forward),
                      lay.loss)
        sizes = case.sizes
        quantities = [Quantity(d.name, "value", d.name, expr=d.expr, shape=concrete(d.shape, sizes)) for d in lay.forward]
        for ident in identities:
            quantities.append(Quantity(ident.id, ident.kind, ident.of, ident.wrt, ident.convention, ident.expr,
                                       concrete(ident.shape, sizes)))
        return Request(model, case.dtype, dict(case.inputs), tuple(quantities), self.device)

    def evaluate_case(self, case: Case, *, only: Iterable[str] | None = None,
                      diagnose: bool = True) -> tuple[list[Record], int]:
        """Records for every quantity claimed on ``case`` (or only those named); also the oracle's precision.
        ``diagnose``: classify failures (conformance.judge.diagnose); off where only the verdict matters (shrinking)."""
        lay = self.spec.layouts[case.layout]
        wanted = set(only) if only is not None else None
        sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
        ctx = dict(layout=case.layout, dtype=case.dtype, regime=case.regime, family=case.family,
                   magnitude=case.magnitude, case=case.id)
        values = [d.name for d in lay.forward]

        def everything(status: str, detail: str, message: str, idents: Sequence[Identity]) -> list[Record]:
            out = [make_record(quantity=v, kind="value", status=status, detail=detail, message=message, **ctx)
                   for v in values if wanted is None or v in wanted]
            out += [make_record(quantity=i.id, kind=i.kind, status=status, detail=detail, message=message, **ctx)
                    for i in idents if wanted is None or i.id in wanted]
            return out

        try:
            ev = self.oracle_evaluation(case, sized)
        except (OracleError, ArithmeticError) as exc:
            return everything(ERROR, "oracle", f"the oracle failed on this case: {exc}", sized), 0
        idents = [i for i in sized if oracle.applicable(i, case.sizes, ev.preconditions)]
        if not self.supports(case.dtype):
            reason = self.info.reason if not self.info.available else f"dtype {case.dtype} is not supported"
            return everything(NOT_SUPPORTED, "backend", reason, idents), ev.precision
        reply = self._reply(case, self.request_for(case, idents))
        if reply.status != "ok":
            status = {"crashed": CRASHED, "timed_out": TIMED_OUT, "not_supported": NOT_SUPPORTED}.get(reply.status, ERROR)
            detail = "exception" if status == ERROR else reply.status
            return everything(status, detail, reply.message, idents), ev.precision
        bounds: Any = ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, self.spec.tolerance) \
            if self.oracle_cache is None else CachedBounds(self.oracle_cache, self.engine, lay, ev, case.inputs, sized,
                                                           case.dtype, self.spec.tolerance, oracle.START_BITS)
        kappa = self.spec.tolerance.safety_factor
        diagnoser = CaseDiagnoser(self.spec, lay, case.inputs, case.sizes, case.dtype)
        records: list[Record] = []
        items: list[tuple[str, str, Any, tuple[int, int], Any]] = []
        for d in lay.forward:
            items.append((d.name, "value", d.expr, concrete(d.shape, case.sizes), None))
        for i in idents:
            items.append((i.id, i.kind, i.expr, concrete(i.shape, case.sizes), i))
        for qid, kind, expr, shape, ident in items:
            if wanted is not None and qid not in wanted:
                continue
            got = reply.values.get(qid)
            if got is None:
                records.append(make_record(quantity=qid, kind=kind, status=FAIL, detail="missing",
                                           message="the backend returned no value for this quantity", **ctx))
                continue
            if isinstance(got, tuple):
                status = NOT_SUPPORTED if got[0] == "not_supported" else ERROR
                records.append(make_record(quantity=qid, kind=kind, status=status,
                                           detail="declined" if status == NOT_SUPPORTED else "exception",
                                           message=got[1], **ctx))
                continue
            try:
                bound = bounds.bound(expr)
                cmp = compare(got, ev.values[qid], bound, dtype=case.dtype, expected_shape=shape, safety_factor=kappa)
            except Exception as exc:  # a result the comparison cannot even read: an error, recorded
                records.append(make_record(quantity=qid, kind=kind, status=ERROR, detail="unreadable",
                                           message=f"{type(exc).__name__}: {exc}", **ctx))
                continue
            diagnosis = None
            if diagnose and cmp.status == FAIL and cmp.detail in ("out_of_bound", "nonfinite", "wrong_shape"):
                diagnosis = _diagnose(diagnoser, qid, expr, got, ev.values[qid].hi,
                                      kappa * bound + get_format(case.dtype).eta, ident)
            records.append(make_record(quantity=qid, kind=kind, status=cmp.status, comparison=cmp, diagnosis=diagnosis,
                                       **ctx))
        if isinstance(bounds, CachedBounds):
            bounds.flush()
        return records, ev.precision

    # ------------------------------------------------------------------ spec self-check
    def verifications(self, layout: str, identity: str, *, per_regime: int = 2) -> list[dict[str, Any]]:
        """Check one identity against the derivative of the forward definitions, on float64 cases of every
        regime (the spec is verified, not trusted). Independent of the backend."""
        key = (layout, identity)
        if key not in self._verifications:
            lay = self.spec.layouts[layout]
            ident = lay.identity(identity)
            out: list[dict[str, Any]] = []
            for regime in self.spec.regimes:
                if not identity_applies_to_regime(self.spec, ident, regime):
                    continue
                cases = self.cases(layout, "float64", regime, examples=1)
                checked = 0
                for case in cases:
                    if checked >= per_regime:
                        break
                    try:
                        v = cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=self.oracle_cache)
                    except (GradconformError, ArithmeticError) as exc:
                        out.append({"identity": identity, "layout": layout, "case": case.to_json(),
                                    "verdict": "error", "reason": str(exc)})
                        checked += 1
                        continue
                    if v.verdict == "not_applicable":
                        continue
                    checked += 1
                    out.append({"identity": identity, "layout": layout, "regime": regime, "case": case.to_json(),
                                "verdict": v.verdict, "reason": v.reason, "worst_index": v.worst_index,
                                "identity_value": v.identity_value, "derivative_value": v.derivative_value,
                                "precision": v.precision})
            self._verifications[key] = out
        return self._verifications[key]

    # ------------------------------------------------------------------ results
    def oracle_section(self) -> dict[str, Any]:
        """The results file's ``oracle``: the engine and its version, the precision settings, the cache."""
        out: dict[str, Any] = dict(self.engine.describe())
        out.update(start_bits=oracle.START_BITS, max_bits=oracle.MAX_BITS, target_bits=oracle.TARGET_BITS,
                   tie_bits=oracle.TIE_BITS)
        if self.oracle_cache is not None and self.case_cache is not None:
            out["cache"] = {"path": str(self.oracle_cache.root), "oracle": self.oracle_cache.stats,
                            "cases": self.case_cache.stats}
        else:
            out["cache"] = None
        return out

    def document(self) -> dict[str, Any]:
        info = self.info
        cases: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for g in self._groups.values():
            for c in g.cases:
                cj = c.to_json()
                cj["precision"] = g.precision.get(c.id, 0)
                cases.append(cj)
            records.extend(r.to_json() for r in g.records)
        verifs = [v for vs in self._verifications.values() for v in vs]
        groups = [{"layout": g.layout, "dtype": g.dtype, "regime": g.regime, "cases": len(g.cases),
                   "seconds": round(g.seconds, 4), "worker": self.worker_name} for g in self._groups.values()]
        return {
            "schema": SCHEMA,
            "created": now(),
            "seconds": round(time.perf_counter() - self.started, 3),
            "harness": {"name": "gradconform", "version": __version__},
            "spec": {"name": self.spec.name, "title": self.spec.title, "path": self.spec.path,
                     "sha256": self.spec.sha256, "text": self.spec.source},
            "backend": {"name": info.name if info.available else self.ref.name, "requested": self.ref.name,
                        "target": self.ref.target, "source": self.ref.source, "description": info.description,
                        "available": info.available, "reason": info.reason, "versions": dict(info.versions),
                        "dtypes": list(info.dtypes), "device": self.device},
            "environment": environment(),
            "oracle": self.oracle_section(),
            "settings": {"seed": self.seed, "examples": self.examples, "timeout": self.timeout, "shard": self.shard,
                         "isolate": self.isolate, "safety_factor": self.spec.tolerance.safety_factor,
                         "dtypes": [d for d in DTYPES if d in self.spec.tolerance.accumulate],
                         "layouts": list(self.spec.layouts), "regimes": list(self.spec.regimes)},
            "cases": cases,
            "records": records,
            "verifications": verifs,
            "counterexamples": list(self.counterexamples),
            "tests": list(self.tests),
            "refutations": list(self.refutations),
            "metamorphic": list(self.metamorphic),
            "groups": groups,
        }


def _diagnose(diagnoser: CaseDiagnoser, qid: str, expr: Any, got: Any, exact: Any, allowed: Any,
              identity: Identity | None) -> dict[str, Any]:
    """The diagnosis of one failing result; a diagnosis that fails itself never takes the verdict down."""
    try:
        return diagnoser.diagnose(qid, expr, got, exact, allowed, identity=identity).to_json()
    except Exception as exc:  # pragma: no cover - defensive: the verdict stands without a diagnosis
        return {"class": "unexplained", "message": f"the diagnosis itself failed: {type(exc).__name__}: {exc}"}
