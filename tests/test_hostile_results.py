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
import os
import re
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


# ---------------------------------------------------------------------------- 2. markdown escaped, commands quoted

EVIL = "<script>alert(1)</script>"


def _evil(doc: dict[str, Any]) -> dict[str, Any]:
    """Markup in every text field a report prints from a results file."""
    doc = copy.deepcopy(doc)
    doc["backend"].update(name=f"evil{EVIL}", description=f"desc{EVIL} | [x](javascript:alert(2))",
                          versions={"lib": f"1{EVIL}"}, device=f"cpu{EVIL}")
    doc["spec"]["title"] = f"title{EVIL}"
    doc["environment"]["cpu"] = f"cpu{EVIL}\n# heading"
    rec = doc["records"][0]
    rec.update(status="error", detail="exception", message=f"boom{EVIL}\n```\n{EVIL}")
    for r in doc["records"]:
        r["regime"] = f"benign{EVIL}"
    for c in doc["cases"]:
        c["regime"] = f"benign{EVIL}"
    return doc


def _outside_code(markdown: str) -> str:
    """The markdown without its fenced blocks and code spans (shown literally, whatever they hold)."""
    markdown = re.sub(r"^```[^\n]*\n.*?^```$", "", markdown, flags=re.S | re.M)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def test_markdown_pages_escape_what_a_results_file_says(tiny, tmp_path):
    from conformance.report import build_reports  # lazy: jinja2 and matplotlib

    out = tmp_path / "out dir with spaces"
    build_reports(out, [_write(tmp_path / "in.json", _evil(tiny))])
    folder = next(p for p in out.iterdir() if p.is_dir())
    pages = {"REPORT.md": (folder / "REPORT.md").read_text(), "README.md": (out / "README.md").read_text(),
             "index.html": (folder / "index.html").read_text(), "scoreboard": (out / "index.html").read_text()}
    for name, text in pages.items():
        assert "<script" not in (_outside_code(text) if name.endswith(".md") else text).lower(), name
        if name.endswith(".md"):  # no link: the brackets are escaped
            assert not re.search(r"(?<!\\)\]\(javascript:", text), name
    report = pages["REPORT.md"]
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in report  # shown as text, not dropped
    assert "boom&lt;script&gt;" in report
    assert "\n```\n&lt;script" not in report and "\n# heading" not in report


def test_printed_commands_are_shell_quoted(tiny, tmp_path):
    import shlex

    from conformance.report import build_reports  # lazy: jinja2 and matplotlib

    out = tmp_path / "out dir with spaces"
    doc = copy.deepcopy(tiny)
    doc["backend"]["name"] = "x --out reports; rm -rf ~"
    doc["backend"]["requested"] = "x --out reports; rm -rf ~"
    build_reports(out, [_write(tmp_path / "in $(touch pwned).json", doc)])
    folder = next(p for p in out.iterdir() if p.is_dir())
    report, scoreboard = (folder / "REPORT.md").read_text(), (out / "README.md").read_text()
    lines = [ln for ln in report.splitlines() if ln.startswith("gradconform ")]
    assert len(lines) == 2, lines
    rebuild, rerun_all = (shlex.split(ln) for ln in lines)
    assert rebuild == ["gradconform", "report", "--out", "..", "results.json.gz"]  # run in the report's folder
    assert rerun_all[:4] == ["gradconform", "run", "--backend", "x --out reports; rm -rf ~"]
    assert rerun_all[4:6] == ["--out", "out dir with spaces"]
    for cmd, where in (("run", "out dir with spaces"), ("report", ".")):
        code = re.search(rf"`(gradconform {cmd} --out [^`]*)`", scoreboard)
        assert code is not None and shlex.split(code.group(1))[3] == where, scoreboard[-400:]


