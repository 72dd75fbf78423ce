"""The pytest view of a run: ``pytest conformance --backend NAME``.

Tests are generated from the spec and named like it:

* ``test_forward[yhat-row-float32-benign]``: a forward value;
* ``test_identity[dL/dx-row-float32-large_logits]``: an identity's value,
  computed by the backend, judged against the oracle with the tolerance policy;
* ``test_spec_identity[dL/dx-row]``: the identity itself, checked by the
  oracle against the derivative of the forward definitions (backend-free);
* ``test_negative_identity[dL/dx.W1_not_transposed-row]``: a known-wrong
  formula of the spec, which must be refuted (backend-free);
* ``test_metamorphic[shift-row-float32]``: a relation between two results of
  the backend that holds without any reference value (conformance.checks.metamorphic);
* ``test_spec_lint``: the spec's static checks (conformance.checks.lint).

A test passes when every case of its group passes; a dtype or quantity the
backend does not support is skipped as "not supported" (never a pass); any
other status fails the test with the worst case, the minimal counterexample
hypothesis finds, and a command that reruns the case.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from conformance.cases.generate import DEFAULT_SEED, Case, case_strategy, cell_seed, deterministic_generation
from conformance.statuses import FAIL, NOT_SUPPORTED, PASS
from conformance.oracle.engines.base import EngineUnavailable
from conformance.oracle.engines.select import DEFAULT_ENGINE, ENV_ORACLE, engine_names
from conformance.errors import BackendNotFound, SpecError
from conformance.cache.oracle_cache import DEFAULT_DIR, ENV_CACHE, resolve_cache_dir
from conformance.results.document import Record, load_results, merge, write_json_atomic
from conformance.results.naming import (metamorphic_param, negative_param, node_id, pytest_command, quantity_param,
                                        quantity_test_function, scheduling_scope, spec_identity_param)
from conformance.run.collector import CounterexampleRecord, TestRecord
from conformance.run.run import Run
from conformance.execution.sharding import Shard, assign, group_units, parse_shard, unit_of
from conformance.formats import DTYPES
from conformance.spec import Spec, load_spec
from conformance.spec.predicates import identity_applies_to_regime

ENV_BACKEND = "GRADCONFORM_BACKEND"

_run_key = pytest.StashKey[Run]()
_spec_key = pytest.StashKey[Spec]()
_budget_key = pytest.StashKey[list]()
_shard_key = pytest.StashKey[Shard]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradconform", "gradient conformance")
    group.addoption("--backend", default=None,
                    help=f"backend to test: a name (`gradconform backends` lists them) or package.module:attr; "
                         f"default: ${ENV_BACKEND}, else numpy")
    group.addoption("--spec", default=None, help="spec file (default: the shipped seed network)")
    group.addoption("--results", default=None, help="write the results JSON to this path")
    group.addoption("--report", default=None,
                    help="write results and the HTML/markdown report of this backend under DIR/<backend>/")
    group.addoption("--seed", type=int, default=DEFAULT_SEED, help="seed of case generation")
    group.addoption("--examples", type=int, default=None,
                    help="cases per (shape family, magnitude) cell, overriding the spec's regimes")
    group.addoption("--timeout", type=float, default=60.0, help="seconds a backend may take per case")
    group.addoption("--device", default="cpu", help="device for backends that have several (cpu, cuda)")
    group.addoption("--no-isolate", action="store_true",
                    help="run the backend in the test process (faster to debug; a crash ends the run)")
    group.addoption("--counterexamples", type=int, default=12,
                    help="how many failing tests get a shrunk minimal counterexample (0: none)")
    group.addoption("--oracle", default=None, choices=list(engine_names()),
                    help=f"oracle engine: mpmath (interval arithmetic, the reference) or flint (Arb balls, faster); "
                         f"default: ${ENV_ORACLE}, else {DEFAULT_ENGINE}")
    group.addoption("--oracle-cache", default=None, metavar="on|off|DIR",
                    help=f"cache of oracle results and generated cases: on (default: ${ENV_CACHE}, else "
                         f"{DEFAULT_DIR}/ in the working directory), off, or a directory")
    group.addoption("--shard", default=None, metavar="i/N",
                    help="run only the i-th of N deterministic parts of the suite (whole groups; merge the "
                         "results files with `gradconform merge`)")


def _backend_name(config: pytest.Config) -> str:
    return config.getoption("--backend") or os.environ.get(ENV_BACKEND) or "numpy"


def pytest_configure(config: pytest.Config) -> None:
    try:
        spec = load_spec(config.getoption("--spec"))
    except SpecError as exc:
        raise pytest.UsageError(f"gradconform: the spec is invalid: {exc}") from None
    config.stash[_spec_key] = spec
    config.stash[_budget_key] = [int(config.getoption("--counterexamples"))]
    shard = config.getoption("--shard")
    if shard is not None:
        try:
            config.stash[_shard_key] = parse_shard(shard)
        except ValueError as exc:
            raise pytest.UsageError(f"gradconform: {exc}") from None
    try:
        run = Run(spec, _backend_name(config), seed=config.getoption("--seed"), examples=config.getoption("--examples"),
                  timeout=config.getoption("--timeout"), isolate=not config.getoption("--no-isolate"),
                  device=config.getoption("--device"), oracle=config.getoption("--oracle"),
                  cache_dir=resolve_cache_dir(config.getoption("--oracle-cache")))
    except (BackendNotFound, EngineUnavailable) as exc:
        raise pytest.UsageError(f"gradconform: {exc}") from None
    if shard is not None:
        run.shard = str(config.stash[_shard_key])
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        run.worker_name = str(worker.get("workerid", "worker"))
    config.stash[_run_key] = run
    config.pluginmanager.register(_Recorder(run), "gradconform-recorder")


class _Recorder:
    """Keeps each test's outcome for the results file."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            if outcome == "skipped":
                outcome = "not_supported"
            message = str(report.longrepr)[:2000] if report.longrepr and outcome != "passed" else ""
            self.run.record(TestRecord(report.nodeid, outcome, message))


