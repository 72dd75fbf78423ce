"""The Python API: ``conformance.run_suite(backend)`` runs the whole suite (or a selection) and returns typed results.

In the style of Hypothesis's ``run_conformance_test(Provider)`` and ONNX's ``BackendTest``: the backend is a
name, a ``module:attr`` target, a class or an instance; the tests and their outcomes are exactly the pytest
suite's (conformance.views.suite), so ``pytest --pyargs conformance``, ``gradconform run`` and this function
agree. A known-failures list turns listed failures into ``xfail`` (and listed passes into ``xpass``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from conformance.cache.oracle_cache import resolve_cache_dir
from conformance.cases.generate import DEFAULT_SEED
from conformance.errors import SelectionError
from conformance.execution.registry import BackendRef, find, object_ref
from conformance.results.document import write_json_atomic
from conformance.run.collector import TestRecord
from conformance.run.run import Run
from conformance.spec import Spec, load_spec
from conformance.statuses import TEST_FAILED, TEST_PASSED, TEST_XFAIL, TEST_XPASS
from conformance.views.suite import Checker, SuiteItem, cells_of, plan
from conformance.views.xfails import Xfails, load_xfails, parse_xfails

__all__ = ["run_suite", "SuiteResult", "TestResult", "Selection"]

#: which tests to run: substrings of test ids (``function[param]``; any one matching selects), or a predicate
Selection = str | Iterable[str] | Callable[[str], bool] | None


@dataclass(frozen=True)
class TestResult:
    """One test of the suite: its id (``test_identity[dL/dx-row-float32-benign]``), its kind (the test function),
    its outcome (passed, failed, not_supported, xfail, xpass) and why."""

    __test__ = False  # not a pytest test class, despite its name

    id: str
    kind: str
    status: str
    message: str = ""


@dataclass(frozen=True)
class SuiteResult:
    """What a run of the suite found. ``document``: the results file's content (``write`` saves it; the reports
    and ``gradconform baseline`` read it); ``warnings``: known-failure entries that match no test."""

    backend: str
    tests: tuple[TestResult, ...]
    document: Mapping[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No test failed (``xfail``, ``xpass`` and ``not_supported`` do not fail a run; none of them is a pass)."""
        return not self.with_status(TEST_FAILED)

    def with_status(self, status: str) -> tuple[TestResult, ...]:
        return tuple(t for t in self.tests if t.status == status)

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.status for t in self.tests))

    def write(self, path: str | Path) -> Path:
        """Write the results file (``.json`` or ``.json.gz``)."""
        write_json_atomic(Path(path), dict(self.document))
        return Path(path)


def _selected(items: list[SuiteItem], select: Selection) -> list[SuiteItem]:
    if select is None:
        return items
    if callable(select):
        return [i for i in items if select(_test_id(i))]
    words = [select] if isinstance(select, str) else list(select)
    return [i for i in items if any(w in _test_id(i) for w in words)]


def _test_id(item: SuiteItem) -> str:
    return item.node_id.split("::", 1)[1]


def _ref(backend: str | type | Any) -> BackendRef:
    return find(backend) if isinstance(backend, str) else object_ref(backend)


def _xfails(xfails: str | Path | Iterable[str] | None) -> Xfails | None:
    if xfails is None:
        return None
    if isinstance(xfails, (str, Path)):
        return load_xfails(xfails)
    return parse_xfails("\n".join(xfails), "<xfails>")


def run_suite(backend: str | type | Any, *, spec: str | Path | Spec | None = None, select: Selection = None,
              xfails: str | Path | Iterable[str] | None = None, seed: int = DEFAULT_SEED, examples: int | None = None,
              timeout: float = 60.0, device: str = "cpu", isolate: bool = True, oracle: str | None = None,
              cache: str | Path | None = None, counterexamples: int = 12, wide: bool = False,
              progress: Callable[[TestResult], None] | None = None) -> SuiteResult:
    """Run the conformance suite on ``backend`` and return every test's outcome.

    ``backend``: a name (``gradconform backends``), a ``package.module:attr`` target, a backend class or an
    instance (a class defined at module level runs in a worker process, like a named backend; an instance or a
    class in ``__main__`` runs in this process). ``spec``: a spec file or a loaded spec (default: the shipped one).
    ``select``: see :data:`Selection`. ``xfails``: a known-failures file, or its entries. ``cache``: the on-disk
    cache, ``"off"`` or a directory (default: the user's cache directory). ``wide``: also the regimes of the spec's wide shape families (slow; the
    default run leaves them out, see :meth:`Spec.without_wide`). ``progress``: called after each test.
    Raises BackendNotFound (unknown name), EngineUnavailable, SpecError and SelectionError (a selection that
    matches no test) for what the caller got wrong; an
    unavailable backend is not an error here: its tests are ``not_supported`` (check ``document["backend"]``).
    """
    loaded = spec if isinstance(spec, Spec) else load_spec(spec)
    loaded = loaded if wide else loaded.without_wide()
    ref = _ref(backend)
    known = _xfails(xfails)
    items = plan(loaded)
    chosen = _selected(items, select)
    if not chosen:
        raise SelectionError(f"the selection {select!r} matches none of the {len(items)} tests of the suite; test ids "
                             f"look like {_test_id(items[0])!r} (any given substring of an id selects it)"
                             if items else "the spec defines no test")
    warnings = tuple(f"{known.path}: {e!r} matches no test of the suite" for e in known.unmatched(items)) if known else ()
    results = []
    with Run(loaded, ref, seed=seed, examples=examples, timeout=timeout, isolate=isolate and ref.obj is None,
             device=device, oracle=oracle, cache_dir=resolve_cache_dir(None if cache is None else str(cache))) as run:
        run.prefetch(cells_of(chosen, loaded, examples))
        checker = Checker(run, counterexamples=counterexamples,
                          spec_path=str(spec) if isinstance(spec, (str, Path)) else None)
        for item in chosen:
            outcome = checker.check(item)
            status = outcome.status
            if known is not None and known.lists(item):
                status = {TEST_FAILED: TEST_XFAIL, TEST_PASSED: TEST_XPASS}.get(status, status)
            result = TestResult(_test_id(item), item.function, status, outcome.message)
            run.record(TestRecord(item.node_id, status, outcome.message[:2000]))
            results.append(result)
            if progress is not None:
                progress(result)
        document = run.document()
    name = str(document["backend"]["name"])
    return SuiteResult(name, tuple(results), document, warnings)

