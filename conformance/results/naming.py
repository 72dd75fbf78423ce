"""The names of the suite's tests and the commands that rerun them: one format, written and read here.

A test of ``pytest conformance`` is named by its function and its parameters,
joined by ``-`` (``test_identity[dL/dx-row-float32-benign]``). The pytest view
generates the names, the results file stores them (``tests[].nodeid``), the
xdist scheduler and the report read them back, and failure messages and
reports print commands that rerun a test or a case. Keeping the format in one
module keeps those in step. Quantity ids may contain ``-``; layout, dtype and
regime names may not (the last three fields are split off from the right).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = ["TEST_MODULE", "FORWARD_TEST", "IDENTITY_TEST", "SPEC_IDENTITY_TEST", "QuantityTest", "NodeId",
           "quantity_param", "spec_identity_param", "negative_param", "metamorphic_param", "quantity_test_function",
           "node_id", "parse_node_id", "parse_quantity_param", "scheduling_scope", "pytest_command",
           "case_rerun_command", "report_dir_name", "REPORT_DIR_MAX"]

#: the module that holds the suite's tests, as pytest names it from the repository root
TEST_MODULE = "conformance/test_conformance.py"
FORWARD_TEST = "test_forward"
IDENTITY_TEST = "test_identity"
SPEC_IDENTITY_TEST = "test_spec_identity"
_QUANTITY_TESTS = (FORWARD_TEST, IDENTITY_TEST)
_SEP = "-"


@dataclass(frozen=True)
class QuantityTest:
    """The parameters of a forward-value or identity test: one quantity in one group."""

    quantity: str
    layout: str
    dtype: str
    regime: str


@dataclass(frozen=True)
class NodeId:
    """A pytest node id split into its file, test function and parameter text (empty when unparametrised)."""

    path: str
    function: str
    param: str


def quantity_param(quantity: str, layout: str, dtype: str, regime: str) -> str:
    """The parameter text of the test of one quantity in the group (layout, dtype, regime)."""
    return _SEP.join((quantity, layout, dtype, regime))


def spec_identity_param(identity: str, layout: str) -> str:
    """The parameter text of the backend-free verification of one spec identity."""
    return _SEP.join((identity, layout))


def negative_param(identity: str, layout: str) -> str:
    """The parameter text of the test refuting one negative identity."""
    return _SEP.join((identity, layout))


def metamorphic_param(prop: str, layout: str, dtype: str) -> str:
    """The parameter text of the test of one metamorphic property."""
    return _SEP.join((prop, layout, dtype))


def quantity_test_function(kind: str) -> str:
    """The test function of a quantity of this kind (``value``: a forward value; otherwise an identity)."""
    return FORWARD_TEST if kind == "value" else IDENTITY_TEST


def node_id(function: str, param: str) -> str:
    """The node id of one of the suite's tests, as pytest reports it when run from the repository root."""
    return f"{TEST_MODULE}::{function}[{param}]"


def parse_node_id(nodeid: str) -> NodeId:
    """Split a node id (any test's) into path, function and parameter text."""
    head, sep, rest = nodeid.partition("[")
    path, _, function = head.rpartition("::")
    param = rest[:-1] if sep and rest.endswith("]") else ""
    return NodeId(path, function, param)


def parse_quantity_param(param: str) -> QuantityTest | None:
    """The quantity and group named by a forward-value or identity test's parameters (None if malformed)."""
    parts = param.rsplit(_SEP, 3)
    if len(parts) != 4 or not all(parts):
        return None
    return QuantityTest(*parts)


def scheduling_scope(nodeid: str) -> str | None:
    """The unit of work a test belongs to, as text: its group for a quantity test, its identity for a spec
    verification; None for a test that is not one of those (it is scheduled on its own)."""
    node = parse_node_id(nodeid)
    if not node.param:
        return None
    if node.function in _QUANTITY_TESTS:
        q = parse_quantity_param(node.param)
        if q is not None:
            return f"gradconform:{q.layout}:{q.dtype}:{q.regime}"
    if node.function == SPEC_IDENTITY_TEST:
        return "gradconform-spec:" + node.param
    return None


def pytest_command(nodeid: str, backend: str, *, seed: int | None = None, examples: int | None = None,
                   spec: str | None = None, device: str | None = None, wide: bool = False) -> str:
    """The shell command that reruns exactly one test: by node id, since ``-k`` matches substrings
    (``L-row-float64-benign`` is a substring of ``dL/dtheta.general-row-float64-benign``). Options left
    None are left out (their defaults apply); ``wide``: the test exists only with ``--gc-wide``."""
    args = ["pytest", nodeid, "--gc-backend", backend]
    if seed is not None:
        args += ["--gc-seed", str(seed)]
    if examples is not None:
        args += ["--gc-examples", str(examples)]
    if spec is not None:
        args += ["--gc-spec", spec]
    if device is not None:
        args += ["--gc-device", device]
    if wide:
        args += ["--gc-wide"]
    return " ".join(shlex.quote(a) for a in args)


def case_rerun_command(results: str, case: str, quantity: str) -> str:
    """The shell command that recomputes one case of a results file for one quantity (``gradconform rerun``)."""
    return " ".join(shlex.quote(a) for a in ["gradconform", "rerun", results, case, "--quantity", quantity])


#: the longest folder name a backend's report gets (file systems allow 255 bytes; the rest of a path needs room)
REPORT_DIR_MAX = 80


def report_dir_name(backend: str) -> str:
    """The folder of a backend's report (``reports/<name>/``): its name with nothing that could leave the reports
    directory (path separators, ``..``, a leading dot or dash, non-ASCII) or trouble a shell, at most
    :data:`REPORT_DIR_MAX` characters; ``backend`` when nothing is left. A results file names its backend itself,
    so this name is all that stands between a tampered file and a write outside ``--out``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(backend)).replace("..", "_").strip(".-")[:REPORT_DIR_MAX]
    return cleaned.strip(".-") or "backend"
