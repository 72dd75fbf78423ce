"""Tests of the report layer (conformance/report): numbers, determinism, atomicity, formulas, a real browser.

The material is a real run: a few tests of ``pytest conformance --gc-backend
numpy-composed --gc-report DIR`` (the composed loss genuinely fails at large
logits), so the report is built by the same path users take. Figures on the
pages are checked against counts and maxima this file computes itself from
the records, not through the report's own aggregation code.

The browser test needs Chromium (Debian: ``apt-get install -y chromium``). If
it is absent the test fails, unless ``GRADCONFORM_SKIP_BROWSER=1`` says to skip
it on purpose; ``GRADCONFORM_CHROMIUM`` may name the binary.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.views.cli import main as cli_main
from conformance.report import build_all, build_backend_report
from conformance.report.numbers import fmt_rate, fmt_ratio, fmt_sci, fmt_ulp, num
from conformance.results.document import load_results, read_json, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
STATUSES = ("pass", "fail", "error", "not_supported", "crashed", "timed_out")
FAILING = ("fail", "error", "crashed", "timed_out")
NODES = [
    "conformance/test_conformance.py::test_forward[L-row-float32-large_logits]",
    "conformance/test_conformance.py::test_identity[dL/dx-row-float64-benign]",
    "conformance/test_conformance.py::test_identity[dL/db1-column-float16-unlikely_class]",
    "conformance/test_conformance.py::test_spec_identity[dL/dx-row]",
]


# ---------------------------------------------------------------------------- material

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with ``--gc-report``: results.json and the report under DIR/numpy-composed/."""
    out = tmp_path_factory.mktemp("reports")
    cmd = [sys.executable, "-m", "pytest", "--gc-backend", "numpy-composed", "--gc-report", str(out), "-p", "no:cacheprovider",
           "-q", "--gc-examples", "1", "--gc-counterexamples", "1", *NODES]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, f"expected one failing test (the composed loss at large logits):\n{proc.stdout}\n{proc.stderr}"
    assert (out / "numpy-composed" / "results.json").is_file(), proc.stdout
    return out / "numpy-composed"


@pytest.fixture(scope="module")
def doc(run_dir: Path) -> dict[str, Any]:
    return load_results(run_dir / "results.json")


# ---------------------------------------------------------------------------- a small DOM

class Node:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []  # type: ignore[var-annotated]

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self):  # type: ignore[no-untyped-def]
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **data: str) -> list["Node"]:
        out = []
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            if cls and cls not in n.attrs.get("class", "").split():
                continue
            if any(n.attrs.get(f"data-{k.replace('_', '-')}") != v for k, v in data.items()):
                continue
            out.append(n)
        return out

    def by_id(self, ident: str) -> "Node":
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"expected one element with id {ident!r}, found {len(found)}"
        return found[0]

    def one(self, tag: str | None = None, cls: str | None = None, **data: str) -> "Node":
        found = self.find_all(tag, cls, **data)
        assert len(found) == 1, f"expected one <{tag} class={cls} {data}>, found {len(found)}"
        return found[0]


