"""The commands a report prints so that a reader can reproduce a failure, and how they name the results file.

Every command is exact: it names the test by node id, the seed and the example
count explicitly, and a spec file only when it is not a shipped one, so the
command still reruns the same test when a default changes.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Mapping

from conformance.spec import spec_dir

__all__ = ["display_path", "pytest_command", "rerun_command"]


def display_path(path: str | Path) -> str:
    """How a results file is named in commands: relative to the working directory when it is inside it."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, Path.cwd())).as_posix() if p.resolve().is_relative_to(Path.cwd().resolve()) \
            else p.as_posix()
    except ValueError:
        return p.as_posix()


def pytest_command(doc: Mapping[str, Any], quantity: str, kind: str, layout: str, dtype: str, regime: str) -> str:
    """The pytest command that reruns exactly one test (by node id: ``-k`` matches substrings, and
    ``a-row-float64-benign`` is a substring of ``dL/dtheta-row-float64-benign``)."""
    param = f"{quantity}-{layout}-{dtype}-{regime}"
    nodeid = None
    for t in doc.get("tests", []):
        nid = str(t.get("nodeid", ""))
        if nid.endswith(f"[{param}]") and ("test_forward" in nid or "test_identity" in nid):
            nodeid = nid
            break
    if nodeid is None:
        fn = "test_forward" if kind == "value" else "test_identity"
        nodeid = f"conformance/test_conformance.py::{fn}[{param}]"
    backend = doc.get("backend", {})
    name = backend.get("target") if backend.get("source") == "module:attr" else (backend.get("requested") or backend.get("name"))
    args = ["pytest", nodeid, "--backend", str(name)]
    settings = doc.get("settings", {})
    if settings.get("seed") is not None:  # always explicit: the command stays exact if the default ever changes
        args += ["--seed", str(settings["seed"])]
    if settings.get("examples") is not None:
        args += ["--examples", str(settings["examples"])]
    spec_path = doc.get("spec", {}).get("path")
    if spec_path and not _is_shipped_spec(str(spec_path)):
        args += ["--spec", str(spec_path)]
    if backend.get("device") and backend.get("device") != "cpu":
        args += ["--device", str(backend["device"])]
    return " ".join(shlex.quote(a) for a in args)


def _is_shipped_spec(path: str) -> bool:
    name = Path(path).name
    return (spec_dir() / name).is_file() and Path(path).parent.name in ("spec", "_spec")


def rerun_command(results_display: str, case: str, quantity: str) -> str:
    """The ``gradconform rerun`` command that replays one case of a results file for one quantity."""
    return " ".join(shlex.quote(a) for a in ["gradconform", "rerun", results_display, case, "--quantity", quantity])
