"""Installed use: the built wheel in a fresh virtual environment, used from a directory outside the checkout.

The wheel is built without network (``pip wheel . --no-deps``) and installed with ``--no-deps`` into a fresh venv;
the dependencies are made visible by a ``.pth`` line naming this environment's site-packages (a path line is
added to sys.path without processing that directory's own .pth files, so this checkout's editable install is not
visible there: the tests check that ``conformance`` is imported from the fresh venv). Every command runs with the
fresh venv's scripts, in a temporary directory, on a small selection.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SELECTION = "test_identity and dL/dx-row-float64-benign"
BACKEND = '''
from impls.numpy import NumpyBackend


class Mine(NumpyBackend):
    name = "mine"
'''
UNLOADABLE = '''
import not_a_library_anyone_has  # noqa: F401

from impls.numpy import NumpyBackend


class Broken(NumpyBackend):
    name = "broken"
'''


class Installed:
    def __init__(self, venv: Path, work: Path, cache: Path) -> None:
        self.venv, self.work = venv, work
        self.bin = venv / "bin"
        self.site = Path(subprocess.run([self.bin / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_PLUGINS", "GRADCONFORM_BACKEND")}
        self.env["GRADCONFORM_CACHE"] = str(cache)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"

    def __call__(self, *cmd: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(c) for c in cmd], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self(self.bin / "pytest", "--pyargs", "conformance", "-p", "no:cacheprovider", "-q", "--gc-examples",
                    "1", "--gc-counterexamples", "0", *args)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(base / "wheel"),
                    *isolation], check=True, capture_output=True, timeout=300)
    wheel = next((base / "wheel").glob("gradconform-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    work = base / "project"
    work.mkdir()
    (work / "mybackend.py").write_text(BACKEND)
    (work / "brokenbackend.py").write_text(UNLOADABLE)
    inst = Installed(venv, work, base / "cache")
    (inst.site / "_running_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pytest is a dependency, seen through the .pth line: its console script, as pip would write it (plain
    # `pytest`, so sys.path[0] is the script's folder, not the working directory)
    script = venv / "bin" / "pytest"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nimport pytest\n\n"
                      "if __name__ == '__main__':\n    sys.exit(pytest.main())\n")
    script.chmod(0o755)
    return inst


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_the_package_comes_from_the_fresh_venv(installed):
    out = installed(installed.bin / "python", "-c", "import conformance; print(conformance.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(installed.venv), out.stdout


def test_the_plugin_runs_a_module_attr_backend_of_the_working_directory(installed):
    proc = installed.pytest("--gc-backend", "mybackend:Mine", "-k", SELECTION, "--gc-results", "res.json",
                            "-v")  # -v: with the header
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout, proc.stdout
    assert "gradconform: backend Mine (mybackend:Mine)" in proc.stdout
    doc = json.loads((installed.work / "res.json").read_text())
    assert doc["backend"]["requested"] == "mybackend:Mine" and doc["backend"]["name"] == "mine"


def test_no_backend_given_says_which_runs(installed):
    proc = installed.pytest("-k", SELECTION, "--co", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend numpy (impls.numpy:NumpyBackend) (the default" in proc.stdout


@pytest.mark.parametrize("backend, message", [
    ("mybackend:Nope", "mybackend has no attribute 'Nope'"),
    ("brokenbackend:Broken", "not_a_library_anyone_has is not installed"),
    ("nosuchmodule:X", "no module 'nosuchmodule' can be found"),
])
def test_an_asked_for_backend_that_cannot_be_used_fails(installed, backend, message):
    proc = installed.pytest("--gc-backend", backend, "-k", SELECTION)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_old_option_names_are_refused_with_the_new_one(installed):
    proc = installed.pytest("--backend", "numpy")
    assert proc.returncode == 4 and "--backend is now --gc-backend" in proc.stderr


def test_known_failures_file(installed):
    (installed.work / "xfails.txt").write_text("test_identity[dL/dx-row-float64-benign]\ntest_identity[no-such-test]\n")
    proc = installed.pytest("--gc-backend", "numpy", "-k", SELECTION, "--gc-xfails-file", "xfails.txt",
                            "--gc-results", "xf.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 xpassed" in proc.stdout and "'test_identity[no-such-test]' matches no test" in proc.stdout
    doc = json.loads((installed.work / "xf.json").read_text())
    assert [t["outcome"] for t in doc["tests"]] == ["xpass"]


def test_gradconform_run_writes_under_the_working_directory_only(installed):
    before = _listing(installed.site)
    proc = installed(installed.bin / "gradconform", "run", "--backend", "numpy", "--out", "myreports", "--examples",
                     "1", "-k", "test_identity[dL/dx-row-float64-benign]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed.work / "myreports" / "numpy" / "results.json.gz").is_file()
    assert "building the reports" in proc.stdout
    assert _listing(installed.site) == before
    base = installed(installed.bin / "gradconform", "baseline", "myreports/numpy/results.json.gz")
    assert base.returncode == 0 and base.stdout.startswith("# known failures of numpy"), base.stderr


def test_the_python_api_on_a_backend_class(installed):
    code = ("import conformance, mybackend\n"
            "r = conformance.run_suite(mybackend.Mine, select='test_identity[dL/dx-row-float64-benign]', examples=1)\n"
            "print(r.backend, r.ok, [(t.id, t.status) for t in r.tests])")
    proc = installed(installed.bin / "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "mine True [('test_identity[dL/dx-row-float64-benign]', 'passed')]"


def test_with_pytest_timeout_and_xdist(installed):
    pytest.importorskip("pytest_timeout")  # the test extra installs it (constraints/ci.txt)
    proc = installed.pytest("--gc-backend", "numpy", "-k", "dL/dx-row-float64-benign or dL/dx-column-float64-benign",
                            "-n", "2", "--timeout", "120", "--gc-timeout", "30")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout
