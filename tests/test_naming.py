"""The test node-id format (conformance.results.naming): written and read back by the same module."""

from conformance.results.naming import (FORWARD_TEST, IDENTITY_TEST, QuantityTest, case_rerun_command, node_id,
                                        parse_node_id, parse_quantity_param, pytest_command, quantity_param,
                                        scheduling_scope)
from conformance.formats import DTYPES
from conformance.spec import load_spec


def test_every_quantity_test_id_of_the_seed_spec_parses_back():
    spec = load_spec(None)
    seen = 0
    for lname, lay in spec.layouts.items():
        quantities = [(d.name, FORWARD_TEST) for d in lay.forward] + [(i.id, IDENTITY_TEST) for i in lay.identities]
        for qid, fn in quantities:
            for dtype in (d for d in DTYPES if d in spec.tolerance.accumulate):
                for regime in spec.regimes:
                    nid = node_id(fn, quantity_param(qid, lname, dtype, regime))
                    node = parse_node_id(nid)
                    assert (node.path, node.function) == ("conformance/test_conformance.py", fn)
                    assert parse_quantity_param(node.param) == QuantityTest(qid, lname, dtype, regime)
                    assert scheduling_scope(nid) == f"gradconform:{lname}:{dtype}:{regime}"
                    seen += 1
    assert seen > 100


def test_a_quantity_id_with_a_dash_keeps_it():
    assert parse_quantity_param(quantity_param("dL/dx-alt", "row", "float64", "benign")) == \
        QuantityTest("dL/dx-alt", "row", "float64", "benign")
    assert parse_quantity_param("row-float64") is None


def test_a_test_outside_the_suite_has_no_scope():
    assert parse_node_id("tests/test_x.py::test_y").param == ""
    assert scheduling_scope("tests/test_x.py::test_y") is None
    assert scheduling_scope("conformance/test_conformance.py::test_negative_identity[a-row]") is None


def test_commands_quote_their_arguments_and_leave_out_defaults():
    nid = node_id(IDENTITY_TEST, quantity_param("dL/dx", "row", "float32", "benign"))
    assert pytest_command(nid, "numpy") == f"pytest '{nid}' --gc-backend numpy"
    assert pytest_command(nid, "numpy", seed=3, examples=2, spec="my spec.yaml", device="cuda").endswith(
        "--gc-backend numpy --gc-seed 3 --gc-examples 2 --gc-spec 'my spec.yaml' --gc-device cuda")
    assert case_rerun_command("r.json", "c1", "dL/dx") == "gradconform rerun r.json c1 --quantity dL/dx"