# ---------------------------------------------------------------------------- parametrisation

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    spec = metafunc.config.stash.get(_spec_key, None)
    if spec is None:
        return
    dtypes = [d for d in DTYPES if d in spec.tolerance.accumulate]
    if "forward_item" in metafunc.fixturenames:
        items, ids = [], []
        for lname, lay in spec.layouts.items():
            for d in lay.forward:
                for dtype in dtypes:
                    for regime in spec.regimes:
                        items.append((d.name, lname, dtype, regime))
                        ids.append(quantity_param(d.name, lname, dtype, regime))
        metafunc.parametrize("forward_item", items, ids=ids)
    if "identity_item" in metafunc.fixturenames:
        items, ids = [], []
        for lname, lay in spec.layouts.items():
            for ident in lay.identities:
                for dtype in dtypes:
                    for regime in spec.regimes:
                        if identity_applies_to_regime(spec, ident, regime):
                            items.append((ident.id, lname, dtype, regime))
                            ids.append(quantity_param(ident.id, lname, dtype, regime))
        metafunc.parametrize("identity_item", items, ids=ids)
    if "spec_identity_item" in metafunc.fixturenames:
        items = [(ident.id, lname) for lname, lay in spec.layouts.items() for ident in lay.identities]
        metafunc.parametrize("spec_identity_item", items, ids=[spec_identity_param(i, l) for i, l in items])
    if "negative_item" in metafunc.fixturenames:
        negs = list(range(len(spec.negative_identities)))
        metafunc.parametrize("negative_item", negs, ids=[negative_param(n.id, n.layout) for n in spec.negative_identities])
    if "metamorphic_item" in metafunc.fixturenames:
        from conformance.checks.metamorphic import applicable_properties

        mitems = [(prop, lname, dtype) for prop, lname in applicable_properties(spec) for dtype in dtypes]
        metafunc.parametrize("metamorphic_item", mitems, ids=[metamorphic_param(*m) for m in mitems])


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """(xdist) With ``-n N`` or ``--dist loadgroup``, hand out whole groups (conformance/xdist_scheduling.py):
    a group's cases, oracle values and backend replies are then computed once."""
    if config.getvalue("dist") in ("load", "loadgroup"):
        from conformance.execution.xdist_scheduling import make_scheduler

        return make_scheduler(config, log, scheduling_scope)
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only this shard's units of work (whole groups; see conformance/sharding.py)."""
    spec = config.stash.get(_spec_key, None)
    if spec is None:
        return
    shard = config.stash.get(_shard_key, None)
    owner = assign(group_units(spec, config.getoption("--examples")), shard.count) if shard is not None else {}
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        unit = unit_of(callspec.params) if callspec is not None else None
        if unit is None:
            kept.append(item)
            continue
        if shard is not None and owner.get(unit, 1) != shard.index:
            dropped.append(item)
            continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def gradconform(request: pytest.FixtureRequest) -> "Checker":
    return Checker(request.config)


