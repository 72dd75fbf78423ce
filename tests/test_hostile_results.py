"""Hostile results files and paths: a results file is input, and input may be tampered with (docs/results.md,
"Threat model: results files").

A tampered file must not make the report write outside ``--out``, inject markup into the markdown pages or a
command into a printed command line, flip a merged verdict, or take a command down with a traceback; the run
must not lose its results to an unwritable path, nor merge parts of another run. The material is one tiny real
run (one test, one case per cell), copied and edited by hand for each case.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.results.document import load_results, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
NODE = "conformance/test_conformance.py::test_identity[dL/dx-row-float64-benign]"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The results document of a real one-test run of the numpy backend (every check passes)."""
    out = tmp_path_factory.mktemp("tiny") / "results.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--gc-backend", "numpy",
           "--gc-results", str(out), "--gc-examples", "1", "--gc-counterexamples", "0", NODE]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load_results(out)


def _write(path: Path, doc: dict[str, Any]) -> Path:
    write_json_atomic(path, doc)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _report(out: Path, *files: Path) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "conformance.views.cli", "report", "--out", str(out),
                           *map(str, files)], cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------- 1. report folders stay inside --out

@pytest.mark.parametrize("name", ["../../x", "/tmp/gc-hostile-abs", "a/b", "", "ünïcødé/../..", ".."])
def test_a_backend_name_never_leads_the_report_outside_out(tiny, tmp_path, name):
    from conformance.report import build_reports  # lazy: jinja2 and matplotlib
    from conformance.results.naming import report_dir_name

    work = tmp_path / "work" / "deeper"
    out = work / "out"
    doc = copy.deepcopy(tiny)
    doc["backend"]["name"] = name
    src = _write(tmp_path / "in.json", doc)
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    built = build_reports(out, [src])
    written = _tree(tmp_path) - before
    assert written and all(w.startswith(str(Path("work", "deeper", "out"))) for w in written), sorted(written)
    assert not Path("/tmp/gc-hostile-abs").exists()
    folder = report_dir_name(name)
    assert [p.name for p in out.iterdir() if p.is_dir()] == [folder]
    assert (out / folder / "REPORT.md").is_file() and (out / folder / "index.html").is_file()
    assert built[0].backend == name  # the page still names the backend as the file does (escaped)


def test_a_report_folder_linked_outside_out_is_refused(tiny, tmp_path):
    from conformance.report import build_reports  # lazy: jinja2 and matplotlib

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "numpy").symlink_to(elsewhere)
    src = _write(tmp_path / "in.json", copy.deepcopy(tiny))
    with pytest.raises(ValueError, match="resolves outside"):
        build_reports(out, [src])
    assert list(elsewhere.iterdir()) == []


def test_cmd_report_prints_the_sanitised_folder(tiny, tmp_path):
    doc = copy.deepcopy(tiny)
    doc["backend"]["name"] = "../../x\x1b[31m"
    rc, stdout, stderr = _report(tmp_path / "out", _write(tmp_path / "in.json", doc))
    assert rc == 0, stderr
    assert "\x1b" not in stdout and "../" not in stdout
    assert f"{tmp_path / 'out' / '____x_31m'}/index.html" in stdout
