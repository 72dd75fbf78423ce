"""The pytest view of the suite: ``pytest --pyargs conformance --gc-backend NAME`` (or ``pytest conformance ...``
in a checkout).

Registered through the ``pytest11`` entry point of the ``gradconform`` distribution, so it is loaded in every
pytest session of an environment where gradconform is installed: it stays inert (no spec loaded, no run, no
worker) unless the conformance suite (conformance/test_conformance.py) is asked for or collected. Options are
namespaced (``--gc-*``) so that they cannot clash with other plugins (pytest-timeout's ``--timeout``); each has an
environment variable. The tests and what they check are conformance.views.suite's; this module only turns an
outcome into pytest's (pass, skip as "not supported", fail, xfail/xpass for a known-failures file).
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.cache.oracle_cache import DEFAULT_DIR, ENV_CACHE, resolve_cache_dir
from conformance.cases.generate import DEFAULT_SEED
from conformance.errors import BackendNotFound, OutputError, ResultsFileError, SpecError
from conformance.execution.registry import RENAMED, BackendRenamed, renamed
from conformance.execution.sharding import Shard, assign, group_units, parse_shard, unit_of
from conformance.oracle.engines.base import EngineUnavailable
from conformance.oracle.engines.select import DEFAULT_ENGINE, ENV_ORACLE, engine_names
from conformance.atomic import output_problem
from conformance.results.document import load_results, merge, write_results
from conformance.results.naming import report_dir_name, scheduling_scope
from conformance.run.collector import TestRecord
from conformance.run.run import Run
from conformance.spec import load_spec
from conformance.statuses import (PASS, TEST_FAILED, TEST_NOT_SUPPORTED, TEST_PASSED, TEST_XFAIL,
                                  TEST_XPASS)
from conformance.views.suite import KINDS, SUITE_FILE, Checker, SuiteItem, cells_of, plan
from conformance.views.xfails import Xfails, load_xfails

ENV_BACKEND = "GRADCONFORM_BACKEND"
DEFAULT_BACKEND = "numpy"

#: option -> (environment variable, help); the old, unprefixed names are refused with the new one
_OLD_NAMES = {"--backend": "--gc-backend", "--spec": "--gc-spec", "--results": "--gc-results",
              "--report": "--gc-report", "--seed": "--gc-seed", "--examples": "--gc-examples",
              "--device": "--gc-device", "--no-isolate": "--gc-no-isolate", "--counterexamples": "--gc-counterexamples",
              "--oracle": "--gc-oracle", "--oracle-cache": "--gc-oracle-cache", "--shard": "--gc-shard",
              "--timeout": "--gc-timeout"}


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"GRADCONFORM_{name}") or default


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradconform", "gradient conformance (gradconform)")
    group.addoption("--gc-backend", default=None,
                    help=f"backend to test: a name (`gradconform backends` lists them) or package.module:attr; "
                         f"default: ${ENV_BACKEND}, else {DEFAULT_BACKEND}")
    group.addoption("--gc-spec", default=_env("SPEC"), help="spec file (default: $GRADCONFORM_SPEC, else the shipped seed network)")
    group.addoption("--gc-results", default=_env("RESULTS"), help="write the results JSON to this path ($GRADCONFORM_RESULTS)")
    group.addoption("--gc-report", default=_env("REPORT"),
                    help="write results and the HTML/markdown report of this backend under DIR/<backend>/ ($GRADCONFORM_REPORT)")
    group.addoption("--gc-seed", type=int, default=int(_env("SEED", DEFAULT_SEED)), help="seed of case generation ($GRADCONFORM_SEED)")
    group.addoption("--gc-examples", type=int, default=_env("EXAMPLES"),
                    help="cases per (shape family, magnitude) cell, overriding the spec's regimes ($GRADCONFORM_EXAMPLES)")
    group.addoption("--gc-wide", action="store_true", default=_env("WIDE", "") not in ("", "0"),
                    help="also run the regimes of the spec's wide shape families (realistic widths, where "
                         "accumulation errors show; slow: a few minutes) ($GRADCONFORM_WIDE=1)")
    group.addoption("--gc-timeout", type=float, default=float(_env("TIMEOUT", 60.0)),
                    help="seconds a backend may take per case ($GRADCONFORM_TIMEOUT)")
    group.addoption("--gc-device", default=_env("DEVICE", "cpu"),
                    help="device for backends that have several: cpu, cuda ($GRADCONFORM_DEVICE)")
    group.addoption("--gc-no-isolate", action="store_true",
                    help="run the backend in the test process (faster to debug; a crash ends the run)")
    group.addoption("--gc-counterexamples", type=int, default=12,
                    help="how many failing tests get a shrunk minimal counterexample (0: none)")
    group.addoption("--gc-oracle", default=None, choices=list(engine_names()),
                    help=f"oracle engine: mpmath (interval arithmetic, the reference) or flint (Arb balls, faster); "
                         f"default: ${ENV_ORACLE}, else {DEFAULT_ENGINE}")
    group.addoption("--gc-oracle-cache", default=None, metavar="on|off|DIR",
                    help=f"cache of oracle results and generated cases: on (default: ${ENV_CACHE}, else {DEFAULT_DIR}), "
                         "off, or a directory")
    group.addoption("--gc-shard", default=None, metavar="i/N",
                    help="run only the i-th of N deterministic parts of the suite (whole groups; merge the "
                         "results files with `gradconform merge`)")
    group.addoption("--gc-xfails-file", default=_env("XFAILS_FILE"), metavar="FILE",
                    help="known failures, one test id a line (`gradconform baseline RESULTS > FILE` writes one): "
                         "they are run and recorded as xfail, or xpass if they pass ($GRADCONFORM_XFAILS_FILE)")


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> Any:
    """An option of the old, unprefixed names that nothing else defines: say its new name (instead of only
    "unrecognized arguments")."""
    result = yield
    _, unknown = parser.parse_known_and_unknown_args(args)
    for arg in unknown:
        new = _OLD_NAMES.get(arg.split("=", 1)[0])
        if new is not None:
            raise pytest.UsageError(f"gradconform: {arg.split('=', 1)[0]} is now {new} (the gradconform options are "
                                    "namespaced so that they cannot clash with other plugins)")
    return result


# ---------------------------------------------------------------------------- activation

@dataclass
class _State:
    """The plugin's work for a session that runs the suite."""

    run: Run
    checker: Checker
    items: list[SuiteItem]
    xfails: Xfails | None
    backend_given: bool


