"""Findings, accuracy grades, page sizes and escaping of the reports, on the published results files.

The published results (reports/*/results.json.gz) are the material: the
composed-loss backends fail in three regimes, the stable ones pass, so the
findings, the grade tables and the size limit are checked on what a reader
of the published pages sees.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from conformance.report import build_all
from conformance.report.analysis import analyse
from conformance.report.build import write_backend_report
from conformance.report.findings import MAX_FINDINGS
from conformance.report.grades import FAR_ULPS, GradeCell, fmt_bin, tail_findings
from conformance.report.spec_source import resolve_spec
from conformance.report.stats import FAILING
from conformance.results.document import load_results

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = sorted((ROOT / "reports").glob("*/results.json.gz"))
#: The size limit of a page (HTML or markdown), in bytes.
MAX_PAGE = 400 * 1024

pytestmark = pytest.mark.skipif(not PUBLISHED, reason="the published results files (reports/) are part of the repository")


def _composed_torch() -> Path | None:
    """The published results of torch with the loss as written: ``torch-composed`` (``torch`` in reports published
    before the naming rule, when it was the composed loss: told apart by the description)."""
    for p in sorted(PUBLISHED, key=lambda p: p.parent.name != "torch-composed"):
        if p.parent.name in ("torch-composed", "torch"):
            with_desc = load_results(p)
            if "exactly as written" in str(with_desc.get("backend", {}).get("description", "")):
                return p
    return None


COMPOSED_TORCH = _composed_torch()
COMPOSED_NAME = COMPOSED_TORCH.parent.name if COMPOSED_TORCH else "torch-composed"


@pytest.fixture(scope="module")
def torch_doc() -> dict[str, Any]:
    if COMPOSED_TORCH is None:
        pytest.skip("no published results of torch's composed loss")
    return load_results(COMPOSED_TORCH)


def _analyse(doc: dict[str, Any], path: str = f"reports/{COMPOSED_NAME}/results.json.gz"):  # type: ignore[no-untyped-def]
    return analyse(doc, resolve_spec(doc.get("spec", {})), path)


def test_every_failure_belongs_to_exactly_one_finding(torch_doc: dict[str, Any]) -> None:
    a = _analyse(torch_doc)
    assert a.failures, "the composed loss fails at large logits: the material must hold failures"
    assert 1 <= len(a.findings) <= MAX_FINDINGS
    owners: dict[str, int] = defaultdict(int)
    for f in a.findings:
        for g in f.groups:
            owners[g.anchor] += 1
        assert f.bad == sum(g.bad for g in f.groups) and f.quantities
        assert all(g.regime == f.regime for g in f.groups)
    assert sorted(owners) == sorted(g.anchor for g in a.failures)
    assert set(owners.values()) == {1}
    # and every failing record is in a failure group
    failing = sum(r["status"] in FAILING for r in torch_doc["records"])
    assert sum(f.bad for f in a.findings) == failing


def test_findings_are_deterministic(torch_doc: dict[str, Any]) -> None:
    first = _analyse(torch_doc).findings
    shuffled = copy.copy(torch_doc)
    records = list(torch_doc["records"])
    random.Random(7).shuffle(records)
    shuffled["records"] = records
    assert _analyse(shuffled).findings == first
    assert _analyse(torch_doc).findings == first


def test_a_finding_names_its_cause_thresholds_and_reproducer(torch_doc: dict[str, Any]) -> None:
    a = _analyse(torch_doc)
    large = [f for f in a.findings if f.regime == "large_logits" and f.symptom == "fail (nonfinite)"]
    assert large
    f = large[0]
    assert "NaN" in f.sentence and "large_logits" in f.sentence and "from magnitude" in f.sentence
    for d, m in f.thresholds:
        assert f"from magnitude {m:g}" in f.sentence and d in f.sentence
    assert f.worst.rerun.startswith("gradconform rerun ") and f.worst.worst.case in f.worst.rerun


def _cells_from_records(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The grade of each (quantity, dtype, regime), computed here from the records, independently of grades.py."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        if r["status"] not in ("pass", "fail") or not r.get("components") or not r.get("ulp_hist"):
            continue
        c = out.setdefault((r["quantity"], r["dtype"], r["regime"]),
                           {"hist": [0] * len(r["ulp_hist"]), "max": -1.0, "excluded": 0, "checks": 0})
        if r.get("uninformative"):
            c["excluded"] += 1
            continue
        c["checks"] += 1
        c["hist"] = [x + y for x, y in zip(c["hist"], r["ulp_hist"])]
        m = float(r["max_ulp"]) if r.get("max_ulp") is not None else -1.0
        c["max"] = max(c["max"], math.inf if math.isnan(m) else m)
    return out


def test_grade_tables_match_the_records(torch_doc: dict[str, Any], tmp_path: Path) -> None:
    a = _analyse(torch_doc)
    expected = _cells_from_records(torch_doc["records"])
    assert {(c.quantity, c.dtype, c.regime) for c in a.grades} == set(expected)
    for c in a.grades:
        e = expected[(c.quantity, c.dtype, c.regime)]
        total = sum(e["hist"])
        assert (c.checks, c.excluded, c.components, c.correctly_rounded) == (e["checks"], e["excluded"], total,
                                                                              e["hist"][0] if total else 0)
        if e["checks"]:
            assert c.max_ulp == e["max"]
            running, p99 = 0, None
            for b, n in enumerate(e["hist"]):
                running += n
                if running >= 0.99 * total:
                    p99 = b
                    break
            assert c.p99_bin == p99
    # the page prints the same cells
    out = tmp_path / "torch"
    write_backend_report(torch_doc, COMPOSED_TORCH, out)
    html = (out / "index.html").read_text(encoding="utf-8")
    table = html[html.index('id="grades-table"'):]
    table = table[:table.index("</table>")]
    regimes = re.findall(r'<th data-regime="([^"]+)">', table)
    for row in re.findall(r"<tr data-quantity=.*?</tr>", table, re.S):
        q, d = re.match(r'<tr data-quantity="([^"]*)" data-dtype="([^"]*)">', row).groups()  # type: ignore[union-attr]
        cells = re.findall(r"<td(?: class=\"poor\")?>(.*?)</td>", row, re.S)[1:]  # after the dtype cell
        assert len(cells) == len(regimes)
        by = {(c.quantity, c.dtype, c.regime): c for c in a.grades}
        for reg, text in zip(regimes, cells):
            c = by.get((q.replace("&#39;", "'"), d, reg))
            if c is None:
                assert text == "—"
            else:
                assert f"<small>{fmt_bin(c.p99_bin)} · {fmt_bin(c.median_bin)} · " in text


def test_tail_findings_need_a_more_accurate_backend() -> None:
    def cell(m: float) -> GradeCell:
        return GradeCell("dL/da", "float64", "saturated_sigmoid", 1, 0, 10, m, 1, 0, 9)

    assert tail_findings([cell(FAR_ULPS * 4)], {"other": [cell(2.0)]})[0].better == "other"
    assert tail_findings([cell(FAR_ULPS * 4)], {"other": [cell(FAR_ULPS)]}) == ()  # nobody does better
    assert tail_findings([cell(3.0)], {"other": [cell(0.0)]}) == ()  # within a few ulps is no finding


@pytest.fixture(scope="module")
def published_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    for p in PUBLISHED:
        (root / p.parent.name).mkdir()
        (root / p.parent.name / p.name).write_bytes(p.read_bytes())
    build_all(root)
    return root


def test_pages_of_the_published_results_are_small(published_pages: Path) -> None:
    pages = sorted(published_pages.glob("*/index.html")) + sorted(published_pages.glob("*/REPORT.md"))
    assert len(pages) == 2 * len(PUBLISHED)
    for page in pages + [published_pages / "index.html", published_pages / "README.md"]:
        assert page.stat().st_size <= MAX_PAGE, (page, page.stat().st_size)


def test_scoreboard_has_grades_findings_and_links_that_work_on_a_code_host(published_pages: Path) -> None:
    md = (published_pages / "README.md").read_text(encoding="utf-8")
    assert "| grade |" in md and "correctly rounded" in md and "### Findings" in md
    report = (published_pages / COMPOSED_NAME / "REPORT.md").read_text(encoding="utf-8")
    assert "](../README.md)" in report and "../index.html" not in report
    html = (published_pages / "index.html").read_text(encoding="utf-8")
    assert html.count(f'data-backend="{COMPOSED_NAME}"') >= 3  # overview row, findings, breaks


def test_a_partial_run_says_so(torch_doc: dict[str, Any], tmp_path: Path) -> None:
    doc = copy.copy(torch_doc)
    doc["records"] = [r for r in torch_doc["records"] if r["dtype"] == "float64" and r["regime"] == "benign"]
    doc["tests"] = [t for t in torch_doc["tests"] if "float64-benign" in t["nodeid"]]
    a = write_backend_report(doc, tmp_path / "results.json.gz", tmp_path / "torch")
    assert "float32" in a.partial and "dtypes" in a.partial
    html = (tmp_path / "torch" / "index.html").read_text(encoding="utf-8")
    assert "partial run" in html
    assert "Partial run" in (tmp_path / "torch" / "REPORT.md").read_text(encoding="utf-8")
    assert _analyse(torch_doc).partial == ""


def test_names_and_messages_are_escaped_in_findings(torch_doc: dict[str, Any], tmp_path: Path) -> None:
    doc = copy.copy(torch_doc)
    evil = "L<img src=x onerror=alert(1)>|`x"
    doc["records"] = [dict(r, quantity=evil, message="<b>m</b>|x") if r["quantity"] == "L" else r
                      for r in torch_doc["records"]]
    write_backend_report(doc, tmp_path / "results.json.gz", tmp_path / "torch")
    html = (tmp_path / "torch" / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "<b>m</b>" not in html  # (the page's own <img>s are its figures)
    assert "L&lt;img src=x onerror=alert(1)&gt;|`x" in html
    failures = (tmp_path / "torch" / "failures.html").read_text(encoding="utf-8")
    assert "<img src=x" not in failures and "<b>m</b>" not in failures and "L&lt;img src=x" in failures
    md = (tmp_path / "torch" / "REPORT.md").read_text(encoding="utf-8")
    findings = md[md.index("## Findings"):md.index("## Failures")]
    prose = re.sub(r"(?<!\\)(`+) ?.+? ?\1", "", findings)  # inside code spans (not after \\), markup is text
    assert "<img" not in prose and "&lt;img" in prose
    assert "``L<img src=x onerror=alert(1)>|`x``" in findings  # a fence longer than the backtick inside


def test_the_scoreboard_has_a_line_per_finding_per_backend_linking_its_card(published_pages: Path) -> None:
    md = (published_pages / "README.md").read_text(encoding="utf-8")
    html = (published_pages / "index.html").read_text(encoding="utf-8")
    lines = re.findall(r"^- \[([^\]]+)\]\(([^)#]+)#(finding-[^)]+)\)", md, re.M)
    expected = []
    for p in PUBLISHED:
        a = _analyse(load_results(p), str(p))
        expected += [(a.backend, f.anchor) for f in a.findings]
        page_md = (published_pages / p.parent.name / "REPORT.md").read_text(encoding="utf-8")
        page_html = (published_pages / p.parent.name / "index.html").read_text(encoding="utf-8")
        for f in a.findings:  # every link lands on the card, on a code host and in the HTML
            assert f'<a id="{f.anchor}"></a>' in page_md and f'id="{f.anchor}"' in page_html
            assert f'href="{p.parent.name}/index.html#{f.anchor}"' in html
        if not a.findings and a.verdict == "pass":
            assert f"[{a.backend}]({p.parent.name}/REPORT.md)" in md[md.index("No finding:"):]
    assert sorted((b, anchor) for b, _, anchor in lines) == sorted(expected)
    assert len(re.findall(r'<li data-backend="[^"]+"><a href="[^"]+#finding-', html)) == len(expected)


def test_svg_compaction_unwraps_only_groups_without_attributes() -> None:
    from conformance.report.plots import _compact, _unwrap_bare_groups

    svg = '<svg xmlns="http://www.w3.org/2000/svg"><g><g id="a"/><g style="x: 1"><g><path d="M 0 0"/></g></g></g></svg>'
    assert _unwrap_bare_groups(svg) == ('<svg xmlns="http://www.w3.org/2000/svg"><g id="a"/><g style="x: 1">'
                                        '<path d="M 0 0"/></g></svg>')
    text = '<text style="font-size: 8.5px; fill: #374151" x="1" y="2" transform="rotate(-0 1 2)">a: b; c</text>'
    assert _compact(text) == '<text style="font-size:8.5px;fill:#374151" x="1" y="2">a: b; c</text>'  # text kept


def test_the_overall_grade_keeps_its_histogram_past_a_cell_with_nothing_graded() -> None:
    """A cell whose every record is uninformative has an empty histogram; it must not reset the sum (the pages
    and the scoreboard then printed "p99 — ulp")."""
    from conformance.report.grades import overall_grade

    def cell(hist: tuple[int, ...]) -> GradeCell:
        return GradeCell("q", "float16", "benign", 1, 0, sum(hist), 3.0 if hist else None, None, None,
                         hist[0] if hist else 0, hist)

    g = overall_grade([cell((5, 3, 2)), cell(()), cell((1, 1))])
    assert g.components == 12 and g.correctly_rounded == 6
    assert g.p99_bin == 2