# ---------------------------------------------------------------------------- 3. merge refuses what it cannot unite

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance.views.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_two_conflicting_records_for_one_check_are_refused_naming_both(tiny, tmp_path):
    from conformance.results.document import ResultsFileError, merge

    other = copy.deepcopy(tiny)
    r = other["records"][0]
    r.update(status="fail", detail="out_of_bound")
    for order in ((tiny, other), (other, tiny)):  # whichever comes first: no verdict by merge order
        with pytest.raises(ResultsFileError, match=r"conflicting results for the check of .* on case "):
            merge(order, ["a.json", "b.json"])
    a, b = _write(tmp_path / "a.json", tiny), _write(tmp_path / "b.json", other)
    proc = _cli("merge", str(tmp_path / "m.json"), str(a), str(b))
    assert proc.returncode == 2 and str(a) in proc.stderr and str(b) in proc.stderr, proc.stderr
    assert "'pass' vs 'fail'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_equal_records_in_two_files_merge(tiny):
    from conformance.results.document import merge

    merged = merge([tiny, copy.deepcopy(tiny)])
    assert len(merged["records"]) == len(tiny["records"]) and len(merged["cases"]) == len(tiny["cases"])


@pytest.mark.parametrize("what, path, value", [
    ("examples", ("settings", "examples"), 7), ("safety factor", ("settings", "safety_factor"), 99.0),
    ("oracle engine", ("oracle", "engine"), "another-engine"), ("harness version", ("harness", "version"), "9.9.9"),
    ("seed", ("settings", "seed"), 1), ("spec hash", ("spec", "sha256"), "0" * 64),
    ("wide family", ("settings", "wide"), True)])
def test_files_of_different_runs_are_refused_naming_the_difference(tiny, what, path, value):
    from conformance.results.document import ResultsFileError, merge

    other = copy.deepcopy(tiny)
    other[path[0]][path[1]] = value
    with pytest.raises(ResultsFileError, match=rf"x\.json and y\.json differ in {what} \("):
        merge([tiny, other], ["x.json", "y.json"])


def test_the_merge_docstring_names_the_schema_where_it_is():
    import conformance.results.document as document

    assert "conformance/results/schema.json" in document.__doc__
    assert (REPO / "conformance" / "results" / "schema.json").is_file()


# ---------------------------------------------------------------------------- 6. hostile files: messages, no tracebacks

