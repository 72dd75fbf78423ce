"""Failure diagnosis: one deliberately broken backend per class, each diagnosed with that class; a correct
backend never gets a diagnosis (it never fails); the verdict carries the diagnosis into results and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.results.document import validate
from conformance.run.run import Run
from conformance.spec import load_spec

SPEC = load_spec()

# (backend, layout, regime, quantities whose failures are checked (None: every failing record), class)
CASES = [
    ("Transposed", "row", "benign", ["dL/dW2"], "transposed"),
    ("WrongLayout", "row", "benign", ["dL/dx"], "wrong_layout"),
    ("WrongConvention", "row", "benign", ["da/dx"], "wrong_layout"),
    ("MeanBias", "row", "benign", ["dL/db1"], "constant_factor"),
    ("SignFlipped", "column", "benign", ["dL/dtheta"], "sign_flipped"),
    ("DiagonalSoftmax", "row", "benign", ["dyhat/dtheta"], "missing_term"),
    ("Float32Inside", "row", "benign", None, "lower_precision"),
    ("Float32Inside", "column", "saturated_sigmoid", None, "lower_precision"),
    ("ClampedLogits", "row", "large_logits", ["dL/dtheta", "dL/dW2", "dL/db2", "yhat"], "tail_failure"),
    ("NaiveSoftmax", "row", "large_logits", None, "nonfinite"),
]


@pytest.mark.parametrize("backend,layout,regime,quantities,kind", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_broken_backend_is_diagnosed_with_its_class(backend: str, layout: str, regime: str,
                                                    quantities: list[str] | None, kind: str) -> None:
    with Run(SPEC, f"tests.faulty_backends:{backend}", isolate=False, examples=2) as run:
        group = run.group(layout, "float64", regime)
        doc = run.document()
    failing = [r for r in group.records if r.status == "fail"]
    assert failing, "the broken backend must fail somewhere"
    checked = [r for r in failing if quantities is None or r.quantity in quantities]
    assert checked
    wrong = [(r.quantity, r.case, r.diagnosis) for r in checked if (r.diagnosis or {}).get("class") != kind]
    assert not wrong, wrong[:3]
    if quantities is not None and backend != "ClampedLogits":
        # the mistake is confined to the quantities it breaks: nothing else fails
        assert {r.quantity for r in failing} <= set(quantities)
    validate(doc)  # the diagnosis is part of the results schema
    assert all(r["diagnosis"]["class"] == kind for r in doc["records"]
               if r["status"] == "fail" and (quantities is None or r["quantity"] in quantities))


def test_tail_pattern_names_the_magnitudes() -> None:
    with Run(SPEC, "tests.faulty_backends:NaiveSoftmax", isolate=False, examples=2) as run:
        group = run.group("row", "float64", "large_logits")
    failing = [r for r in group.records if r.status == "fail" and r.quantity == "dL/dtheta"]
    assert {r.magnitude for r in failing} == {1000.0, 10000.0}
    assert all("from magnitude 1000" in r.diagnosis["pattern"] for r in failing)


@pytest.mark.parametrize("layout,regime", [("row", "benign"), ("column", "large_logits")])
def test_a_correct_backend_gets_no_diagnosis(layout: str, regime: str) -> None:
    with Run(SPEC, "numpy", isolate=False, examples=2) as run:
        group = run.group(layout, "float64", regime)
    assert all(r.status == "pass" and r.diagnosis is None for r in group.records)


def test_pytest_failure_message_shows_the_diagnosis() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--gc-backend",
                          "tests.faulty_backends:SignFlipped", "-q", "-p", "no:cacheprovider", "--gc-counterexamples", "0",
                          "-k", "test_identity and dL/dtheta-column-float64-benign"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 1, out.stdout + out.stderr
    assert "diagnosis: sign_flipped: minus the exact value" in out.stdout
