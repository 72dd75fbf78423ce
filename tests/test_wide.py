"""The wide shape family: realistic widths, run only when asked, where a 16-bit accumulator is caught.

The default families have widths of at most 7; there a float16 sum accumulated in float16 (against the
spec's declared float32 accumulation) stays within what a correct evaluation may do on most cases. The
spec's ``wide`` family (n 16, d_in = hidden = 64, d_out 100) is used only by the ``wide`` regime, which a
run includes only with ``--gc-wide`` (``GRADCONFORM_WIDE=1``, ``gradconform run --wide``,
``run_suite(wide=True)``). These tests check that the option selects it (and nothing else does), that the
16-bit-accumulation fault is failed there while correct 16-bit evaluations pass, and that the default
run is the same as before (no wide test, the same cases for every other group).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conformance.cases.generate import generate_cases
from conformance.errors import SelectionError, SpecError
from conformance.formats import DTYPES, get_format
from conformance.run.run import Run, RunCache
from conformance.spec import load_spec_text
from conformance.statuses import PASS
from conformance.views.api import run_suite
from conformance.views.cli import build_parser
from conformance.views.suite import plan

from .accuracy_backends import CORRECT, target
from .test_bounds import POLICY, make_bounds

ROOT = Path(__file__).resolve().parents[1]
#: the cases and oracle values of the wide groups, shared by the tests of this module; the flint engine (a test
#: dependency) certifies a wide case in a fraction of a second where mpmath takes about 8 s
_CACHE = RunCache()


def _regimes_of(items) -> set[str]:
    return {i.param.rsplit("-", 1)[-1] for i in items if i.param}


def test_the_default_run_leaves_the_wide_family_out(seed_spec):
    assert seed_spec.families["wide"].wide and seed_spec.is_wide("wide")
    narrow = seed_spec.without_wide()
    assert "wide" not in narrow.regimes and "wide" not in narrow.families
    assert all(not narrow.is_wide(r) for r in narrow.regimes)
    # no regime but the one naming it uses the wide family
    assert [r for r in seed_spec.regimes if seed_spec.is_wide(r)] == ["wide"]
    assert "wide" not in _regimes_of(plan(narrow)) and "wide" in _regimes_of(plan(seed_spec))
    # the same file (sha256, text) and the very same cases for the groups that remain
    assert narrow.sha256 == seed_spec.sha256 and narrow.source == seed_spec.source
    a = generate_cases(narrow, "row", "float32", "benign", examples=1)
    b = generate_cases(seed_spec, "row", "float32", "benign", examples=1)
    assert [c.id for c in a] == [c.id for c in b] and {c.family for c in a} == set(narrow.families)


def test_wide_cases_have_the_realistic_widths(seed_spec):
    (case,) = generate_cases(seed_spec, "row", "float16", "wide", examples=1)
    assert dict(case.sizes) == {"n": 16, "d_in": 64, "hidden": 64, "d_out": 100}
    assert case.inputs["W1"].shape == (64, 64) and case.inputs["y"].shape == (16, 100)
    # soft labels that sum to exactly 1, weights of realistic scale (N(0, 1/64))
    assert (case.inputs["y"].astype("float64").sum(axis=1) == 1).all()
    assert 0.05 < float(abs(case.inputs["W1"].astype("float64")).mean()) < 0.2


def test_a_spec_of_wide_families_only_is_refused(seed_spec, seed_text):
    text = seed_text
    for fam in [f for f in seed_spec.families if f != "wide"]:
        text = text.replace(f"  {fam}:\n    sizes:", f"  {fam}:\n    wide: true\n    sizes:", 1)
    with pytest.raises(SpecError, match="every shape family is wide"):
        load_spec_text(text)


def _records(backend: str, dtypes: tuple[str, ...], spec, layouts: tuple[str, ...] = ("row",)) -> list:
    """The wide records of ``backend``, but those of the kinds a hand-written first-order implementation declines
    (forward mode, second order: "not supported, never asked")."""
    with Run(spec, backend, isolate=False, cache=_CACHE, cache_dir=None, oracle="flint") as run:
        return [r for lay in layouts for d in dtypes for r in run.group(lay, d, "wide").records
                if r.detail != "declined"]


def test_16bit_accumulation_is_failed_at_width_and_correct_16bit_code_passes(seed_spec):
    """float16 sums accumulated in float16 (bfloat16 in bfloat16): failed on the forward value a = x W1 + b1 at
    width 64 in both 16-bit dtypes; the same arithmetic with the declared float32 accumulator passes every
    quantity there, in the spec's order and with the bias first in the accumulator."""
    dtypes = ("float16", "bfloat16")
    fault = _records(target("16bit-accumulation"), dtypes, seed_spec)
    failed = {(r.dtype, r.quantity) for r in fault if r.status != PASS}
    assert {("float16", "a"), ("bfloat16", "a")} <= failed, failed
    assert all(r.detail == "out_of_bound" for r in fault if r.status != PASS)
    for name in ("spec-order", "bias-first"):
        good = _records(target(name), dtypes, seed_spec)
        assert good and all(r.status == PASS for r in good), [(r.dtype, r.quantity, r.max_ratio) for r in good
                                                              if r.status != PASS]
        # not vacuous: the correct code's worst ratio on a is well below the fault's
        worst = max(r.max_ratio for r in good if r.quantity == "a")
        assert worst < 0.5 < min(r.max_ratio for r in fault if r.quantity == "a")


