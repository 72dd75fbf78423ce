"""The standalone reproducer of a finding card: it runs with the backend's library alone and prints the deviating
value the run recorded, next to the exact value.

The material is the published results (reports/*/results.json.gz): the composed losses fail at large logits, so
their findings have reproducers; each generated script is run in a subprocess and its printed value compared with
the record it was generated from (the oracle's exact value and the backend's recorded result, never a constant).
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.report.analysis import analyse
from conformance.report.build import write_backend_report
from conformance.report.numbers import num
from conformance.report.reproducer import finding_reproducer, library_of
from conformance.report.spec_source import resolve_spec
from conformance.results.document import load_results

ROOT = Path(__file__).resolve().parent.parent


def _published(lib: str) -> Path | None:
    """The published results of ``lib``'s composed loss (``torch-composed``; plain ``torch`` in reports published
    before the naming rule, told apart by the description)."""
    for name in (f"{lib}-composed", lib):
        path = ROOT / "reports" / name / "results.json.gz"
        if path.is_file():
            doc = load_results(path)
            if library_of(doc["backend"]) == (lib, False):
                return path
    return None


def _findings_with_records(path: Path) -> tuple[dict[str, Any], Any]:
    doc = load_results(path)
    return doc, analyse(doc, resolve_spec(doc["spec"]), path)


def _record_of(doc: dict[str, Any], text: str) -> dict[str, Any]:
    """The record a script was generated from, by the case id and quantity its first line names."""
    m = re.match(r"# \S+: (\S+?)\[[\d, ]+\], (\w+) layout, (\w+), regime \w+(?: \(magnitude [^)]*\))?, case (\w+)", text)
    assert m, text.splitlines()[0]
    q, layout, dtype, case = m.groups()
    pools = [doc["records"]] + [ce["records"] for ce in doc.get("counterexamples", [])]
    for pool in pools:
        for r in pool:
            if (r["case"], r["quantity"], r["layout"], r["dtype"]) == (case, q, layout, dtype):
                return r
    raise AssertionError(f"no record of {q} on case {case}")


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _run(text: str, tmp_path: Path) -> str:
    script = tmp_path / "repro.py"
    script.write_text(text, encoding="utf-8")
    # from an empty directory, so that nothing of this checkout is importable but installed libraries
    proc = subprocess.run([sys.executable, "-W", "ignore", str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("lib, limit", [("numpy", None), ("torch", 2), ("jax", 1)])
def test_the_reproducer_of_a_finding_prints_the_recorded_deviating_value(lib: str, limit: int | None,
                                                                         tmp_path: Path) -> None:
    pytest.importorskip(lib, reason=f"{lib} is needed to run its reproducer (CI installs it)")
    path = _published(lib)
    if path is None:
        pytest.skip(f"no published results of {lib}'s composed loss")
    doc, a = _findings_with_records(path)
    assert a.findings, "the composed loss fails at large logits: the material must hold findings"
    for fd in a.findings[:limit]:
        rp = a.reproducers[fd.anchor]
        assert rp.language == "python", rp.text
        imports = set(re.findall(r"^import (\S+)", rp.text, re.M)) | set(re.findall(r"^from (\S+)", rp.text, re.M))
        assert imports <= {"numpy", "ml_dtypes", "torch", "jax", "jax.numpy"} and lib in {i.split(".")[0] for i in imports}
        record = _record_of(doc, rp.text)
        assert record["case"] in rp.rerun and rp.what in ("minimal counterexample", "smallest failing case")
        assert (rp.what == "minimal counterexample") == (fd.counterexample is not None)
        out = _run(rp.text, tmp_path)
        m = re.search(r"computed: (\S+) exact: (\S+)", out)
        assert m, out
        got, exact = float(m.group(1)), float(m.group(2))
        assert _same(got, num(record["worst_got"])), (out, record["worst_got"])  # the deviating value, reproduced
        assert _same(exact, num(record["worst_exact"]))
        assert record["status"] == "fail"


def test_a_backend_that_is_not_built_in_gets_the_rerun_command(tmp_path: Path) -> None:
    path = _published("numpy")
    if path is None:
        pytest.skip("no published results of numpy-composed")
    doc = copy.deepcopy(load_results(path))
    doc["backend"].update(source="module:attr", target="mypkg.mod:Mine", name="Mine", requested="mypkg.mod:Mine")
    a = analyse(doc, resolve_spec(doc["spec"]), path)
    for fd in a.findings:
        rp = a.reproducers[fd.anchor]
        assert rp.language == "shell" and rp.text.startswith("gradconform rerun ") and "--quantity" in rp.text
    # without the spec the script cannot be written either
    b = finding_reproducer(load_results(path), None, a.findings[0], "r.json")
    assert b.language == "shell"


def test_what_the_results_file_says_stays_in_comments(tmp_path: Path) -> None:
    path = _published("numpy")
    if path is None:
        pytest.skip("no published results of numpy-composed")
    doc = copy.deepcopy(load_results(path))
    doc["backend"]["description"] = "composed\nimport os; os.system('echo owned')  ```\n"
    a = analyse(doc, resolve_spec(doc["spec"]), path)
    text = a.reproducers[a.findings[0].anchor].text
    assert not any(line.startswith("import os") for line in text.splitlines())
    assert "```" not in text
    compile(text, "repro.py", "exec")
    # the pages carry it: a python block in the markdown, a pre in the HTML
    write_backend_report(doc, path, tmp_path / "out")
    md = (tmp_path / "out" / "REPORT.md").read_text(encoding="utf-8")
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "```python\n# numpy-composed: " in md
    assert html.count('class="cmd reproducer" data-language="python"') == len(a.findings)


@pytest.mark.parametrize("lib, target", [("torch", "impls.torch:TorchBackend"), ("jax", "impls.jax:JaxBackend")])
def test_a_higher_order_reproducer_computes_that_kind_as_the_backend_does(lib: str, target: str,
                                                                           tmp_path: Path) -> None:
    """A jvp, vjp, hessian or hvp finding gets the library's transform of that kind, not a Jacobian (which
    printed another number, or failed on the index of a Hessian): the printed component is the backend's own."""
    pytest.importorskip(lib, reason=f"{lib} is needed to run its reproducer (CI installs it)")
    import importlib

    import numpy as np

    from conformance.backend import Model, Quantity, Request
    from conformance.cases.generate import generate_cases
    from conformance.report.reproducer import reproducer
    from conformance.spec import load_spec
    from conformance.spec.shapes import concrete

    spec = load_spec(None)
    lay = spec.layouts["row"]
    case = generate_cases(spec, "row", "float64", "benign", examples=1)[0]
    idents = {i.kind: i for i in lay.identities if i.kind in ("jvp", "vjp", "hessian", "hvp")}
    assert set(idents) == {"jvp", "vjp", "hessian", "hvp"}
    module, attr = target.split(":")
    backend = getattr(importlib.import_module(module), attr)()
    model = Model(spec.name, lay.name, tuple(spec.inputs), tuple((d.name, d.expr) for d in lay.forward), lay.loss)
    quantities = tuple(Quantity(i.id, i.kind, i.of, i.wrt, i.convention, i.expr, concrete(i.shape, case.sizes),
                                i.direction) for i in idents.values())
    answers = backend.evaluate(Request(model, "float64", dict(case.inputs), quantities, "cpu"))
    scripts, expected = [], []
    for ident in idents.values():
        got = np.asarray(answers[ident.id])
        index = [got.shape[0] - 1, got.shape[1] - 1]  # the last component: out of a Jacobian's range for a Hessian
        record = {"quantity": ident.id, "worst_index": index, "worst_exact": 0.0,
                  "worst_got": float(got[tuple(index)]), "status": "fail"}
        rp = reproducer({"backend": {"source": "built-in", "name": lib, "description": ""}}, spec, case.to_json(),
                        record, "r.json")
        assert rp.language == "python", rp.text
        scripts.append(rp.text)
        expected.append((ident.id, float(got[tuple(index)])))
    out = _run("\n".join(scripts), tmp_path)
    printed = re.findall(r"^(\S+?)\[[\d, ]+\] computed: (\S+)", out, re.M)
    assert [q for q, _ in printed] == [q for q, _ in expected], out
    for (q, value), (_, want) in zip(printed, expected):
        assert float(value) == pytest.approx(want, rel=1e-12, abs=1e-300), (q, out)
