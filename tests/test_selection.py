"""A selection of tests that matches nothing is an error, never an empty success (a typo in a CI gate's ``-k``
would otherwise go green)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.errors import SelectionError
from conformance.views.api import run_suite
from conformance.views.cli import main as cli_main


def test_run_suite_refuses_a_selection_that_matches_nothing() -> None:
    with pytest.raises(SelectionError, match=r"matches none of the \d+ tests.*test_forward\["):
        run_suite("numpy", select="dL/dx and float64")  # a pytest -k expression, not a substring of an id


def test_gradconform_run_with_an_empty_selection_fails_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli_main(["run", "--backend", "numpy", "--out", str(out), "-k", "no-such-test"]) == 2
    assert "matches none of the" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*"))  # no results, no report