_state_key = pytest.StashKey[_State]()
_shard_key = pytest.StashKey[Shard]()
_run_id_key = pytest.StashKey[str]()
#: the key of the controller's run id in an xdist worker's ``workerinput``
_RUN_ID_INPUT = "gradconform_run_id"


def _suite_requested(config: pytest.Config) -> bool:
    """Whether the command line names the suite: the package or its test file, a folder that holds it (not
    through a virtual environment, which pytest does not enter), or ``--pyargs conformance[.test_conformance]``."""
    for arg in config.args:
        target = arg.split("::", 1)[0]
        if config.getoption("pyargs") and target in ("conformance", "conformance.test_conformance"):
            return True
        path = (config.invocation_params.dir / target).resolve()
        if path == SUITE_FILE or path == SUITE_FILE.parent:
            return True
        if path in SUITE_FILE.parents and "site-packages" not in SUITE_FILE.relative_to(path).parts:
            return True
    return False


def _backend_name(config: pytest.Config) -> tuple[str, bool]:
    given = config.getoption("--gc-backend") or os.environ.get(ENV_BACKEND)
    return (given, True) if given else (DEFAULT_BACKEND, False)


def _activate(config: pytest.Config) -> _State:
    """Load the spec and set up the run (once a session), or fail with a usage error: a bad spec, an unknown
    backend or oracle, an asked-for backend that cannot be loaded or is unavailable, a bad shard."""
    state = config.stash.get(_state_key, None)
    if state is not None:
        return state
    try:
        spec = load_spec(config.getoption("--gc-spec"))
        spec = spec if config.getoption("--gc-wide") else spec.without_wide()
    except SpecError as exc:
        raise pytest.UsageError(f"gradconform: the spec is invalid: {exc}") from None
    name, given = _backend_name(config)
    notice = renamed(name)
    if notice is not None:  # an old name: said once, at configuration, and the run goes on under the new one
        config.issue_config_time_warning(BackendRenamed(f"gradconform: {notice}"), stacklevel=2)
        name = RENAMED[name]
    try:
        run = Run(spec, name, seed=config.getoption("--gc-seed"), examples=config.getoption("--gc-examples"),
                  timeout=config.getoption("--gc-timeout"), isolate=not config.getoption("--gc-no-isolate"),
                  device=config.getoption("--gc-device"), oracle=config.getoption("--gc-oracle"),
                  cache_dir=resolve_cache_dir(config.getoption("--gc-oracle-cache")))
    except (BackendNotFound, EngineUnavailable) as exc:
        raise pytest.UsageError(f"gradconform: {exc}") from None
    base = config.invocation_params.dir
    for option, directory in (("--gc-results", False), ("--gc-report", True)):
        if config.getoption(option):
            problem = output_problem(base / config.getoption(option), directory=directory)
            if problem is not None:  # found now, not after the whole run
                run.close()
                raise pytest.UsageError(f"gradconform: {option} {config.getoption(option)}: {problem}; choose "
                                        "another path (nothing was run)")
    items = plan(spec)
    xfails = None
    if config.getoption("--gc-xfails-file"):
        try:
            xfails = load_xfails(config.getoption("--gc-xfails-file"))
        except OSError as exc:
            raise pytest.UsageError(f"gradconform: cannot read the known-failures file: {exc}") from None
        for entry in xfails.unmatched(items):
            config.issue_config_time_warning(
                UserWarning(f"gradconform: {xfails.path}: {entry!r} matches no test of the suite"), stacklevel=2)
    shard = config.getoption("--gc-shard")
    if shard is not None:
        try:
            config.stash[_shard_key] = parse_shard(shard)
        except ValueError as exc:
            raise pytest.UsageError(f"gradconform: {exc}") from None
        run.shard = str(config.stash[_shard_key])
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        run.worker_name = str(worker.get("workerid", "worker"))
    elif given and not run.info.available:  # asked for by name: a CI gate must not go green on a typo
        run.close()
        raise pytest.UsageError(f"gradconform: backend {name!r} was asked for but cannot be used: {run.info.reason}")
    if worker is None and config.getoption("dist", "no") != "no":
        run.close()  # the xdist controller runs no test: its workers start their own
    state = _State(run, Checker(run, counterexamples=config.getoption("--gc-counterexamples"),
                                spec_path=config.getoption("--gc-spec")), items, xfails, given)
    config.stash[_state_key] = state
    config.pluginmanager.register(_Recorder(run), "gradconform-recorder")
    return state


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    # one id per run, shared with its xdist workers: the parts of a results file carry it in their names, so the
    # controller merges this run's parts and never a stale one an earlier (killed) run left beside the file
    config.stash[_run_id_key] = str(worker.get(_RUN_ID_INPUT) or "") if worker is not None else ""
    if not config.stash[_run_id_key]:
        config.stash[_run_id_key] = uuid.uuid4().hex[:12]
    if _suite_requested(config):
        _activate(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist, in the controller) Hand the run id to each worker."""
    node.workerinput[_RUN_ID_INPUT] = node.config.stash[_run_id_key]


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(_state_key, None)
    if state is None:
        return []
    ref = state.run.ref
    how = "" if state.backend_given else f" (the default: choose one with --gc-backend or ${ENV_BACKEND})"
    return [f"gradconform: backend {ref.name} ({ref.target}){how}; spec {state.run.spec.name}; "
            f"seed {state.run.seed}"]


class _Recorder:
    """Keeps each test's outcome for the results file."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = TEST_XFAIL if report.skipped else TEST_XPASS
            elif outcome == "skipped":
                outcome = TEST_NOT_SUPPORTED
            message = str(report.longrepr)[:2000] if report.longrepr and outcome != TEST_PASSED else ""
            self.run.record(TestRecord(report.nodeid, outcome, message))