def test_16bit_accumulation_passes_the_default_families_of_the_benign_regime(seed_spec):
    """What the wide family is for: at widths <= 7 the float16 accumulator's extra error stays within the bound
    (benign inputs, every default family), so only the wide family shows it in float16."""
    narrow = seed_spec.without_wide()
    with Run(narrow, target("16bit-accumulation"), isolate=False, examples=1, cache_dir=None) as run:
        records = [r for r in run.group("row", "float16", "benign").records if r.detail != "declined"]
    assert records and all(r.status == PASS for r in records), [(r.quantity, r.max_ratio) for r in records
                                                                if r.status != PASS]


def test_run_suite_selects_wide_tests_only_with_wide():
    with pytest.raises(SelectionError):
        run_suite("numpy", select="dL/db2-row-float16-wide", cache="off")
    result = run_suite("numpy", select="dL/db2-row-float16-wide", wide=True, cache="off", counterexamples=0,
                       oracle="flint")
    assert result.ok and result.counts() == {"passed": 1}
    assert result.document["settings"]["wide"] is True
    assert "wide" in result.document["settings"]["regimes"]


def _collect(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--collect-only", "-q", "-p",
                          "no:cacheprovider", "--gc-backend", "numpy", *args],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    assert out.returncode in (0, 5), out.stdout + out.stderr
    return out.stdout


def test_the_pytest_option_and_its_environment_variable(seed_spec):
    expected = sum(1 for i in plan(seed_spec) if i.param.endswith("-wide"))
    default = _collect(env={"GRADCONFORM_WIDE": ""})
    assert "-wide]" not in default
    for given in (_collect("--gc-wide"), _collect(env={"GRADCONFORM_WIDE": "1"})):
        wide = [line for line in given.splitlines() if line.endswith("-wide]")]
        assert len(wide) == expected >= 2 * 4 * 21, len(wide)  # layouts x dtypes x quantities with n > 1
        assert "test_identity[dL/dx-row-float16-wide]" in given


def test_the_command_line_option_reaches_the_run():
    args = build_parser().parse_args(["run", "--wide", "--backend", "numpy"])
    assert args.wide is True
    assert build_parser().parse_args(["run"]).wide is False


def _softmax_bounds(theta: np.ndarray, kappa: float) -> np.ndarray:
    bounds, exprs, _ = make_bounds([("yhat", "softmax(theta, axis=1)")], {"theta": theta}, "float16",
                                   policy=replace(POLICY, safety_factor=kappa))
    return bounds.bound(exprs["yhat"])


