"""gradconform check / conformance.check: the seed's own question, and the usual mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import conformance
from conformance.checks.formula import CheckError, check

QUESTION = "((yhat - y) @ W2.T) * (h - h*h) @ W1"  # the formula as the question quotes it
ROW_RIGHT = "((yhat - y) @ W2.T) * (h - h*h) @ W1.T"
COLUMN_ANSWER = "W1 @ (Diag(h) - Diag(h) @ Diag(h)) @ W2 @ (yhat - y)"


def test_the_question_formula_is_refused_with_the_shape_trace_and_W1T() -> None:
    r = conformance.check(QUESTION, wrt="x", layout="row")
    assert r.verdict == "not_conformable" and not r.conformable and not r.correct
    assert "(n x hidden) @ W1 (d_in x hidden)" in r.shape_error
    assert ("(yhat - y) @ W2.T", "n x hidden") in r.trace
    assert ("W1", "d_in x hidden") in r.trace
    (fix,) = r.fixes
    assert fix.description == "W1.T in place of W1" and fix.verdict == "correct" and fix.cases >= 4
    # where the sizes let it through (d_in = hidden), the value is wrong too, with a small counterexample
    assert r.counterexample is not None and r.counterexample.family == "square"
    assert r.diagnosis["class"] == "transposed" and "W1 in place of W1.T" in r.diagnosis["message"]
    text = r.render()
    assert "did you mean W1.T in place of W1?" in text and "verdict: NOT CONFORMABLE" in text


def test_the_corrected_formula_is_confirmed() -> None:
    r = check(ROW_RIGHT, wrt="x", layout="row")
    assert r.verdict == "correct" and r.counterexample is None
    assert set(r.families) == {"seed", "batch", "distinct", "square", "batch_is_hidden", "batch_is_out"}
    assert r.cases == 3 * len(r.families)
    assert r.shape == "n x d_in"


def test_the_answers_column_form_is_confirmed_for_one_sample() -> None:
    r = check(COLUMN_ANSWER, wrt="x", layout="column")
    assert r.verdict == "correct"
    assert any("n = 1" in n for n in r.notes)
    assert set(r.families) == {"seed", "square"}


def test_the_answers_closing_line_is_not_conformable() -> None:
    r = check("((yhat - y) @ W2.T) * ((h - h*h) @ W1.T)", wrt="x", layout="row")
    assert r.verdict == "not_conformable" and r.fixes == ()
    assert "elementwise product" in r.shape_error


@pytest.mark.parametrize("expr,kwargs,verdict,kind", [
    ("y - yhat", dict(wrt="theta"), "wrong", "sign_flipped"),
    ("2 * (yhat - y)", dict(wrt="theta"), "wrong", "constant_factor"),
    ("mean(yhat - y, axis=0)", dict(wrt="b2"), "wrong", "constant_factor"),
    ("(yhat - y).T", dict(wrt="theta"), "wrong_shape", "wrong_layout"),
    ("Diag(yhat - yhat*yhat)", dict(of="yhat", wrt="theta"), "wrong", "missing_term"),
    ("Diag(yhat) - yhat.T @ yhat", dict(of="yhat", wrt="theta"), "correct", None),
    ("W1", dict(of="a", wrt="x"), "wrong_shape", "wrong_layout"),
    ("h @ (yhat - y).T", dict(wrt="W2", layout="column"), "correct", None),
])
def test_verdicts_and_diagnoses(expr: str, kwargs: dict, verdict: str, kind: str | None) -> None:
    r = check(expr, **kwargs)
    assert r.verdict == verdict, r.render()
    assert (r.diagnosis or {}).get("class") == kind, r.render()


def test_counterexample_is_small_and_names_the_component() -> None:
    r = check("yhat - 2 * y", wrt="theta")
    c = r.counterexample
    assert c is not None and c.family == "seed"
    assert c.candidate != c.expected and len(c.component) == 2
    assert set(c.inputs) == {"x", "W1", "b1", "W2", "b2", "y"}


@pytest.mark.parametrize("expr,kwargs,message", [
    ("(yhat - y) @ W3", dict(wrt="x"), "unknown name 'W3'"),
    ("x[0]", dict(wrt="x"), "indexing is not part of the math language"),
    ("x.shape", dict(wrt="x"), "attribute access is not allowed"),
    ("__import__('os')", dict(wrt="x"), "unknown function '__import__'"),
    ("yhat - y", dict(wrt="q"), "--wrt 'q' is neither an input nor a forward value"),
    ("yhat - y", dict(wrt="theta", layout="diagonal"), "unknown layout 'diagonal'"),
])
def test_questions_that_cannot_be_asked_are_clear_errors(expr: str, kwargs: dict, message: str) -> None:
    with pytest.raises(CheckError) as info:
        check(expr, **kwargs)
    assert message in str(info.value)


def test_cli_exit_statuses() -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "conformance.views.cli", "check", *args], capture_output=True, text=True)

    refused = run(QUESTION, "--wrt", "x", "--layout", "row")
    assert refused.returncode == 1 and "did you mean W1.T in place of W1?" in refused.stdout
    ok = run(ROW_RIGHT, "--wrt", "x", "--layout", "row", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "correct"
    bad = run("x ** y", "--wrt", "x")
    assert bad.returncode == 2 and "gradconform check:" in bad.stderr and "Traceback" not in bad.stderr