VOID = {"br", "meta", "link", "img", "hr", "input", "col", "area", "base", "source", "wbr"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse_html(text: str) -> Node:
    b = TreeBuilder()
    b.feed(text)
    b.close()
    return b.root


# ---------------------------------------------------------------------------- expected figures, computed here

def _max(values: list[Any]) -> float | None:
    out = None
    for v in values:
        f = num(v)
        if f is None:
            continue
        f = math.inf if math.isnan(f) else f
        out = f if out is None or f > out else out
    return out


def expected_cells(doc: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in doc["records"]:
        cells[(r["layout"], r["dtype"], r["quantity"])].append(r)
    out = {}
    for key, recs in cells.items():
        c = Counter(r["status"] for r in recs)
        out[key] = {"counts": {s: c.get(s, 0) for s in STATUSES}, "total": len(recs),
                    "ulp": _max([r.get("max_ulp") for r in recs]), "rel": _max([r.get("max_rel_err") for r in recs]),
                    "ratio": _max([r.get("max_ratio") for r in recs])}
    return out


def _group_key(row: Node) -> tuple[str, str, str, str]:
    """(quantity, layout, dtype, regime) of a row of the failures table: its first four cells."""
    q = row.one("th").text().strip()
    layout, dtype, regime = (c.text().strip() for c in row.find_all("td")[:3])
    return q, layout, dtype, regime


def _span(cell: Node, cls: str) -> str:
    return cell.one("span", cls).text().strip()


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def check_summary_matrix(page: Node, doc: dict[str, Any]) -> int:
    """Every cell of the summary matrix equals what the records say; returns how many cells were checked."""
    expected = expected_cells(doc)
    checked = 0
    for (layout, dtype, quantity), e in expected.items():
        cell = page.one("td", quantity=quantity, layout=layout, dtype=dtype)
        assert _count(_span(cell, "n-pass")) == e["counts"]["pass"], (layout, dtype, quantity)
        assert _count(_span(cell, "n-total")) == e["total"]
        assert _span(cell, "ulp") == fmt_ulp(e["ulp"])
        assert _span(cell, "rel") == fmt_sci(e["rel"])
        assert _span(cell, "ratio") == fmt_ratio(e["ratio"])
        shown = {s.attrs["data-status"]: _count(s.text().split()[0]) for s in cell.find_all("span", "st")}
        assert shown == {s: n for s, n in e["counts"].items() if s != "pass" and n}, (layout, dtype, quantity)
        verdict = next(c for c in cell.attrs["class"].split() if c.startswith("v-"))
        fails = sum(e["counts"][s] for s in FAILING)
        want = "v-fail" if fails else ("v-not_supported" if e["counts"]["not_supported"] == e["total"] else
                                      "v-partial" if e["counts"]["not_supported"] else "v-pass")
        assert verdict == want, (layout, dtype, quantity, verdict)
        checked += 1
    return checked


def check_key_figures(page: Node, doc: dict[str, Any]) -> None:
    c = Counter(r["status"] for r in doc["records"])
    chips = page.find_all("li")
    got = {li.attrs["data-key"]: _count(li.one("b").text()) for li in chips if li.attrs.get("data-key") in STATUSES + ("total",)}
    assert got["total"] == len(doc["records"])
    for s in STATUSES:
        assert got[s] == c.get(s, 0), s


# ---------------------------------------------------------------------------- the report of a real run

def test_pytest_report_option_writes_the_report(run_dir: Path) -> None:
    assert (run_dir / "index.html").stat().st_size > 10_000
    md = (run_dir / "REPORT.md").read_text(encoding="utf-8")
    assert md.startswith("# numpy-composed")
    figures = sorted((run_dir / "figures").glob("*.svg"))
    assert figures, "the markdown report references its figures as SVG files"
    for f in figures:
        assert f"figures/{f.name}" in md
        ET.fromstring(f.read_text(encoding="utf-8"))  # well-formed SVG
    assert not list(run_dir.glob(".report-*")), "no temporary directory is left behind"
    for page in ("index.html", "failures.html"):
        html = (run_dir / page).read_text(encoding="utf-8")
        # self-contained: nothing is loaded from anywhere (no script, stylesheet, font or frame) but the figures
        # of the report's own folder
        for pattern in (r"<script", r"<link\b", r"<iframe", r"@import", r"@font-face",
                        r"url\((?!#)", r'href="(?!#|(?:\.\./)?[\w.-]+\.(?:md|html)(?:#[\w-]*)?")'):
            assert not re.search(pattern, html), (page, pattern)
        sources = re.findall(r'\bsrc="([^"]*)"', html)
        assert len(sources) == len(re.findall(r"<img\b", html))
        for src in sources:
            assert re.fullmatch(r"figures/[\w.-]+\.svg", src) and (run_dir / src).is_file(), (page, src)


def test_numbers_on_the_page_match_the_results(run_dir: Path, doc: dict[str, Any]) -> None:
    page = parse_html((run_dir / "index.html").read_text(encoding="utf-8"))
    assert check_summary_matrix(page, doc) == len({(r["layout"], r["dtype"], r["quantity"]) for r in doc["records"]})
    check_key_figures(page, doc)
    # failures: one row per (quantity, layout, dtype, regime) with a failing record, with its counts
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in doc["records"]:
        groups[(r["quantity"], r["layout"], r["dtype"], r["regime"])].append(r)
    bad = {k: v for k, v in groups.items() if any(r["status"] in FAILING for r in v)}
    assert bad, "the composed loss fails at large logits in float32: the material must contain failures"
    assert page.by_id("failures-page").attrs["href"] == "failures.html"  # the table has a page of its own
    table = parse_html((run_dir / "failures.html").read_text(encoding="utf-8"))
    rows = table.by_id("failures-table").find_all("tr", "group")
    assert len(rows) == len(bad)
    for row in rows:
        key = _group_key(row)
        recs = bad[key]
        assert _count(_span(row, "n-bad")) == sum(r["status"] in FAILING for r in recs)
        assert _count(_span(row, "n-total")) == len(recs)
    # the minimal counterexample and the rerun commands are on the page
    html = (run_dir / "index.html").read_text(encoding="utf-8")
    for ce in doc["counterexamples"]:
        assert f"gradconform rerun" in html and ce["case"]["id"] in html
    failures = (run_dir / "failures.html").read_text(encoding="utf-8")  # the failure details: their own page
    assert "pytest &#39;conformance/test_conformance.py::test_forward[L-row-float32-large_logits]&#39;" in failures


def test_markdown_matches_the_results(run_dir: Path, doc: dict[str, Any]) -> None:
    md = (run_dir / "REPORT.md").read_text(encoding="utf-8")
    expected = expected_cells(doc)
    for layout in ("row", "column"):
        section = md.split(f"### {layout} layout", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        lines = section.splitlines()
        header = next(l for l in lines if l.startswith("| quantity | shape |"))
        dtypes = [c.strip() for c in header.strip("|").split("|")][2:]
        seen = 0
        for line in lines:
            m = re.match(r"^\| `([^`]+)` \| [^|]* \|(.*)\|$", line)
            if not m:
                continue
            cells = [c.strip() for c in m.group(2).split(" | ")]
            assert len(cells) == len(dtypes)
            for d, cell in zip(dtypes, cells):
                e = expected.get((layout, d, m.group(1)))
                if e is None:
                    assert cell == "—", (layout, d, m.group(1), cell)
                    continue
                seen += 1
                assert f"**{e['counts']['pass']:,}/{e['total']:,}**" in cell, (layout, d, m.group(1), cell)
                assert f"err/allowed {fmt_ratio(e['ratio'])}" in cell
        assert seen == sum(1 for k in expected if k[0] == layout)
    c = Counter(r["status"] for r in doc["records"])
    assert f"| {len(doc['records']):,} | {c['pass']:,} | {c.get('fail', 0):,} |" in md


def test_formulas_are_typeset_from_the_spec(run_dir: Path, doc: dict[str, Any]) -> None:
    html = (run_dir / "index.html").read_text(encoding="utf-8")
    maths = re.findall(r"<math\b.*?</math>", html, flags=re.S)
    n_identities = sum(len(lay["identities"]) for lay in _spec_yaml(doc)["layouts"].values())
    n_defs = sum(len(lay["forward"]) for lay in _spec_yaml(doc)["layouts"].values())
    assert len(maths) == n_identities + n_defs
    for m in maths:
        ET.fromstring(m)  # well-formed MathML
    md = (run_dir / "REPORT.md").read_text(encoding="utf-8")
    assert r"$`\frac{\partial L}{\partial x} = \left(\left(\left(\hat{y} - y\right)\,W_{2}^{\top}\right) \odot " in md
    assert "embedded in the results file" in html


def _spec_yaml(doc: dict[str, Any]) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(doc["spec"]["text"])


# ---------------------------------------------------------------------------- determinism and atomicity

def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "results.json"}


def test_same_results_give_byte_identical_reports(run_dir: Path, tmp_path: Path) -> None:
    """Two builds in fresh processes with different hash seeds (set iteration order differs) give the same bytes."""
    results = tmp_path / "numpy-composed" / "results.json"
    results.parent.mkdir()
    shutil.copy(run_dir / "results.json", results)
    snaps = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        code = "import sys; from conformance.report import build_backend_report; build_backend_report(sys.argv[1], sys.argv[2])"
        subprocess.run([sys.executable, "-c", code, str(results), str(results.parent)], check=True, env=env, cwd=tmp_path,
                       timeout=300)
        snaps.append(_snapshot(results.parent))
    assert snaps[0].keys() == snaps[1].keys()
    for name in snaps[0]:
        assert snaps[0][name] == snaps[1][name], f"{name} differs between two builds of the same results file"
    assert b"<dc:date>" not in b"".join(v for k, v in snaps[0].items() if k.endswith(".svg"))


def test_a_failed_rebuild_leaves_the_old_report_untouched(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "numpy-composed"
    shutil.copytree(run_dir, out)
    before = _snapshot(out)
    import conformance.report.build as build

    real = build.render

    def broken(template: str, **ctx: Any) -> str:
        if template.endswith(".md.j2"):
            raise RuntimeError("disk full (simulated)")
        return real(template, **ctx)

    monkeypatch.setattr(build, "render", broken)
    with pytest.raises(RuntimeError):
        build_backend_report(out / "results.json", out)
    assert _snapshot(out) == before
    assert not list(out.glob(".report-*"))


def test_rebuild_replaces_figures_and_removes_stale_ones(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "numpy-composed"
    shutil.copytree(run_dir, out)
    stale = out / "figures" / "ulp-row.0123456789.svg"
    stale.write_text("<svg/>")
    mine = out / "figures" / "notes.txt"  # not ours: kept
    mine.write_text("keep")
    build_backend_report(out / "results.json", out)
    assert not stale.exists() and mine.exists()
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    for f in (out / "figures").glob("*.svg"):
        assert f"figures/{f.name}" in md


# ---------------------------------------------------------------------------- statuses, spec provenance

def _with_statuses(doc: dict[str, Any]) -> dict[str, Any]:
    """The run's document with some records turned into every other status (as a crashing, hanging or declining
    backend would have them), to check that each is counted under its own name."""
    d = copy.deepcopy(doc)
    keep = ("quantity", "kind", "layout", "dtype", "regime", "family", "magnitude", "case")
    targets = [r for r in d["records"] if r["layout"] == "row" and r["dtype"] == "float64" and r["quantity"] == "dL/dx"]
    for r, status in zip(targets, ("error", "crashed", "timed_out", "not_supported", "not_supported")):
        for k in list(r):
            if k not in keep:
                del r[k]
        r.update(status=status, detail={"error": "exception"}.get(status, status), message=f"simulated {status}")
    only_ns = [r for r in d["records"] if r["layout"] == "column" and r["dtype"] == "float16" and r["quantity"] == "h"]
    for r in only_ns:
        for k in list(r):
            if k not in keep:
                del r[k]
        r.update(status="not_supported", detail="declined", message="simulated: declined")
    return d


def test_statuses_are_counted_distinctly(doc: dict[str, Any], tmp_path: Path) -> None:
    d = _with_statuses(doc)
    path = tmp_path / "numpy-composed" / "results.json"
    write_json_atomic(path, d)
    build_backend_report(path, path.parent)
    page = parse_html((path.parent / "index.html").read_text(encoding="utf-8"))
    check_key_figures(page, d)
    assert check_summary_matrix(page, d) > 0
    cell = page.one("td", quantity="h", layout="column", dtype="float16")
    assert "v-not_supported" in cell.attrs["class"] and _count(_span(cell, "n-pass")) == 0
    cell = page.one("td", quantity="dL/dx", layout="row", dtype="float64")
    assert {s.attrs["data-status"] for s in cell.find_all("span", "st")} >= {"error", "crashed", "timed_out", "not_supported"}


def test_report_says_when_the_spec_is_missing_or_different(doc: dict[str, Any], tmp_path: Path) -> None:
    for case, mutate in (("absent", lambda s: s.update(path=str(tmp_path / "gone.yaml"), name="gone", text=None)),
                         ("different", lambda s: s.update(text=s["text"] + "\n# edited\n"))):
        d = copy.deepcopy(doc)
        mutate(d["spec"])
        if d["spec"]["text"] is None:
            del d["spec"]["text"]
        if case == "different":
            d["spec"]["path"] = str(tmp_path / "nowhere.yaml")
            d["spec"]["name"] = "not_shipped"
        path = tmp_path / case / "results.json"
        write_json_atomic(path, d)
        build_backend_report(path, path.parent)
        html = (path.parent / "index.html").read_text(encoding="utf-8")
        page = parse_html(html)
        assert "Spec not verified" in html, case
        assert "<math" not in html, case
        assert check_summary_matrix(page, d) > 0  # the numbers are still all there


# ---------------------------------------------------------------------------- gradconform report, scoreboard

def test_gradconform_report_merges_shards_and_builds_the_scoreboard(doc: dict[str, Any], tmp_path: Path) -> None:
    first, second = copy.deepcopy(doc), copy.deepcopy(doc)
    half = len(doc["records"]) // 2
    first["records"], second["records"] = doc["records"][:half], doc["records"][half:]
    other = copy.deepcopy(doc)
    other["backend"]["name"] = other["backend"]["requested"] = "numpy-composed-copy"
    files = []
    for i, dd in enumerate((first, second, other)):
        files.append(tmp_path / f"part{i}.json")
        write_json_atomic(files[-1], dd)
    out = tmp_path / "reports"
    assert cli_main(["report", "--out", str(out), *map(str, files)]) == 0
    merged = load_results(out / "numpy-composed" / "results.json.gz")
    assert len(merged["records"]) == len(doc["records"])
    assert (out / "numpy-composed-copy" / "index.html").is_file()
    page = parse_html((out / "index.html").read_text(encoding="utf-8"))
    c = Counter(r["status"] for r in doc["records"])
    for backend in ("numpy-composed", "numpy-composed-copy"):
        row = page.by_id("overview-table").one("tr", backend=backend)
        assert _count(row.one("td", None, key="total").text()) == len(doc["records"])
        for s in STATUSES:
            assert _count(row.one("td", None, key=s).text()) == c.get(s, 0)
        assert row.one("b", "pass-rate").text() == fmt_rate(c["pass"], len(doc["records"]))
    for (layout, dtype), recs in _by(doc["records"], "layout", "dtype").items():
        cell = page.by_id("ld-table").one("td", backend="numpy-composed", layout=layout, dtype=dtype)
        assert _count(_span(cell, "n-pass")) == sum(r["status"] == "pass" for r in recs)
        assert _count(_span(cell, "n-total")) == len(recs)
        assert _span(cell, "ratio") == fmt_ratio(_max([r.get("max_ratio") for r in recs]))
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "[numpy-composed](numpy-composed/REPORT.md)" in readme
    # a rebuild with no arguments reads what is there, and gives the same pages
    before = _snapshot(out)
    assert cli_main(["report", "--out", str(out)]) == 0
    assert _snapshot(out) == before


def _by(records: list[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    out: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def test_gradconform_report_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", "--out", str(tmp_path / "empty")]) == 2
    assert "no results under" in capsys.readouterr().err
    assert cli_main(["report", "--out", str(tmp_path), str(tmp_path / "missing.json")]) == 2
    assert "no such results file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    assert cli_main(["report", "--out", str(tmp_path), str(bad)]) == 2
    assert "not a gradconform results file" in capsys.readouterr().err


def test_compressed_results_are_deterministic_and_readable(doc: dict[str, Any], tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "results.json.gz", tmp_path / "b" / "results.json.gz"
    write_json_atomic(a, doc)
    write_json_atomic(b, doc)
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes())[:1] == b"{"
    assert read_json(a) == json.loads(json.dumps(doc))
    assert load_results(a)["records"] == doc["records"]


def test_build_all_finds_the_newest_results_of_each_backend(run_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    (root / "numpy-composed").mkdir(parents=True)
    shutil.copy(run_dir / "results.json", root / "numpy-composed" / "results.json")
    built = build_all(root)
    assert [a.backend for a in built] == ["numpy-composed"]
    assert (root / "index.html").is_file() and (root / "README.md").is_file()
    assert 'href="../index.html"' in (root / "numpy-composed" / "index.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- formulas and numbers, unit level

def test_mathml_and_latex_of_the_seed_identities() -> None:
    from conformance.spec.parse import parse_expr
    from conformance.report.latex import identity_latex, to_latex
    from conformance.report.mathml import identity_mathml, to_mathml

    names = {n: (1, 1) for n in ("yhat", "y", "W1", "W2", "h", "H", "x", "theta", "a")}
    e = parse_expr("W1 @ (Diag(h) - Diag(h) @ Diag(h)) @ W2 @ (yhat - y)", names=names)
    assert to_latex(e) == (r"W_{1}\,\left(\operatorname{Diag}\left(h\right) - \operatorname{Diag}\left(h\right)\,"
                           r"\operatorname{Diag}\left(h\right)\right)\,W_{2}\,\left(\hat{y} - y\right)")
    m = identity_mathml("L", "x", parse_expr("((yhat - y) @ W2.T) * (h - h*h) @ W1.T", names=names))
    root = ET.fromstring(m)
    assert root.tag == "math"
    assert m.count("<msubsup><mi>W</mi><mn>2</mn><mi mathvariant=\"normal\">T</mi></msubsup>") == 1
    assert "⊙" in m and "<mfrac><mrow><mo>∂</mo><mi>L</mi></mrow>" in m
    # subtraction keeps its grouping on the right; division is a fraction
    assert to_latex(parse_expr("a - (h - y)", names=names)) == r"a - \left(h - y\right)"
    assert to_latex(parse_expr("(a + h) / 2", names=names)) == r"\frac{a + h}{2}"
    assert to_latex(parse_expr("-(a + h)", names=names)) == r"- \left(a + h\right)"
    assert to_latex(parse_expr("sum(yhat - y, axis=0)", names=names)) == r"\sum_{\text{axis}=0}\left(\hat{y} - y\right)"
    ET.fromstring(to_mathml(parse_expr("softmax(theta, axis=1) ** 2", names=names)))
    assert identity_latex("yhat", "theta", parse_expr("Diag(yhat) - yhat.T @ yhat", names=names)).startswith(
        r"\frac{\partial \hat{y}}{\partial \theta} = ")


def test_number_formats() -> None:
    assert fmt_ratio(None) == "—" and fmt_ratio(math.inf) == "∞" and fmt_ratio(float("nan")) == "∞"
    assert fmt_ratio(0.0) == "0" and fmt_ratio(0.4123) == "0.412" and fmt_ratio(2.5e-5) == "2.5e-5"
    assert fmt_ulp(3.0) == "3" and fmt_ulp(2.0 ** 50) == "2^50.0"
    assert fmt_sci(1.0) == "1" and fmt_sci(2.1e-16) == "2.1e-16"
    assert fmt_rate(9999, 10000) == "99.9%" and fmt_rate(1, 100000) == "0.1%" and fmt_rate(5, 5) == "100%"
    assert num("inf") == math.inf and num("x") is None and num(True) is None


def test_ulp_classes_cover_the_histogram_buckets() -> None:
    from conformance.judge.compare import ULP_BUCKETS, ulp_bucket_labels
    from conformance.report.plots import ULP_CLASSES

    covered = [b for _, lo, hi, _ in ULP_CLASSES for b in range(lo, hi + 1)]
    assert covered == list(range(ULP_BUCKETS))
    labels = ulp_bucket_labels()
    assert labels[0] == "0" and labels[1] == "1" and labels[2] == "2-3" and labels[-1] == "nan/inf"
    # the edges of the classes: 4-15 ends with bucket 4, 16-255 with 8, 256-65535 with 16, >= 2^16 starts at 17
    assert labels[4] == "8-15" and labels[8] == "128-255" and labels[16] == "2^15+" and labels[17] == "2^16+"


# ---------------------------------------------------------------------------- a real browser

def _chromium() -> str | None:
    explicit = os.environ.get("GRADCONFORM_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser(args: list[str], url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    exe = _chromium()
    if exe is None:
        if os.environ.get("GRADCONFORM_SKIP_BROWSER") == "1":
            pytest.skip("GRADCONFORM_SKIP_BROWSER=1: the browser check is skipped on purpose")
        pytest.fail("Chromium is needed to check that the report renders: install it (Debian: apt-get install -y "
                    "chromium), point GRADCONFORM_CHROMIUM at a binary, or set GRADCONFORM_SKIP_BROWSER=1 to skip this "
                    "test deliberately", pytrace=False)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp / 'profile'}", "--hide-scrollbars",
           *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(run_dir: Path, doc: dict[str, Any], tmp_path: Path) -> None:
    url = (run_dir / "index.html").resolve().as_uri()
    proc = _browser(["--dump-dom"], url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = parse_html(proc.stdout)
    # the rendered DOM holds the figures of the results file
    check_key_figures(dom, doc)
    assert check_summary_matrix(dom, doc) > 0
    assert len(dom.find_all("img", "plot")) >= 2  # the regime plots, figures of the report's folder
    assert len(dom.find_all("math")) > 10
    proc = _browser(["--dump-dom"], (run_dir / "failures.html").resolve().as_uri(), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [d.find_all("summary")[0].text() for d in parse_html(proc.stdout).find_all("details", "failure")]
    assert any("L · row · float32 · regime large_logits" in t for t in summaries), summaries
    shot = tmp_path / "report.png"
    proc = _browser(["--window-size=1280,2200", f"--screenshot={shot}"], url, tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2200)
        colours = im.convert("RGB").resize((64, 110)).getcolors(64 * 110)
        assert colours is not None and len(colours) > 20, "the screenshot is (nearly) blank"


def test_the_number_checks_can_fail(run_dir: Path, doc: dict[str, Any]) -> None:
    """The page checks above compare against the records: a record that says otherwise must be caught."""
    page = parse_html((run_dir / "index.html").read_text(encoding="utf-8"))
    d = copy.deepcopy(doc)
    r = next(r for r in d["records"] if r["status"] == "pass" and num(r.get("max_ratio")))
    r["max_ratio"] = 0.987654  # larger than any ratio of a passing record in the run, and not what the page shows
    with pytest.raises(AssertionError):
        check_summary_matrix(page, d)
    d = copy.deepcopy(doc)
    d["records"][0]["status"] = "crashed"
    with pytest.raises(AssertionError):
        check_key_figures(page, d)


def test_reports_import_no_backend_and_no_oracle(run_dir: Path, tmp_path: Path) -> None:
    """The report layer reads results files only: building a report imports no backend, worker or oracle."""
    out = tmp_path / "numpy-composed"
    code = ("import sys; from conformance.report import build_backend_report; build_backend_report(sys.argv[1], sys.argv[2]); "
            "print(' '.join(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir / "results.json"), str(out)], capture_output=True,
                          text=True, check=True, timeout=300)
    modules = set(proc.stdout.split())
    forbidden = {"conformance.oracle.evaluate", "conformance.execution.worker", "conformance.run.run", "conformance.execution.registry", "conformance.judge.bounds",
                 "impls", "torch", "jax", "mpmath"}
    assert not modules & forbidden, modules & forbidden


def test_rerun_uses_the_embedded_spec_when_the_file_is_elsewhere(doc: dict[str, Any], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The rerun command printed on a report works on a machine where the spec file's recorded path does not exist."""
    d = copy.deepcopy(doc)
    d["spec"]["path"] = str(tmp_path / "elsewhere" / "two_layer_sigmoid_xent.yaml")
    path = tmp_path / "results.json.gz"
    write_json_atomic(path, d)
    failing = next(r for r in d["records"] if r["status"] == "fail" and r["quantity"] == "L")
    rc = cli_main(["rerun", str(path), failing["case"], "--quantity", "L", "--no-isolate"])
    out = capsys.readouterr()
    assert rc == 1, out.err  # 1: the case still fails (2 would be a usage error: spec or results unreadable)
    assert "fail (nonfinite)" in out.out


def test_an_unavailable_backend_is_reported_as_such(doc: dict[str, Any], tmp_path: Path) -> None:
    """A backend that could not be loaded has a report that says so, and is never shown as conforming."""
    d = copy.deepcopy(doc)
    d["backend"].update(name="absent", requested="absent", available=False, reason="No module named 'absent'",
                        versions={})
    d["records"], d["cases"], d["counterexamples"] = [], [], []
    path = tmp_path / "reports" / "absent" / "results.json"
    write_json_atomic(path, d)
    build_all(tmp_path / "reports")
    page = parse_html((path.parent / "index.html").read_text(encoding="utf-8"))
    assert page.by_id("verdict").attrs["data-verdict"] == "unavailable"
    assert "No module named 'absent'" in page.by_id("verdict").text()
    check_key_figures(page, d)
    board = parse_html((tmp_path / "reports" / "index.html").read_text(encoding="utf-8"))
    row = board.by_id("overview-table").one("tr", backend="absent")
    assert "unavailable" in row.text() and "conforms" not in row.text()


def test_failure_details_are_capped_but_every_group_is_listed(run_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import conformance.report.build as build

    monkeypatch.setattr(build, "MAX_FAILURE_DETAILS", 1)
    out = tmp_path / "numpy-composed"
    shutil.copytree(run_dir, out)
    build_backend_report(out / "results.json", out)
    page = parse_html((out / "failures.html").read_text(encoding="utf-8"))
    rows = page.by_id("failures-table").find_all("tr", "group")
    assert len(rows) >= 2 and len(page.find_all("details", "failure")) == 1
    assert "The details of the first 1 of" in page.by_id("details-capped").text()


# ---------------------------------------------------------------------------- the printed commands

def _rebuild(folder: Path, args: list[str]) -> None:
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert cli_main(args) == 0
    finally:
        os.chdir(cwd)


def test_rebuild_command_works_in_a_copied_and_renamed_folder(run_dir: Path, tmp_path: Path) -> None:
    """The page's rebuild command, run in the report's own folder after the reports were copied elsewhere under
    another name, rebuilds that folder in place: no report nested in it, the scoreboard beside it, and the same
    bytes whatever the working directory of the build."""
    import shlex

    copy = tmp_path / "elsewhere" / "renamed reports"
    shutil.copytree(run_dir.parent, copy)
    backend_dir = copy / run_dir.name
    cmd = re.search(r"```sh\n(gradconform report [^\n]*)\n```", (backend_dir / "REPORT.md").read_text()).group(1)
    args = shlex.split(cmd)[1:]
    assert args[:3] == ["report", "--out", ".."], cmd
    dirs_before = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_dir())
    _rebuild(backend_dir, args)
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_dir()) == dirs_before  # nothing nested
    assert (copy / "index.html").is_file() and (copy / "README.md").is_file()
    first = {n: (backend_dir / n).read_bytes() for n in ("REPORT.md", "index.html")}
    first["scoreboard"] = (copy / "README.md").read_bytes()
    _rebuild(tmp_path, ["report", "--out", str(copy)])  # from another directory, by absolute path
    assert {n: (backend_dir / n).read_bytes() for n in ("REPORT.md", "index.html")} == \
        {n: first[n] for n in ("REPORT.md", "index.html")}
    assert (copy / "README.md").read_bytes() == first["scoreboard"]
    readme = first["scoreboard"].decode()
    assert "gradconform run --out 'renamed reports'" in readme, "the folder's name, shell-quoted"
    assert "`gradconform report --out .`" in readme
