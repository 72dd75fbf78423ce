"""Finding backends: built-in names, the entry-point group, ``module:attr``, and clear messages otherwise.

The worked example of docs/backends.md (tests/example_backend, distribution
``gradconform-example-backend``) must be installed in the test environment:
``pip install -e tests/example_backend``. It is found through its entry point
and run by the suite like any backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.execution import registry
from conformance.errors import BackendNotFound
from conformance.spec import load_spec

#: cases of a benign group with --gc-examples 1: one per shape family of the seed spec
_SEED = load_spec(None)
N_BENIGN = len(_SEED.families_for(_SEED.regimes["benign"]))

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = str(ROOT / "conformance")
INSTALL_EXAMPLE = "pip install -e tests/example_backend"


def _example_ref() -> registry.BackendRef:
    try:
        return registry.find("example")
    except BackendNotFound:
        pytest.fail(f"the example backend is not installed in this environment: run `{INSTALL_EXAMPLE}`")


def _conformance(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(CONFORMANCE, "-p", "no:cacheprovider", "-rA", "--gc-counterexamples", "0",
                                         *args)


def _hide(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which ``import <module>`` fails as it does where the library is not installed."""
    for name in modules:
        pkg = tmp_path / "hidden" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    env = dict(os.environ)
    paths = [str(tmp_path / "hidden"), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# ---------------------------------------------------------------------------- resolution

def test_builtin_backends_are_found_by_name():
    for name, target in [("numpy", "impls.numpy:NumpyBackend"), ("numpy-composed", "impls.numpy:NumpyComposedBackend"),
                         ("torch", "impls.torch:TorchBackend"), ("torch-composed", "impls.torch:TorchComposedBackend"),
                         ("jax", "impls.jax:JaxBackend"), ("jax-composed", "impls.jax:JaxComposedBackend")]:
        ref = registry.find(name)
        assert (ref.name, ref.target, ref.source) == (name, target, "built-in")


@pytest.mark.parametrize("old, new", [("torch-fused", "torch"), ("jax-fused", "jax")])
def test_old_names_resolve_to_the_new_one_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=rf"'{old}' is deprecated, use '{new}'"):
        ref = registry.find(old)
    assert (ref.name, ref.target) == (new, registry.BUILTIN[new])
    assert old not in [r.name for r in registry.discover()]  # listed once, under the new name


def test_an_old_name_in_the_suite_says_the_new_one_and_records_under_it(pytester):
    out = pytester.path / "results.json"
    result = _conformance(pytester, "--gc-backend", "torch-fused", "--gc-examples", "1", "-k", "test_forward and L-row and float64 and benign",
                          "--gc-results", str(out), "--gc-no-isolate")
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        pytest.skip("torch is not installed here (CI installs it)")
    result.stdout.fnmatch_lines(["*BackendRenamed: gradconform: backend name 'torch-fused' is deprecated, use 'torch'*"])
    doc = json.loads(out.read_text())
    assert (doc["backend"]["name"], doc["backend"]["requested"]) == ("torch", "torch")


def test_the_example_backend_is_found_through_its_entry_point():
    ref = _example_ref()
    assert ref.target == "gradconform_example_backend:HandWrittenBackprop"
    assert ref.source == "entry point (gradconform-example-backend)"


def test_an_entry_point_cannot_shadow_a_builtin(monkeypatch):
    from importlib import metadata

    fake = metadata.EntryPoint("numpy", "somewhere.else:Impostor", registry.ENTRY_POINT_GROUP)
    real = metadata.entry_points

    def entry_points(**kw):
        found = list(real(**kw))
        return found + [fake] if kw.get("group") == registry.ENTRY_POINT_GROUP else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert registry.find("numpy").target == "impls.numpy:NumpyBackend"


def test_module_attr_resolves_without_importing_the_module():
    ref = registry.find("tests.isolation_backends:Raises")
    assert (ref.name, ref.source) == ("Raises", "module:attr")


def test_unknown_names_say_what_is_known():
    with pytest.raises(BackendNotFound, match=r"unknown backend 'doesnotexist'\. Known backends: numpy, .*torch"):
        registry.find("doesnotexist")
    with pytest.raises(BackendNotFound, match=r"no module 'nosuch_pkg_xyz' can be found"):
        registry.find("nosuch_pkg_xyz.mod:Backend")


