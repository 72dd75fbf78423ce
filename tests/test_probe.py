"""``gradconform backends`` describes the built-ins without importing their frameworks (conformance.execution.probe),
and what it says is what loading them says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.execution import probe as probe_module
from conformance.execution.probe import BUILTIN_NEEDS, probe
from conformance.execution.registry import BUILTIN, BackendRef, find
from conformance.execution.worker import Worker

ROOT = Path(__file__).resolve().parent.parent

# Runs `gradconform backends` in this interpreter with Worker.start recording which backends it loads, then
# reports the frameworks that got imported.
_SCRIPT = """
import io, json, sys, contextlib
from conformance.execution import worker
from conformance.views import cli
started = []
real_start = worker.Worker.start
def start(self):
    started.append(self.ref.name)
    return real_start(self)
worker.Worker.start = start
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = cli.main(["backends"])
print(json.dumps({"rc": rc, "started": started, "stdout": out.getvalue(),
                  "imported": sorted(m for m in ("torch", "jax", "jaxlib") if m in sys.modules)}))
"""


def test_backends_imports_no_framework_and_loads_no_builtin():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0
    assert got["imported"] == []
    assert not set(got["started"]) & set(BUILTIN), f"built-ins loaded in a worker: {got['started']}"
    rows = {line.split()[0] for line in got["stdout"].splitlines()[2:] if line.strip()}
    assert rows >= set(BUILTIN)


def _ref(name: str) -> BackendRef:
    return find(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_the_probe_says_what_loading_the_backend_says(name):
    """On this machine, whatever is installed: available or not, versions, dtypes and devices agree."""
    ref = _ref(name)
    probed = probe(ref)
    assert probed is not None
    with Worker(ref, startup_timeout=240) as w:
        loaded = w.start()
    assert probed.available == loaded.available, (probed.reason, loaded.reason)
    if loaded.available:
        assert (probed.name, dict(probed.versions), probed.dtypes, probed.devices) == \
            (loaded.name, dict(loaded.versions), loaded.dtypes, loaded.devices)
    else:
        assert probed.reason == loaded.reason


def test_a_missing_framework_is_unavailable_with_the_backends_own_reason(monkeypatch):
    real = probe_module.metadata.distribution

    def distribution(name: str):  # type: ignore[no-untyped-def]
        if name in ("torch", "jax"):
            raise probe_module.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(probe_module.metadata, "distribution", distribution)
    torch = probe(_ref("torch-fused"))
    jax = probe(_ref("jax"))
    assert torch is not None and not torch.available
    assert torch.reason == "torch is not installed (pip install 'gradconform[torch]')"
    assert jax is not None and not jax.available
    assert jax.reason == "jax is not installed (pip install 'gradconform[jax]')"
    assert probe(_ref("numpy")).available  # type: ignore[union-attr]


def test_a_module_that_is_not_the_distributions_is_not_guessed(tmp_path, monkeypatch):
    """A directory shadowing numpy on sys.path: the probe declines (the backend is loaded instead)."""
    (tmp_path / "ml_dtypes").mkdir()
    (tmp_path / "ml_dtypes" / "__init__.py").write_text("raise ImportError('shadow')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert probe(_ref("numpy")) is None


def test_backends_that_are_not_builtin_are_not_probed():
    assert probe(BackendRef("mine", "mypkg.mod:Mine", "module:attr")) is None
    assert probe(BackendRef("numpy", "impls.numpy:NumpyBackend", "entry point (x)")) is None
    assert set(BUILTIN_NEEDS) == set(BUILTIN)
