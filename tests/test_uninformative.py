"""Uninformative checks (issue #16 F): components whose bound is at least their exact value are counted per
quantity x dtype x regime in the results summary, shown in a table on the backend page and noted on the scoreboard.

Why it matters is tested first: on such a component a wrong answer (half the exact value) passes, while the
same answer fails where the bound is informative. The counts are then checked against a recount of the
records made here, not through the summary's own code.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.judge.compare import PASS, FAIL, compare
from conformance.oracle.certify import Exact
from conformance.report import build_all
from conformance.report.analysis import analyse
from conformance.report.build import resolve_spec
from conformance.results.document import load_results, merge, validate, write_json_atomic
from conformance.run.run import Run
from conformance.spec.model import Spec


def _exact(values: list[float]) -> Exact:
    hi = np.array([values], dtype=np.float64)
    return Exact(hi=hi, lo=np.zeros_like(hi))


def test_a_wrong_answer_passes_where_the_bound_covers_the_exact_value_and_is_counted() -> None:
    exact = _exact([1.0, 1e-3])
    bound = np.array([[1e-3, 2e-3]])  # informative for the first component, not for the second
    halved = np.array([[0.5, 0.5e-3]])
    c = compare(halved[:, 1:], _exact([1e-3]), bound[:, 1:], dtype="float64", expected_shape=(1, 1),
                safety_factor=1.0)
    assert c.status == PASS and c.uninformative == 1  # half the exact value passes: the check says nothing
    c = compare(halved[:, :1], _exact([1.0]), bound[:, :1], dtype="float64", expected_shape=(1, 1),
                safety_factor=1.0)
    assert c.status == FAIL and c.uninformative == 0  # the same mistake, caught where the bound is informative
    both = compare(np.array([[1.0, 1e-3]]), exact, bound, dtype="float64", expected_shape=(1, 2), safety_factor=1.0)
    assert both.uninformative == 1


@pytest.fixture(scope="module")
def document(seed_spec: Spec) -> dict[str, Any]:
    """A small real run of the numpy backend: row layout, benign regime, float64 and bfloat16."""
    with Run(seed_spec, "numpy", isolate=False, examples=1) as run:
        for dtype in ("float64", "bfloat16"):
            run.group("row", dtype, "benign")
        return run.document()


def _recount(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    out: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r["status"] in ("pass", "fail") and r["components"]:
            out[(r["quantity"], r["dtype"], r["regime"])][0] += r["uninformative"]
            out[(r["quantity"], r["dtype"], r["regime"])][1] += r["components"]
    return {k: (u, n) for k, (u, n) in out.items()}


def _cells(doc: dict[str, Any]) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {(c["quantity"], c["dtype"], c["regime"]): (c["uninformative"], c["components"])
            for c in doc["summary"]["uninformative"]}


def test_the_summary_counts_per_quantity_dtype_and_regime(document: dict[str, Any]) -> None:
    validate(document)
    assert _cells(document) == _recount(document["records"])
    by_dtype = {r["dtype"]: (r["uninformative"], r["components"]) for r in document["summary"]["uninformative_by_dtype"]}
    assert by_dtype["bfloat16"][0] > by_dtype["float64"][0]  # the 16-bit bound covers small values; float64's does not
    assert by_dtype["bfloat16"][1] == sum(n for (q, d, g), (u, n) in _recount(document["records"]).items()
                                          if d == "bfloat16")


def test_merging_recomputes_the_summary_from_every_part(document: dict[str, Any]) -> None:
    a, b = copy.deepcopy(document), copy.deepcopy(document)
    half = len(document["records"]) // 2
    a["records"], b["records"] = document["records"][:half], document["records"][half:]
    a["summary"]["uninformative"] = b["summary"]["uninformative"] = []  # stale parts must not survive a merge
    merged = merge([a, b])
    assert _cells(merged) == _recount(document["records"])


def test_backend_page_table_and_scoreboard_note(document: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "numpy" / "results.json"
    write_json_atomic(path, document)
    build_all(tmp_path)
    shown = {k: v for k, v in _recount(document["records"]).items() if v[0]}
    assert shown, "the bfloat16 run has uninformative components to show"
    md = (tmp_path / "numpy" / "REPORT.md").read_text(encoding="utf-8")
    md = md.split("### Uninformative checks", 1)[1].split("</details>", 1)[0]
    header = re.search(r"^\| quantity \| dtype \|(.*)$", md, flags=re.M)
    regimes = [h.strip() for h in header.group(1).split("|") if h.strip()]
    found = {}
    for q, d, rest in re.findall(r"^\| `([^`]+)` \| (\w+) \|(.*)$", md, flags=re.M):
        for g, cell in zip(regimes, rest.split("|")):
            if cell.strip():
                u, n = cell.strip().replace(",", "").split("/")
                found[(q, d, g)] = (int(u), int(n))
    assert found == shown
    html = (tmp_path / "numpy" / "index.html").read_text(encoding="utf-8")
    assert 'id="uninformative-table"' in html
    u = sum(v[0] for k, v in shown.items() if k[1] == "bfloat16")
    n = sum(v[1] for k, v in _recount(document["records"]).items() if k[1] == "bfloat16")
    board = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert f"bfloat16 {100 * u / n:.0f}%" in board and "uninformative checks" in board
    assert "float64 " not in board.split("uninformative checks", 1)[1].split("|", 1)[0]  # 16-bit dtypes only


def test_a_results_file_without_a_summary_reads_the_same(document: dict[str, Any], tmp_path: Path) -> None:
    old = copy.deepcopy(document)
    del old["summary"]
    for name, doc in (("new", document), ("old", old)):
        write_json_atomic(tmp_path / f"{name}.json", doc)
    new_a = analyse(load_results(tmp_path / "new.json"), resolve_spec(document["spec"]), tmp_path / "new.json")
    old_a = analyse(load_results(tmp_path / "old.json"), resolve_spec(old["spec"]), tmp_path / "old.json")
    assert new_a.uninformative_cells == old_a.uninformative_cells and new_a.uninformative == old_a.uninformative
    assert new_a.uninformative_cells
