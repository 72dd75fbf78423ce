"""Sign-bias findings (issue #16 G): a backend whose stores truncate toward zero passes every per-component check,
and the grade tier finds it from the direction of its errors over many components; correct backends get no finding.

The truncating backend computes the 16-bit dtypes in float32 and stores its results rounding toward zero
(tests/accuracy_backends.py, "truncating-stores"); "wide-compute" does the same rounding to nearest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from conformance.backend import FIRST_ORDER_KINDS
from conformance.report import build_all
from conformance.results.document import validate, write_json_atomic
from conformance.results.summary import BIAS_P, BIAS_REGIME, chernoff_p
from conformance.run.run import Run, RunCache
from conformance.spec.model import Spec

from .accuracy_backends import target

_CACHE = RunCache()
DTYPES = ("float16", "bfloat16")
#: saturated_sigmoid: a correct float32 evaluation of h - h*h errs toward zero there on most components, which must
#: not make a finding (the bias is judged in benign, conformance.results.summary.BIAS_REGIME)
REGIMES = ("benign", "large_logits", "saturated_sigmoid")


def _exact_two_sided(k: int, n: int) -> float:
    tail = sum(math.comb(n, i) for i in range(max(k, n - k), n + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (5, 10), (70, 100), (90, 100), (260, 400)])
def test_the_p_value_bound_is_never_below_the_exact_binomial_p_value(k: int, n: int) -> None:
    assert chernoff_p(k, n) >= _exact_two_sided(k, n) * (1 - 1e-12)


def _document(spec: Spec, backend: str, dtypes: tuple[str, ...] = DTYPES) -> dict[str, Any]:
    with Run(spec, backend, isolate=False, examples=1, cache=_CACHE) as run:
        for dtype in dtypes:
            for regime in REGIMES:
                run.group("row", dtype, regime)
        return run.document()


@pytest.fixture(scope="module")
def truncating(seed_spec: Spec) -> dict[str, Any]:
    return _document(seed_spec, target("truncating-stores"))


@pytest.fixture(scope="module")
def nearest(seed_spec: Spec) -> dict[str, Any]:
    return _document(seed_spec, target("wide-compute"))


def _bias(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    validate(doc)
    return {b["dtype"]: b for b in doc["summary"]["sign_bias"]}


def test_truncating_stores_pass_every_check_and_get_the_finding(truncating: dict[str, Any],
                                                                 nearest: dict[str, Any]) -> None:
    # no verdict can see it (among the kinds the hand-written network computes; the others are declined)
    asked = [r for r in truncating["records"] if r["kind"] in FIRST_ORDER_KINDS or r.get("detail") != "declined"]
    assert {r["status"] for r in asked} == {"pass"}
    bias, ref = _bias(truncating), _bias(nearest)
    for dtype in DTYPES:
        judged = [r for r in truncating["records"] if r["dtype"] == dtype and r["regime"] == BIAS_REGIME]
        toward = sum(r["toward_zero"] for r in judged)
        away = sum(r["away_from_zero"] for r in judged)
        assert bias[dtype]["finding"], bias[dtype]
        assert (bias[dtype]["toward_zero"], bias[dtype]["away_from_zero"]) == (toward, away)
        assert toward > 0.9 * (toward + away) and bias[dtype]["p_value_bound"] <= BIAS_P
        # far fewer correctly rounded than the same evaluation rounding to nearest
        share = bias[dtype]["correctly_rounded"] / bias[dtype]["components"]
        assert share < 0.85 * ref[dtype]["correctly_rounded"] / ref[dtype]["components"]


@pytest.mark.parametrize("backend", ["numpy", "spec-order", "wide-compute"])
def test_correct_backends_get_no_sign_bias_finding(seed_spec: Spec, backend: str) -> None:
    name = backend if backend == "numpy" else target(backend)
    dtypes = ("float64", "float32", *DTYPES) if backend == "numpy" else DTYPES
    bias = _bias(_document(seed_spec, name, dtypes))
    assert set(bias) == set(dtypes)
    assert not [b for b in bias.values() if b["finding"]], bias


def test_the_finding_is_on_the_backend_page_and_the_scoreboard_apart_from_the_verdict(
        truncating: dict[str, Any], nearest: dict[str, Any], tmp_path: Path) -> None:
    for doc in (truncating, nearest):
        write_json_atomic(tmp_path / doc["backend"]["name"] / "results.json", doc)
    build_all(tmp_path)
    bad, good = truncating["backend"]["name"], nearest["backend"]["name"]
    md = (tmp_path / bad / "REPORT.md").read_text(encoding="utf-8")
    section = md.split("## Sign bias", 1)[1].split("\n## ", 1)[0]
    for dtype in DTYPES:
        b = _bias(truncating)[dtype]
        share = 100 * b["toward_zero"] / (b["toward_zero"] + b["away_from_zero"])
        assert f"{dtype}: {share:.1f}% of" in section
    assert good in section  # the reference: the other backend's share correctly rounded
    assert "## Sign bias" not in (tmp_path / good / "REPORT.md").read_text(encoding="utf-8")
    assert 'id="sign-bias"' in (tmp_path / bad / "index.html").read_text(encoding="utf-8")
    board = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "### Sign bias" in board and f"[{bad}]" in board.split("### Sign bias", 1)[1].split("###", 1)[0]
    assert "conforms" in board  # the verdict stands: every check passed