# ---------------------------------------------------------------------------- checks

class Checker:
    """What each generated test does."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.run: Run = config.stash[_run_key]
        self.spec: Spec = config.stash[_spec_key]

    def check_quantity(self, item: tuple[str, str, str, str]) -> None:
        qid, layout, dtype, regime = item
        run = self.run
        info = run.info
        if not info.available:
            pytest.skip(f"not supported: backend {info.name!r} is unavailable: {info.reason}")
        if not run.supports(dtype):
            pytest.skip(f"not supported: backend {info.name!r} does not support {dtype}")
        group = run.group(layout, dtype, regime)
        records = group.for_quantity(qid)
        if not records:
            pytest.fail(f"{qid} [{layout}, {dtype}, {regime}]: no generated case is one the identity applies to "
                        "(a spec or generator problem: nothing was checked)", pytrace=False)
        bad = [r for r in records if r.status not in (PASS, NOT_SUPPORTED)]
        unsupported = [r for r in records if r.status == NOT_SUPPORTED]
        if not bad and not unsupported:
            return
        if not bad:
            pytest.skip(f"not supported on {len(unsupported)} of {len(records)} cases: {unsupported[0].message}")
        pytest.fail(self._failure_message(qid, layout, dtype, regime, records, bad, group.cases), pytrace=False)

    def _failure_message(self, qid: str, layout: str, dtype: str, regime: str, records: list[Record],
                         bad: list[Record], cases: list[Case]) -> str:
        by_status: dict[str, int] = {}
        for r in bad:
            key = r.status + (f" ({r.detail})" if r.detail else "")
            by_status[key] = by_status.get(key, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
        worst = max(bad, key=lambda r: (r.status == FAIL, _finite(r.max_ratio)))
        case = next(c for c in cases if c.id == worst.case)
        lines = [
            f"{qid} [{layout}, {dtype}, regime {regime}]: {len(bad)} of {len(records)} cases do not conform: {counts}",
            f"worst: case {worst.case} (family {worst.family}"
            + (f", magnitude {worst.magnitude:g}" if worst.magnitude is not None else "") + f"): {worst.message.strip()}",
        ]
        if worst.max_ulp is not None and worst.status == FAIL:
            lines.append(f"  error {worst.max_abs_err:.3g} (relative {worst.max_rel_err:.3g}, {worst.max_ulp:.0f} ulp); "
                         f"bound {worst.worst_bound:.3g}; ratio to allowed {worst.max_ratio:.3g}")
        if worst.diagnosis:
            kinds: dict[str, int] = {}
            for r in bad:
                if r.diagnosis:
                    kinds[r.diagnosis["class"]] = kinds.get(r.diagnosis["class"], 0) + 1
            tally = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            lines.append(f"  diagnosis: {worst.diagnosis['class']}: {worst.diagnosis['message']}"
                         + (f" (over the failing cases: {tally})" if len(kinds) > 1 or len(bad) > 1 else ""))
        lines.append(f"  inputs: {_inputs_text(case)}")
        minimal = self._counterexample(qid, layout, dtype, regime, worst)
        if minimal is not None:
            lines.append(f"minimal counterexample (hypothesis shrinking): case {minimal.id}: {_inputs_text(minimal)}")
        lines.append(f"rerun: {self.rerun_command(qid, layout, dtype, regime)}")
        return "\n".join(lines)

    def rerun_command(self, qid: str, layout: str, dtype: str, regime: str) -> str:
        """The command that reruns exactly this test: its node id (``-k`` would match substrings:
        ``L-row-...`` also selects ``dL/dtheta.general-row-...``)."""
        kind = "value" if any(d.name == qid for d in self.spec.layouts[layout].forward) else "identity"
        node = node_id(quantity_test_function(kind), quantity_param(qid, layout, dtype, regime))
        ref = self.run.ref
        seed = self.config.getoption("--seed")
        return pytest_command(node, ref.name if ref.source != "module:attr" else ref.target,
                              seed=seed if seed != DEFAULT_SEED else None, examples=self.config.getoption("--examples"),
                              spec=self.config.getoption("--spec") or None)

    def _counterexample(self, qid: str, layout: str, dtype: str, regime: str, worst: Record) -> Case | None:
        budget = self.config.stash[_budget_key]
        if budget[0] <= 0 or worst.status != FAIL:
            return None
        budget[0] -= 1
        from hypothesis import HealthCheck, Phase, find, settings
        from hypothesis.errors import NoSuchExample

        strategy = case_strategy(self.spec, layout, dtype, regime, worst.family, worst.magnitude)
        detail = worst.detail

        def fails(case: Case) -> bool:
            recs, _ = self.run.evaluate_case(case, only=[qid], diagnose=False)
            return any(r.quantity == qid and r.status == FAIL and r.detail == detail for r in recs)

        try:
            with deterministic_generation():
                found = find(strategy, fails,
                             settings=settings(max_examples=60, database=None, deadline=None,
                                               phases=[Phase.generate, Phase.shrink],
                                               suppress_health_check=list(HealthCheck)),
                             random=random.Random(cell_seed(self.run.seed, "shrink", qid, layout, dtype, regime)))
        except NoSuchExample:
            return None
        recs, _ = self.run.evaluate_case(found, only=[qid])
        self.run.record(CounterexampleRecord(qid, layout, dtype, regime, found, tuple(recs),
                                             self.rerun_command(qid, layout, dtype, regime)))
        return found

    def check_spec_identity(self, item: tuple[str, str]) -> None:
        identity, layout = item
        verifs = self.run.verifications(layout, identity)
        if not verifs:
            pytest.fail(f"{identity} [{layout}]: no case of any regime satisfies the identity's conditions", pytrace=False)
        bad = [v for v in verifs if v["verdict"] != "holds"]
        if bad:
            v = bad[0]
            case = Case.from_json(v["case"])
            pytest.fail(
                f"the spec's identity {identity} [{layout}] is {v['verdict']} on {len(bad)} of {len(verifs)} cases: "
                f"{v['reason']}; identity {v.get('identity_value')!r} vs derivative {v.get('derivative_value')!r}\n"
                f"  inputs: {_inputs_text(case)}", pytrace=False)


    def check_negative(self, index: int) -> None:
        from conformance.checks.negative import refute

        neg = self.spec.negative_identities[index]
        refutation = refute(self.spec, neg, seed=self.run.seed, cache=self.run.oracle_cache)
        self.run.record(refutation)
        if not refutation.refuted:
            pytest.fail("the harness could not refute a known-wrong formula of the spec (so its checks could not "
                        "catch this mistake either):\n" + refutation.render(), pytrace=False)

    def check_metamorphic(self, item: tuple[str, str, str]) -> None:
        from conformance.checks.metamorphic import PROPERTIES, check_property

        prop, layout, dtype = item
        result = check_property(self.run, prop, layout, dtype)
        self.run.record(result)
        if result.status == PASS:
            return
        head = f"metamorphic property {prop} [{layout}, {dtype}] ({PROPERTIES[prop]}): {result.status}"
        if result.status == NOT_SUPPORTED:
            pytest.skip(f"not supported: {result.message}")
        pytest.fail(f"{head}: {result.message}", pytrace=False)

    def check_lint(self) -> None:
        from conformance.checks.lint import lint_spec

        report = lint_spec(self.spec)
        if not report.ok:
            pytest.fail(report.render(), pytrace=False)


def _finite(x: Any) -> float:
    try:
        return float(x) if x is not None else 0.0
    except (TypeError, ValueError):
        return float("inf")


def _inputs_text(case: Case) -> str:
    parts = []
    for k, v in case.inputs.items():
        flat = v.astype(float).reshape(-1).tolist()
        parts.append(f"{k}={[float(f'{x:.6g}') for x in flat]}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- bookkeeping

def _results_path(config: pytest.Config) -> Path | None:
    if config.getoption("--results"):
        return Path(config.getoption("--results"))
    if config.getoption("--report"):
        run = config.stash[_run_key]
        return Path(config.getoption("--report")) / run.ref.name / "results.json"
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run = config.stash.get(_run_key, None)
    if run is None:
        return
    try:
        path = _results_path(config)
        if path is None:
            return
        worker = getattr(config, "workerinput", None)
        if worker is not None:  # an xdist worker writes its part; the controller merges
            if run.groups or run.collector.has("tests"):
                write_json_atomic(path.with_name(f"{path.name}.part-{worker['workerid']}"), run.document())
            return
        parts = sorted(path.parent.glob(f"{path.name}.part-*"))
        docs = [run.document()] if (run.groups or not parts) else []
        docs += [load_results(p) for p in parts]
        write_json_atomic(path, merge(docs))
        for p in parts:
            p.unlink()
        if config.getoption("--report"):
            from conformance.report import build_backend_report

            build_backend_report(path, path.parent)
    finally:
        run.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(_run_key, None)
    if run is None or hasattr(config, "workerinput"):
        return
    tr = terminalreporter
    started = run.started_info  # None: no test needed the backend
    if started is not None and not started.available:
        tr.section("gradconform")
        tr.write_line(f"backend {run.ref.name!r} is unavailable: {started.reason}")
        tr.write_line("its tests were skipped as 'not supported' (never counted as passes)")
    if run.groups:
        tr.section("gradconform")
        info = run.info
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        tr.write_line(f"backend {info.name} ({info.description or run.ref.target}){'; ' + versions if versions else ''}")
        tr.write_line(f"spec {run.spec.name} sha256 {run.spec.sha256[:12]}; seed {run.seed}; device {run.device}")
        table: dict[tuple[str, str], dict[str, int]] = {}
        for (layout, dtype, _), g in run.groups.items():
            counts = table.setdefault((layout, dtype), {})
            for r in g.records:
                counts[r.status] = counts.get(r.status, 0) + 1
        for (layout, dtype), counts in sorted(table.items()):
            total = sum(counts.values())
            rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != PASS)
            tr.write_line(f"  {layout:7s} {dtype:9s} {counts.get(PASS, 0):5d}/{total} case-quantities pass"
                          + (f"; {rest}" if rest else ""))
    path = _results_path(config)
    if path is not None and path.exists():
        tr.write_line(f"results: {path}")
