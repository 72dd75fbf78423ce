"""One conformance run: spec -> cases -> oracle and backend -> comparison -> records.

The pytest plugin and the command line are views of this object. Work is done
lazily per (layout, dtype, regime) group, so a selection (``-k``) only pays
for what it selects; each case is sent to the backend once with every
quantity it needs (forward values, gradients, Jacobians), in the backend's
worker process.

A run composes parts with one job each: :class:`~conformance.run.supply.CaseSupply`
(the cases), :class:`~conformance.run.execute.Executor` (the backend, through its
worker), :class:`~conformance.run.judging.Judge` (the oracle, bounds, comparison,
diagnosis, the spec's self-check), :class:`~conformance.run.collector.ResultsCollector`
(what the checks add) and :func:`~conformance.run.document.build_document`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from conformance.backend import Request
from conformance.cache.case_cache import CaseCache
from conformance.cache.oracle_cache import OracleCache
from conformance.cases.generate import DEFAULT_SEED, Case
from conformance.errors import OracleError
from conformance.execution import registry
from conformance.execution.worker import BackendInfo
from conformance.statuses import ERROR, NOT_SUPPORTED
from conformance.judge.diagnose import refine_group
from conformance.oracle import evaluate as oracle
from conformance.oracle.engines.select import get_engine
from conformance.results.document import Record
from conformance.run.collector import CollectedRecord, ResultsCollector
from conformance.run.document import backend_section, build_document, oracle_section
from conformance.run.execute import Executor
from conformance.run.group import Group
from conformance.run.judging import Judge, sized_identities
from conformance.run.phases import NO_TIMING, PhaseTimer
from conformance.run.supply import CaseSupply, RunCache
from conformance.spec.model import Identity, Spec

__all__ = ["Run", "RunCache", "Group"]


class Run:
    """A run of the suite for one backend (a name, a ``module:attr`` target or a resolved reference). Use as a
    context manager (it owns a worker process).
    ``timer``: receives the run's phases (conformance.run.phases), for the benchmark."""

    def __init__(self, spec: Spec, backend: str | registry.BackendRef, *, seed: int = DEFAULT_SEED, examples: int | None = None,
                 timeout: float = 60.0, isolate: bool = True, device: str = "cpu", oracle: str | None = None,
                 cache_dir: str | Path | None = None, cache: RunCache | None = None,
                 timer: PhaseTimer = NO_TIMING) -> None:
        self.spec = spec
        self.engine = get_engine(oracle)  # EngineUnavailable for an unknown or missing engine: a usage error
        self.oracle_cache = OracleCache(cache_dir) if cache_dir is not None else None
        self.case_cache = CaseCache(cache_dir) if cache_dir is not None else None
        self.shard: str | None = None  # "i/N" when this run is one shard of a suite
        self.worker_name = "main"  # which process computed the groups (an xdist worker id, for instance)
        # in-memory work (cases, oracle evaluations), shared with other runs of the same spec and seed when given
        self.cache = cache if cache is not None else RunCache()
        # BackendNotFound for an unknown name: a usage error
        self.ref = backend if isinstance(backend, registry.BackendRef) else registry.find(backend)
        self.seed = seed
        self.examples = examples
        self.timeout = timeout
        self.isolate = isolate
        self.device = device
        self.supply = CaseSupply(spec, seed, examples, self.cache, self.case_cache, timer)
        self.executor = Executor(spec, self.ref, isolate=isolate, timeout=timeout, device=device, timer=timer)
        self.judge = Judge(spec, self.engine, self.oracle_cache, self.cache.oracle, timer)
        self.collector = ResultsCollector()
        self._groups: dict[tuple[str, str, str], Group] = {}
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ backend
    @property
    def worker(self) -> Any:
        """The backend's worker (a process, or in process with ``isolate=False``)."""
        return self.executor.worker

    @property
    def info(self) -> BackendInfo:
        return self.executor.info

    @property
    def started_info(self) -> BackendInfo | None:
        """The backend's info if the backend was needed (its worker started), else None."""
        return self.executor.started_info

    def supports(self, dtype: str) -> bool:
        return self.executor.supports(dtype)

    def request_for(self, case: Case, identities: Sequence[Identity]) -> Request:
        return self.executor.request_for(case, identities)

    def close(self) -> None:
        self.supply.close()
        self.executor.close()

    def prefetch(self, cells: Iterable[tuple[str, str, str] | tuple[str, str, str, int | None]]) -> None:
        """The cells this run will ask for, in order: (layout, dtype, regime) for a group, with a fourth item for
        another number of examples per cell than the run's. Their cases are read from the case cache now, or
        drawn ahead in a second process (conformance.cases.prefetch); the results are the same either way."""
        self.supply.prefetch([c if len(c) == 4 else (*c, self.examples) for c in cells])  # type: ignore[misc]

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
            with self.executor.batch(g.cases):
                if self.supports(dtype):
                    self.judge.stack_bounds(g.cases)
                for case in g.cases:
                    records, bits = self.evaluate_case(case)
                    g.records.extend(records)
                    g.precision[case.id] = bits
                g.records = refine_group(g.records, self.spec, regime)
            g.seconds = time.perf_counter() - start
            self._groups[key] = g
        return self._groups[key]

    def cases(self, layout: str, dtype: str, regime: str, *, examples: int | None | str = "run") -> list[Case]:
        """The cases of (layout, dtype, regime) with this run's seed (``examples``: the run's setting unless
        given): generated once per process, and kept in the case cache when there is one."""
        return self.supply.cases(layout, dtype, regime, examples=examples)

    @property
    def groups(self) -> Mapping[tuple[str, str, str], Group]:
        return self._groups

    # ------------------------------------------------------------------ one case
    def stacked_bounds(self, cases: Sequence[Case]) -> dict[str, tuple[Any, Any]]:
        """Case id -> (oracle evaluation, bounds) for cases bounded together (see Judge.stacked)."""
        return self.judge.stacked(cases)

    def oracle_evaluation(self, case: Case, identities: Sequence[Identity]) -> Any:
        """The oracle's certified evaluation of ``case`` (see Judge.oracle_evaluation)."""
        return self.judge.oracle_evaluation(case, identities)

    def evaluate_case(self, case: Case, *, only: Iterable[str] | None = None,
                      diagnose: bool = True) -> tuple[list[Record], int]:
        """Records for every quantity claimed on ``case`` (or only those named); also the oracle's precision.
        ``diagnose``: classify failures (conformance.judge.diagnose); off where only the verdict matters (shrinking)."""
        wanted = set(only) if only is not None else None
        sized = sized_identities(self.spec, case)
        try:
            ev = self.judge.oracle_evaluation(case, sized)
        except (OracleError, ArithmeticError) as exc:
            return self.judge.uniform(case, sized, wanted, ERROR, "oracle", f"the oracle failed on this case: {exc}"), 0
        idents = [i for i in sized if oracle.applicable(i, case.sizes, ev.preconditions)]
        if not self.supports(case.dtype):
            reason = self.info.reason if not self.info.available else f"dtype {case.dtype} is not supported"
            return self.judge.uniform(case, idents, wanted, NOT_SUPPORTED, "backend", reason), ev.precision
        asked, declined = self.executor.split_kinds(idents)
        reply = self.executor.reply(case, self.request_for(case, asked))
        records = self.judge.judge_reply(case, ev, sized, asked, reply, wanted=wanted, diagnose=diagnose)
        if declined:  # kinds the backend does not list (Backend.quantity_kinds): not supported, never asked
            kinds = ", ".join(sorted({i.kind for i in declined}))
            records += self.judge.uniform(case, declined, wanted, NOT_SUPPORTED, "declined",
                                          f"the backend does not compute {kinds} quantities (its quantity_kinds() "
                                          f"lists {', '.join(self.info.kinds)})", forward=False)
        return records, ev.precision

    # ------------------------------------------------------------------ spec self-check
    def verifications(self, layout: str, identity: str, *, per_regime: int = 2) -> list[dict[str, Any]]:
        """Check one identity against the derivative of the forward definitions, on float64 cases of every
        regime (the spec is verified, not trusted). Independent of the backend."""
        return self.judge.verifications(layout, identity,
                                        lambda regime: self.cases(layout, "float64", regime, examples=1),
                                        per_regime=per_regime)

    # ------------------------------------------------------------------ results
    def record(self, item: CollectedRecord) -> None:
        """Add a test outcome, counterexample, refutation or metamorphic outcome to the results file."""
        self.collector.record(item)

    def oracle_section(self) -> dict[str, Any]:
        """The results file's ``oracle``: the engine and its version, the precision settings, the cache."""
        return oracle_section(self.engine, self.oracle_cache, self.case_cache)

    def document(self) -> dict[str, Any]:
        return build_document(
            spec=self.spec, seconds=time.perf_counter() - self.started,
            backend=backend_section(self.ref, self.info, self.device), oracle_info=self.oracle_section(),
            settings={"seed": self.seed, "examples": self.examples, "timeout": self.timeout, "shard": self.shard,
                      "isolate": self.isolate, "wide": any(f.wide for f in self.spec.families.values())},
            groups=self._groups.values(), worker=self.worker_name, verifications=self.judge.all_verifications(),
            collected=self.collector.sections_json())