@pytest.mark.parametrize("k", [6, 17])
def test_the_softmax_floor_changes_no_bound_up_to_17_classes(k):
    """kappa covers the exp(log_softmax) form up to 17 classes by derivation: there the floor rho_lse / kappa
    never exceeds rho (the bound with kappa = 3 is the bound with no floor at all, kappa -> infinity)."""
    rng = np.random.default_rng(k)
    for scale in (1e-3, 1.0, 10.0):
        theta = (rng.normal(size=(8, k)) * scale).astype(np.float16).astype(np.float64)
        assert np.array_equal(_softmax_bounds(theta, 3.0), _softmax_bounds(theta, 1e300))


def test_the_softmax_floor_covers_exp_log_softmax_over_100_classes_in_float16():
    """At 100 classes the exp(log_softmax) form, evaluated in float16 with a float32 sum, may need 4.19 times
    the spec form's rounding (docs/tolerances.md, section 4), beyond kappa = 3: the floor raises the bound where
    log s is large (near-uniform logits), and the form's real error stays within kappa times it."""
    rng = np.random.default_rng(100)
    f16, f32 = np.float16, np.float32
    theta = (rng.normal(size=(64, 100)) * 0.5).astype(f16)
    z = (theta.astype(f32) - theta.astype(f32).max(axis=1, keepdims=True)).astype(f16)
    s = np.exp(z.astype(f32)).astype(f16).astype(f32).sum(axis=1, keepdims=True, dtype=f32)
    ls = (z.astype(f32) - np.log(s).astype(f16).astype(f32)).astype(f16)
    got = np.exp(ls.astype(f32)).astype(f16).astype(np.float64)
    t64 = theta.astype(np.float64)
    exact = np.exp(t64 - t64.max(axis=1, keepdims=True))
    exact /= exact.sum(axis=1, keepdims=True)
    floored, plain = _softmax_bounds(t64, 3.0), _softmax_bounds(t64, 1e300)
    assert np.all(floored >= plain) and np.mean(floored > plain) > 0.5  # the floor acts at this width
    eta = get_format("float16").eta
    assert np.all(np.abs(got - exact) <= 3.0 * floored + eta), np.max(np.abs(got - exact) / (3.0 * floored + eta))


def test_a_wide_failure_reruns_with_the_option():
    """The rerun command of a failing wide test carries --gc-wide (the test exists only with it), and running
    it under pytest fails that one test again (exit 1), where without the option pytest finds no such test."""
    fault = target("16bit-accumulation")
    result = run_suite(fault, select="test_forward[a-row-float16-wide]", wide=True, cache="off", counterexamples=0,
                       oracle="flint")
    (test,) = result.tests
    assert test.status == "failed"
    rerun = next(line for line in test.message.splitlines() if line.startswith("rerun: "))
    assert rerun.endswith("--gc-wide"), rerun
    node = "conformance/test_conformance.py::test_forward[a-row-float16-wide]"
    base = [sys.executable, "-m", "pytest", node, "-q", "-p", "no:cacheprovider", "--gc-backend", fault,
            "--gc-oracle", "flint", "--gc-oracle-cache", "off"]
    for extra, code in (["--gc-wide"], 1), ([], 4):
        out = subprocess.run(base + extra, capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "GRADCONFORM_WIDE": ""})
        assert out.returncode == code, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize("name", [n for n in CORRECT if n != "bias-first-fma"])  # exact FMA emulation: minutes here
def test_correct_implementations_pass_at_width(seed_spec, name):
    """Every correct implementation of tests/accuracy_backends.py (test_no_false_alarm's, on the default
    families) passes every quantity of the wide family in every layout and dtype."""
    records = _records(target(name), DTYPES, seed_spec, tuple(seed_spec.layouts))
    assert len(records) >= 168
    bad = [(r.quantity, r.layout, r.dtype, r.detail, r.max_ratio) for r in records if r.status != PASS]
    assert not bad, bad