# ---------------------------------------------------------------------------- collection

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if Path(str(metafunc.definition.path)).resolve() != SUITE_FILE:
        return
    state = _activate(metafunc.config)  # collected without being named (``pytest .`` in a checkout)
    for function, argname in KINDS.items():
        if argname and argname in metafunc.fixturenames:
            items = [i for i in state.items if i.function == function]
            metafunc.parametrize(argname, items, ids=[i.param for i in items])


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """(xdist) With ``-n N`` or ``--dist loadgroup``, hand out whole groups (conformance/execution/xdist_scheduling.py):
    a group's cases, oracle values and backend replies are then computed once."""
    if config.stash.get(_state_key, None) is not None and config.getvalue("dist") in ("load", "loadgroup"):
        from conformance.execution.xdist_scheduling import make_scheduler  # lazy: imports xdist, present only with -n

        return make_scheduler(config, log, scheduling_scope)
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the known failures; keep only this shard's units of work (whole groups; see execution/sharding.py)."""
    state = config.stash.get(_state_key, None)
    if state is None:
        return
    shard = config.stash.get(_shard_key, None)
    owner = assign(group_units(state.run.spec, config.getoption("--gc-examples")), shard.count) if shard else {}
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        suite_item = next(iter(callspec.params.values()), None) if callspec is not None else None
        if Path(str(item.path)).resolve() == SUITE_FILE and state.xfails is not None:
            listed = suite_item if isinstance(suite_item, SuiteItem) else next(
                (i for i in state.items if i.function == item.name), None)
            if listed is not None and state.xfails.lists(listed):
                item.add_marker(pytest.mark.xfail(reason=f"listed in {state.xfails.path}", strict=False))
        if not isinstance(suite_item, SuiteItem):
            kept.append(item)
            continue
        unit = unit_of({k: v.value for k, v in callspec.params.items()})
        if shard is not None and unit is not None and owner.get(unit, 1) != shard.index:
            dropped.append(item)
            continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell the run which groups the selected tests compute, in order, so that their cases are drawn ahead
    (conformance.cases.prefetch). Not in an xdist worker: it does not know which groups it will be given, and
    its sibling workers keep the other cores busy."""
    config = session.config
    state = config.stash.get(_state_key, None)
    if state is None or getattr(config, "workerinput", None) is not None or config.getoption("dist", "no") != "no" \
            or config.getoption("collectonly", False):
        return
    chosen = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        value = next(iter(callspec.params.values()), None) if callspec is not None else None
        if isinstance(value, SuiteItem):
            chosen.append(value)
    state.run.prefetch(cells_of(chosen, state.run.spec, state.run.examples))


class Gradconform:
    """The ``gradconform`` fixture: runs one test of the suite and reports its outcome to pytest."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def check(self, item: SuiteItem) -> None:
        outcome = self.state.checker.check(item)
        if outcome.status == TEST_NOT_SUPPORTED:
            pytest.skip(outcome.message if outcome.message.startswith("not supported") else
                        f"not supported: {outcome.message}")
        if outcome.status == TEST_FAILED:
            pytest.fail(outcome.message, pytrace=False)

    def check_lint(self) -> None:
        self.check(next(i for i in self.state.items if i.function == "test_spec_lint"))


