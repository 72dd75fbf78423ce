"""The commands a report prints so that a reader can reproduce a failure, and how they name the results file.

Every command is exact: it names the test by node id, the seed and the example
count explicitly, and a spec file only when it is not a shipped one, so the
command still reruns the same test when a default changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from conformance.results.naming import FORWARD_TEST, IDENTITY_TEST, QuantityTest, node_id, parse_node_id, \
    parse_quantity_param, quantity_param, quantity_test_function
from conformance.results.naming import pytest_command as naming_pytest_command
from conformance.spec import spec_dir

__all__ = ["display_path", "pytest_command"]


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
    wanted = QuantityTest(quantity, layout, dtype, regime)
    nodeid = None
    for t in doc.get("tests", []):
        node = parse_node_id(str(t.get("nodeid", "")))
        if node.function in (FORWARD_TEST, IDENTITY_TEST) and parse_quantity_param(node.param) == wanted:
            nodeid = str(t["nodeid"])
            break
    if nodeid is None:
        nodeid = node_id(quantity_test_function(kind), quantity_param(quantity, layout, dtype, regime))
    backend = doc.get("backend", {})
    name = backend.get("target") if backend.get("source") == "module:attr" else (backend.get("requested") or backend.get("name"))
    settings = doc.get("settings", {})
    spec_path = doc.get("spec", {}).get("path")
    device = backend.get("device")
    # the seed always explicit: the command stays exact if the default ever changes
    return naming_pytest_command(nodeid, str(name), seed=settings.get("seed"), examples=settings.get("examples"),
                                 spec=str(spec_path) if spec_path and not _is_shipped_spec(str(spec_path)) else None,
                                 device=str(device) if device and device != "cpu" else None)


def _is_shipped_spec(path: str) -> bool:
    name = Path(path).name
    return (spec_dir() / name).is_file() and Path(path).parent.name in ("spec", "_spec")