def _hostile_files(tiny: dict[str, Any], tmp: Path) -> dict[str, Path]:
    import gzip

    text = json.dumps(tiny)
    files = {}
    blob = gzip.compress(text.encode())
    (files.setdefault("truncated.gz", tmp / "truncated.json.gz")).write_bytes(blob[: len(blob) // 2])
    (files.setdefault("deep", tmp / "deep.json")).write_text("[" * 200_000 + "]" * 200_000)
    nested = copy.deepcopy(tiny)
    nested["environment"]["deep"] = json.loads("[" * 100 + "]" * 100)  # shallow enough for json, too deep for us
    files["nested"] = _write(tmp / "nested.json", nested)
    huge = copy.deepcopy(tiny)
    huge["records"][0]["max_ulp"] = 10 ** 400
    (files.setdefault("10**400", tmp / "huge.json")).write_text(json.dumps(huge))
    nan = copy.deepcopy(tiny)
    nan["records"][0]["max_ratio"] = float("nan")
    (files.setdefault("NaN", tmp / "nan.json")).write_text(json.dumps(nan))  # json.dumps writes a bare NaN
    (files.setdefault("1e999", tmp / "overflow.json")).write_text(text.replace('"seconds": ', '"seconds": 1e999, "x": ', 1))
    (files.setdefault("not utf-8", tmp / "latin.json")).write_bytes(b'{"schema": "\xff"}')
    invalid = copy.deepcopy(tiny)
    del invalid["records"][0]["status"]
    files["schema"] = _write(tmp / "invalid.json", invalid)
    regimes = copy.deepcopy(tiny)
    regimes["settings"]["regimes"] = 5  # the schema types settings too (a report iterates them)
    files["settings"] = _write(tmp / "settings.json", regimes)
    return files


@pytest.mark.parametrize("command", ["report", "merge", "rerun", "baseline"])
def test_hostile_results_files_give_a_message_not_a_traceback(tiny, tmp_path, command):
    files = _hostile_files(tiny, tmp_path)
    good = _write(tmp_path / "good.json", tiny)
    for label, path in files.items():
        args = {"report": ["report", "--out", str(tmp_path / "out"), str(path)],
                "merge": ["merge", str(tmp_path / "m.json"), str(path), str(good)],
                "rerun": ["rerun", str(path), tiny["cases"][0]["id"]],
                "baseline": ["baseline", str(path)]}[command]
        proc = _cli(*args)
        assert proc.returncode == 2, (label, proc.stdout, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("gradconform: "), (label, proc.stderr[-2000:])
        assert str(path) in proc.stderr, (label, proc.stderr)
        assert len(proc.stderr) < 1000, (label, len(proc.stderr))


def test_bad_hex_in_rerun_and_a_bad_shard_in_merge_give_messages(tiny, tmp_path):
    bad = copy.deepcopy(tiny)
    case = bad["cases"][0]
    first = next(iter(case["inputs"].values()))
    first["hex"][0] = "0xnot-hex"
    proc = _cli("rerun", str(_write(tmp_path / "hex.json", bad)), case["id"])
    assert proc.returncode == 2 and "is malformed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    shard = copy.deepcopy(tiny)
    shard["settings"]["shard"] = "one of three"
    proc = _cli("merge", str(tmp_path / "m.json"), str(_write(tmp_path / "shard.json", shard)))
    assert proc.returncode == 2 and "settings.shard is not a shard" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- 4. parts belong to one run

def _suite(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", str(REPO / "conformance"), "-p", "no:cacheprovider", "-q",
           "--gc-backend", "numpy", "--gc-examples", "1", "--gc-counterexamples", "0", f"--rootdir={REPO}",
           "-k", "test_identity and dL/dx-row-float64-benign", *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("seed", ["same", "other"])
def test_a_stale_part_of_an_earlier_run_is_ignored_and_named(tiny, tmp_path, seed):
    out = tmp_path / "results.json"
    stale = copy.deepcopy(tiny)
    if seed == "other":
        stale["settings"]["seed"] = 1  # merging it would break the run
    else:
        stale["records"][0].update(status="fail", detail="out_of_bound")  # merging it would flip a verdict
        stale["records"].append(dict(stale["records"][0], quantity="stale"))
    for name in ("results.json.part-gw0", "results.json.part-0123456789ab-gw0"):  # old and new style names
        _write(tmp_path / name, stale)
    proc = _suite(tmp_path, "--gc-results", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = load_results(out)
    assert {r["status"] for r in doc["records"]} == {"pass"} and "stale" not in {r["quantity"] for r in doc["records"]}
    assert "ignored 2 results part(s) of an earlier run" in proc.stdout + proc.stderr
    assert (tmp_path / "results.json.part-gw0").exists()  # not ours to delete


def test_parts_are_named_by_run_and_worker():
    from conformance.views.pytest_plugin import part_path

    assert part_path(Path("d/r.json"), "abc", "gw1") == Path("d/r.json.part-abc-gw1")


# ---------------------------------------------------------------------------- 5. unwritable outputs: before the run

def _blockers(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Outputs that cannot be written, even by root: (--gc-results value, --gc-report value)."""
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    return {"a file where a directory is wanted": (str(tmp_path / "a-file" / "results.json"), str(tmp_path / "a-file")),
            "a directory where a file is wanted": (str(tmp_path / "a-dir"), str(tmp_path / "a-file" / "sub"))}


@pytest.mark.parametrize("option", ["--gc-results", "--gc-report"])
def test_an_unwritable_output_stops_pytest_before_the_run(tmp_path, option):
    for why, (results, report) in _blockers(tmp_path).items():
        proc = _suite(tmp_path, option, results if option == "--gc-results" else report)
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, (why, proc.stdout[-2000:], proc.stderr[-2000:])
        assert f"gradconform: {option}" in proc.stderr and "nothing was run" in proc.stderr, proc.stderr
        assert "passed" not in proc.stdout and "Traceback" not in proc.stderr


def test_an_unwritable_run_out_stops_before_the_run(tmp_path):
    (tmp_path / "a-file").write_text("x")
    proc = _cli("run", "--backend", "numpy", "--out", str(tmp_path / "a-file"), "-k", "dL/dx-row-float64-benign")
    assert proc.returncode == 2 and "is a file, and a directory is wanted" in proc.stderr, proc.stderr
    assert "running the conformance suite" not in proc.stdout and "Traceback" not in proc.stderr


def test_an_unwritable_report_out_is_a_message(tiny, tmp_path):
    (tmp_path / "a-file").write_text("x")
    rc, stdout, stderr = _report(tmp_path / "a-file", _write(tmp_path / "in.json", tiny))
    assert rc == 2 and "is a file, and a directory is wanted" in stderr and "Traceback" not in stderr, stderr
    # without results files too: not "no results under a-file/, run `gradconform run --out a-file` first"
    rc, stdout, stderr = _report(tmp_path / "a-file")
    assert rc == 2 and "is a file, and a directory is wanted" in stderr and "no results under" not in stderr, stderr


def test_a_late_write_failure_keeps_the_results_and_says_where(tiny, tmp_path):
    from conformance.results.document import write_results

    (tmp_path / "a-file").write_text("x")
    target = tmp_path / "a-file" / "results.json.gz"  # became unwritable during the run
    written, problem = write_results(target, tiny)
    try:
        assert problem is not None and str(target) in problem
        assert written != target and written.name.endswith(".json.gz")
        assert load_results(written) == tiny
    finally:
        written.unlink()
    written, problem = write_results(tmp_path / "ok.json", tiny)
    assert problem is None and written == tmp_path / "ok.json"


def test_when_the_fallback_cannot_be_written_either_it_is_a_message(tiny, tmp_path, monkeypatch):
    """A full disk often fills the temporary directory too: an OutputError that says so, not an OSError traceback."""
    import tempfile

    from conformance.errors import OutputError
    from conformance.results.document import write_results

    (tmp_path / "a-file").write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file"))  # the temporary directory is unusable too
    with pytest.raises(OutputError, match=r"cannot write .*no temporary file could hold them either.*lost"):
        write_results(tmp_path / "a-file" / "results.json", tiny)


def test_the_plugin_falls_back_when_the_results_cannot_be_written_at_the_end(tmp_path):
    # the folder is writable when the run starts and replaced by a file when the test body runs
    conftest = tmp_path / "conftest_late.py"
    conftest.write_text(
        "import shutil, pathlib\n"
        "def pytest_runtest_teardown(item):\n"
        f"    d = pathlib.Path({str(tmp_path / 'out')!r})\n"
        "    if d.is_dir():\n"
        "        shutil.rmtree(d)\n"
        "    d.write_text('now a file')\n")
    proc = _suite(tmp_path, "--gc-results", str(tmp_path / "out" / "results.json"), "-p", "conftest_late")
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.INTERNAL_ERROR, out[-3000:]
    m = re.search(r"the results of this run are in (\S+\.json)", out)
    assert m is not None and "cannot write" in out, out[-3000:]
    fallback = Path(m.group(1))
    try:
        assert {r["status"] for r in load_results(fallback)["records"]} == {"pass"}
    finally:
        fallback.unlink()


# ---------------------------------------------------------------------------- 7. what a backend says of itself

@pytest.mark.parametrize("cls, versions", [("FloatVersions", {"version": "1.5"}), ("NoneVersions", {}),
                                           ("OddVersions", None), ("OddName", None)])
def test_a_backend_that_describes_itself_oddly_still_gets_a_valid_results_file(tmp_path, cls, versions):
    from conformance.execution.wire import VERSION_LIMIT

    out = tmp_path / "results.json"
    proc = _suite(tmp_path, "--gc-backend", f"tests.hostile_backends:{cls}", "--gc-results", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = load_results(out)  # validated against the schema
    backend = doc["backend"]
    assert backend["available"] and {r["status"] for r in doc["records"]} == {"pass"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in backend["versions"].items())
    if versions is not None:
        assert backend["versions"] == versions
    if cls == "OddVersions":
        assert backend["versions"]["lib"] == "" and backend["versions"]["2"] == "3.5"
        assert len(backend["versions"]["long"]) < VERSION_LIMIT + 40 and "truncated" in backend["versions"]["long"]


def test_a_part_of_this_run_that_conflicts_keeps_every_piece_and_says_so(tiny, tmp_path):
    bad = copy.deepcopy(tiny)
    bad["records"][0].update(status="fail", detail="out_of_bound")
    _write(tmp_path / "bad.json", bad)
    out = tmp_path / "results.json"
    (tmp_path / "conftest_badpart.py").write_text(
        "import shutil\n"
        "from pathlib import Path\n"
        "from conformance.views.pytest_plugin import _run_id_key, part_path\n"
        "def pytest_runtest_teardown(item):\n"
        f"    target = part_path(Path({str(out)!r}), item.config.stash[_run_id_key], 'gw9')\n"
        f"    shutil.copy({str(tmp_path / 'bad.json')!r}, target)\n")
    proc = _suite(tmp_path, "--gc-results", str(out), "-p", "conftest_badpart")
    text = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.INTERNAL_ERROR, text[-3000:]
    assert "the parts of this run cannot be merged" in text and "conflicting results" in text, text[-3000:]
    assert "Traceback" not in text and not out.exists()
    mine = [p for p in tmp_path.glob("results.json.part-*-controller")]
    assert len(mine) == 1 and {r["status"] for r in load_results(mine[0])["records"]} == {"pass"}
    assert len(list(tmp_path.glob("results.json.part-*-gw9"))) == 1


def test_gradconform_run_exits_3_when_its_results_went_to_the_fallback(tmp_path, monkeypatch, capsys):
    """As the pytest plugin does (docs/results.md): the run happened and its results are elsewhere, which is not
    the usage error (2) it was reported as."""
    from conformance.errors import OutputError
    from conformance.execution.worker import BackendInfo
    from conformance.views import cli

    def late_failure(ref, results, args):
        raise OutputError(f"cannot write {results} (No space left on device); the results of this run are in /tmp/x")

    monkeypatch.setattr(cli, "_probe", lambda name: BackendInfo("numpy", "impls.numpy:NumpyBackend", "built-in", True))
    monkeypatch.setattr(cli, "_suite_in_process", late_failure)
    assert cli.main(["run", "--backend", "numpy", "--out", str(tmp_path / "out")]) == 3
    assert "the results of this run are in /tmp/x" in capsys.readouterr().err


def test_a_report_that_cannot_be_built_after_the_fallback_is_said(tmp_path):
    """--gc-report whose folder is gone at the end: the results go to the fallback and the missing report is said."""
    conftest = tmp_path / "conftest_late_report.py"
    conftest.write_text(
        "import shutil, pathlib\n"
        "def pytest_runtest_teardown(item):\n"
        f"    d = pathlib.Path({str(tmp_path / 'out')!r})\n"
        "    if d.is_dir():\n"
        "        shutil.rmtree(d)\n"
        "    d.write_text('now a file')\n")
    proc = _suite(tmp_path, "--gc-report", str(tmp_path / "out"), "-p", "conftest_late_report")
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.INTERNAL_ERROR, out[-3000:]
    m = re.search(r"the results of this run are in (\S+\.json)", out)
    assert m is not None, out[-3000:]
    try:
        assert "no report was built" in out and "gradconform report --out DIR" in out, out[-3000:]
    finally:
        Path(m.group(1)).unlink()