@pytest.fixture(scope="session")
def gradconform(request: pytest.FixtureRequest) -> Gradconform:
    return Gradconform(_activate(request.config))


# ---------------------------------------------------------------------------- bookkeeping

def _results_path(config: pytest.Config, state: _State) -> Path | None:
    base = config.invocation_params.dir  # the user's directory, whatever pytest's rootdir
    if config.getoption("--gc-results"):
        return base / config.getoption("--gc-results")
    if config.getoption("--gc-report"):
        run = state.run
        name = run.started_info.name if run.started_info is not None and run.started_info.available else run.ref.name
        return base / config.getoption("--gc-report") / report_dir_name(name) / "results.json"
    return None


def part_path(path: Path, run_id: str, worker: str) -> Path:
    """Where an xdist worker of run ``run_id`` writes its part of the results file ``path``."""
    return path.with_name(f"{path.name}.part-{run_id}-{worker}")


def _save(session: pytest.Session, path: Path, doc: dict[str, Any]) -> Path:
    """Write the results to ``path``, or where :func:`write_results` falls back to (said, and the run's exit
    status is then not 0: a CI gate must not read an old file as this run's)."""
    try:
        written, problem = write_results(path, doc)
    except OutputError as exc:  # nowhere to write: said, and the run fails (no traceback at the end of a run)
        _warn(session.config, f"gradconform: {exc}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return path.with_name(path.name + ".unwritten")  # never equal to ``path``: no report is built from it
    if problem is not None:
        _warn(session.config, f"gradconform: {problem}; the results of this run are in {written}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    return written


def _warn(config: pytest.Config, message: str) -> None:
    """A line in the terminal (or on stderr without one): a notice, not a failure of the run."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, yellow=True)
    else:
        print(message, file=sys.stderr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_state_key, None)
    if state is None:
        return
    run = state.run
    try:
        path = _results_path(config, state)
        if path is None:
            return
        run_id = config.stash[_run_id_key]
        worker = getattr(config, "workerinput", None)
        if worker is not None:  # an xdist worker writes its part; the controller merges
            if run.groups or run.collector.has("tests"):
                _save(session, part_path(path, run_id, str(worker["workerid"])), run.document())
            return
        parts = sorted(path.parent.glob(f"{path.name}.part-{run_id}-*"))
        stale = sorted(set(path.parent.glob(f"{path.name}.part-*")) - set(parts))
        if stale:
            _warn(config, f"gradconform: ignored {len(stale)} results part(s) of an earlier run beside {path} "
                          f"({', '.join(p.name for p in stale[:3])}{', ...' if len(stale) > 3 else ''}); "
                          "delete them")
        own = run.groups or not parts
        mine = [run.document()] if own else []
        try:
            names = (["this run"] if own else []) + [str(p) for p in parts]
            merged = merge(mine + [load_results(p) for p in parts], names)
        except (OSError, ResultsFileError) as exc:  # a part changed or removed under the run: keep every piece
            if mine:
                _save(session, part_path(path, run_id, "controller"), mine[0])
            _warn(config, f"gradconform: the parts of this run cannot be merged into {path}: {exc}; they are left "
                          f"beside it ({path.name}.part-{run_id}-*): fix or remove the bad one, then "
                          "`gradconform merge`")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        written = _save(session, path, merged)
        if written.is_file():  # the parts are this run's only copy until the merged results are written somewhere
            for p in parts:
                p.unlink()
        if config.getoption("--gc-report") and written == path:
            from conformance.report import build_backend_report  # lazy: jinja2 and matplotlib, only with --gc-report

            try:
                build_backend_report(path, path.parent)
            except OSError as exc:
                _warn(config, f"gradconform: the results are in {path}, but the report could not be written "
                              f"({exc}); rebuild it with `gradconform report`")
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        elif config.getoption("--gc-report") and written.is_file():  # the results went elsewhere (said above)
            _warn(config, f"gradconform: no report was built in {path.parent} (the results are in {written}); "
                          f"build it with `gradconform report --out DIR {written}`")
    finally:
        run.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_state_key, None)
    if state is None or hasattr(config, "workerinput"):
        return
    run = state.run
    tr = terminalreporter
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
    path = _results_path(config, state)
    if path is not None and path.exists():
        tr.write_line(f"results: {path}")