# ---------------------------------------------------------------------------- pytest sessions

def test_the_example_backend_runs_in_the_suite_through_its_entry_point(pytester):
    _example_ref()
    out = pytester.path / "results.json"
    result = _conformance(pytester, "--gc-backend", "example", "--gc-examples", "1", "-k", "dL/dx-row and benign",
                          "--gc-results", str(out))
    # float64 and float32 are computed and pass; float16 and bfloat16 are declined, so skipped as not supported
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*backend example (worked example: a hand-written numpy backward pass*",
                                 f"*not supported on {N_BENIGN} of {N_BENIGN} cases: dtype float16 is not supported*"])
    doc = json.loads(out.read_text())
    assert doc["backend"]["source"] == "entry point (gradconform-example-backend)"
    # declined work is visible: a not_supported record for every check the declined dtypes would have had
    declined = [r for r in doc["records"] if r["dtype"] in ("float16", "bfloat16")]
    assert declined and all(r["status"] == "not_supported" for r in declined)


def test_module_attr_runs_in_the_suite(pytester):
    _example_ref()
    out = pytester.path / "results.json"
    result = _conformance(pytester, "--gc-backend", "gradconform_example_backend:HandWrittenBackprop", "--gc-examples", "1",
                          "-k", "test_forward and yhat-column and float32", "--gc-results", str(out))
    result.assert_outcomes(passed=8)  # one per regime
    doc = json.loads(out.read_text())
    assert (doc["backend"]["source"], doc["backend"]["name"]) == ("module:attr", "example")


def test_an_unknown_backend_is_a_usage_error_with_the_known_names(pytester):
    result = _conformance(pytester, "--gc-backend", "doesnotexist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradconform: unknown backend 'doesnotexist'. Known backends: numpy,*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_an_asked_for_backend_that_is_unavailable_fails_the_run_with_its_reason(pytester, tmp_path):
    """A CI gate on a backend must not go green because the backend could not be loaded: an error, not skips."""
    env = _hide(tmp_path, "torch")
    proc = subprocess.run([sys.executable, "-m", "pytest", CONFORMANCE, "-p", "no:cacheprovider", "-rs",
                           "--gc-backend", "torch", "-k", "dL/dx-row and benign"],
                          cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert ("backend 'torch' was asked for but cannot be used: torch is not installed (pip install 'gradconform[torch]')"
            in proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_gradconform_backends_lists_versions_and_reasons(tmp_path):
    env = _hide(tmp_path, "torch", "jax")
    proc = subprocess.run([sys.executable, "-m", "conformance.views.cli", "backends"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[2:] if line.strip()}
    assert set(rows) >= {"numpy", "numpy-composed", "torch", "torch-composed", "jax", "jax-composed"}
    assert " yes " in rows["numpy"] and "numpy 2." in rows["numpy"] and "float64,float32,float16,bfloat16" in rows["numpy"]
    for name in ("torch", "torch-composed"):
        assert " no " in rows[name] and "torch is not installed (pip install 'gradconform[torch]')" in rows[name]
    for name in ("jax", "jax-composed"):
        assert " no " in rows[name] and "jax is not installed (pip install 'gradconform[jax]')" in rows[name]
    if "example" in rows:
        assert "entry point (gradconform-example-backend)" in rows["example"]


def test_the_command_line_says_an_old_name_is_deprecated_and_uses_the_new_one(capsys):
    from types import SimpleNamespace

    from conformance.views import cli

    assert cli._current_name("jax-fused") == "jax"
    err = capsys.readouterr().err
    assert err.startswith("gradconform: warning: backend name 'jax-fused' is deprecated, use 'jax'")
    assert cli._current_name("jax") == "jax" and capsys.readouterr().err == ""
    # rerun of an old results file whose 'torch' was the composed loss: said, not silently compared
    run = SimpleNamespace(info=SimpleNamespace(available=True, name="torch", description="torch, F.cross_entropy"))
    cli._warn_if_another_backend(run, {"description": "torch, the loss exactly as written"}, "old.json")
    assert "backend 'torch' is not the one that made old.json" in capsys.readouterr().err
    cli._warn_if_another_backend(run, {"description": "torch, F.cross_entropy"}, "new.json")
    assert capsys.readouterr().err == ""
