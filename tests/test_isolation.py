"""Isolation from faulty backends: every failure mode is a recorded verdict, and the run goes on.

The backends in tests/isolation_backends.py each do one thing wrong on purpose.
They run in the persistent worker process of a real :class:`conformance.run.run.Run`,
exactly as in a conformance run; each case must come back with the verdict of
its fault (error, fail wrong_shape / wrong_dtype / nonfinite / missing,
crashed, timed_out) and its message, for every quantity of the case, while
the other cases are still evaluated. A crash or a hang kills the worker,
which is restarted for the next request, and only then (it is not a process
per case). The last tests drive whole `pytest conformance` sessions.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conformance.cases.generate import generate_cases
from conformance.run.run import Run
from conformance.spec import load_spec
from tests.isolation_backends import PID_KEY

SPEC = load_spec(None)
#: cases of a benign group with --gc-examples 1: one per shape family of the spec
N_BENIGN = len(SPEC.families_for(SPEC.regimes["benign"]))
CONFORMANCE = str(Path(__file__).resolve().parent.parent / "conformance")


def _target(cls: str) -> str:
    return f"tests.isolation_backends:{cls}"


@pytest.fixture(scope="module")
def cases():
    """float32, benign: one case for each shape family of the spec."""
    found = generate_cases(SPEC, "row", "float32", "benign", examples=1)
    assert len(found) == len(SPEC.families_for(SPEC.regimes["benign"]))
    return found


def _evaluate(cls: str, cases, *, timeout: float = 60.0):
    with Run(SPEC, _target(cls), timeout=timeout) as run:
        per_case = [run.evaluate_case(c)[0] for c in cases]
        return per_case, run.worker.restarts


def _quantities(case) -> int:
    lay = SPEC.layouts[case.layout]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    return len(lay.forward) + len(sized)


@pytest.mark.parametrize("cls, status, detail, message", [
    ("Raises", "error", "exception", r"RuntimeError: deliberate failure inside evaluate\(\)"),
    ("WrongShape", "fail", "wrong_shape", r"shape \(\d+, \d+\), expected \(\d+, \d+\)"),
    ("WrongDtype", "fail", "wrong_dtype", r"dtype float64, expected float32"),
])
def test_every_quantity_of_every_case_gets_the_verdict(cases, cls, status, detail, message):
    per_case, restarts = _evaluate(cls, cases)
    for case, records in zip(cases, per_case):
        assert len(records) == _quantities(case)  # nothing dropped: each quantity has its record
        for r in records:
            assert (r.status, r.detail) == (status, detail), r
            assert re.search(message, r.message), r.message
    assert restarts == 0  # an exception or a bad result does not cost the worker its life


def test_nan_where_the_oracle_is_finite_fails_only_that_quantity(cases):
    per_case, _ = _evaluate("NaNWhereFinite", cases)
    for records in per_case:
        for r in records:
            if r.kind == "gradient":
                assert (r.status, r.detail) == ("fail", "nonfinite"), r
                assert "non-finite component(s) where the exact value is finite, first at (0, 0): " in r.message
            else:
                assert r.status == "pass", r  # the untouched quantities of the same reply still pass


def test_a_missing_quantity_is_a_failure(cases):
    per_case, _ = _evaluate("Missing", cases[:1])
    grads = [r for r in per_case[0] if r.kind == "gradient"]
    assert grads and all((r.status, r.detail) == ("fail", "missing") for r in grads)
    assert all(r.status == "pass" for r in per_case[0] if r.kind != "gradient")


@pytest.mark.parametrize("cls, signal", [("Aborts", "SIGABRT"), ("Segfaults", "SIGSEGV")])
def test_a_crash_is_recorded_for_each_case_and_the_worker_restarted(cases, cls, signal):
    per_case, restarts = _evaluate(cls, cases)
    for case, records in zip(cases, per_case):
        assert len(records) == _quantities(case)
        for r in records:
            assert r.status == "crashed", r
            assert f"the backend process died while evaluating (killed by signal {signal}); it will be restarted" \
                in r.message
    assert restarts == len(cases) - 1  # the first case used the worker started for the run


def test_a_hang_is_timed_out_and_the_worker_restarted(cases):
    per_case, restarts = _evaluate("Hangs", cases[:2], timeout=1.0)
    for records in per_case:
        for r in records:
            assert r.status == "timed_out", r
            assert "no answer within 1 s; the backend process was killed and will be restarted" in r.message
    assert restarts == 1


def test_a_backend_that_crashes_while_loading_is_unavailable_not_a_crash_of_the_run(cases):
    with Run(SPEC, "tests.isolation_backends:crash_on_load") as run:
        assert not run.info.available
        assert "crashed while loading (killed by signal SIGSEGV)" in run.info.reason
        records, _ = run.evaluate_case(cases[0])
    assert records and all(r.status == "not_supported" and "crashed while loading" in r.message for r in records)


def test_the_worker_is_persistent_and_restarted_only_after_a_crash():
    """One process answers request after request; a crash costs one restart, and the new process stays."""
    f32 = generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]
    f16 = generate_cases(SPEC, "row", "float16", "benign", examples=1)[0]
    with Run(SPEC, _target("SegfaultsOnFloat16")) as run:
        assert run.info.available

        def ask(case):
            lay = SPEC.layouts[case.layout]
            return run.worker.evaluate(run.request_for(case, lay.identities))

        first = [ask(f32) for _ in range(3)]
        crash = ask(f16)
        after = [ask(f32) for _ in range(3)]
        assert [r.status for r in first + [crash] + after] == ["ok"] * 3 + ["crashed"] + ["ok"] * 3
        pids_before = {int(r.values[PID_KEY]) for r in first}
        pids_after = {int(r.values[PID_KEY]) for r in after}
        assert len(pids_before) == 1 and len(pids_after) == 1  # one process for many requests
        assert pids_before != pids_after  # a new one after the crash
        assert run.worker.restarts == 1


def test_silent_float32_inside_a_float64_backend_is_flagged():
    """The verdicts can fail: float64 results computed in float32 are beyond the float64 bound.

    (Where every input happens to be a float32 number, hypothesis's simplest draws, the narrow
    computation can be exact: only the other cases must be flagged.)
    """
    f64 = generate_cases(SPEC, "row", "float64", "benign", examples=2)
    per_case, _ = _evaluate("Float32Inside", f64)
    narrowed = 0
    for case, records in zip(f64, per_case):
        assert {r.status for r in records} <= {"pass", "fail"}
        assert {r.detail for r in records if r.status == "fail"} <= {"out_of_bound"}
        if any((v.astype(np.float32).astype(np.float64) != v).any() for v in case.inputs.values()):
            narrowed += 1
            assert any(r.status == "fail" for r in records if r.kind == "gradient"), case.id
    assert narrowed >= 4


# ---------------------------------------------------------------------------- whole pytest sessions

def _conformance(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(CONFORMANCE, "-p", "no:cacheprovider", "-rA", *args)


def test_pytest_session_records_a_crash_and_goes_on(pytester):
    result = _conformance(pytester, "--gc-backend", _target("SegfaultsOnFloat16"), "--gc-examples", "1",
                          "--gc-counterexamples", "0", "-k", "dL/dx-row and benign", "--gc-results", "out.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        f"*dL/dx [[]row, float16, regime benign[]]: {N_BENIGN} of {N_BENIGN} cases do not conform: {N_BENIGN} crashed*",
        "*killed by signal SIGSEGV*",
        "*row     float16*0/*case-quantities pass; * crashed*",
    ])
    import json

    doc = json.loads((pytester.path / "out.json").read_text())
    statuses = {(r["dtype"], r["status"]) for r in doc["records"]}
    assert ("float16", "crashed") in statuses and ("float32", "pass") in statuses


def test_pytest_session_times_out_a_hang_and_goes_on(pytester):
    result = _conformance(pytester, "--gc-backend", _target("HangsOnBfloat16"), "--gc-examples", "1", "--gc-timeout", "1",
                          "--gc-counterexamples", "0", "-k", "test_forward and L-row and benign")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*L [[]row, bfloat16, regime benign[]]: {N_BENIGN} of {N_BENIGN} cases do not conform: {N_BENIGN} timed_out*"])
