"""Spec files: the shipped ones load and are verified; broken copies fail with a message naming file and key."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from conformance.errors import ShapeError, SpecError
from conformance.oracle.evaluate import verify_identity
from conformance.cases.generate import generate_cases
from conformance.spec import FrozenMap, ShapeFamily, load_spec, load_spec_text

from .conftest import SPEC_DIR


def spec_files() -> list[Path]:
    return sorted(SPEC_DIR.glob("*.yaml"))


def test_there_is_more_than_one_model():
    """The format is general: the seed network and at least one other model, no harness change needed."""
    names = {load_spec(p).name for p in spec_files()}
    assert "two_layer_sigmoid_xent" in names and len(names) >= 2


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_shipped_specs_load(path):
    spec = load_spec(path)
    assert spec.layouts and spec.regimes
    assert len(spec.sha256) == 64


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_every_identity_of_every_shipped_spec_is_verified_by_the_oracle(path):
    """The spec is verified, not trusted: each identity equals the dual-number derivative of the forward
    definitions on a case of each shape family."""
    spec = load_spec(path)
    for lname, layout in spec.layouts.items():
        regime = next(iter(spec.regimes))
        cases = generate_cases(spec, lname, "float64", regime, examples=1)
        for ident in layout.identities:
            verdicts = [verify_identity(layout, ident, c.inputs, c.sizes).verdict for c in cases]
            assert "refuted" not in verdicts, (lname, ident.id)
            assert "holds" in verdicts, (lname, ident.id, verdicts)


def test_seed_shapes_are_the_question_s(seed_spec):
    seed = seed_spec.families["seed"].sizes
    assert (seed["n"], seed["d_in"], seed["hidden"], seed["d_out"]) == (1, 5, 3, 5)
    row = seed_spec.layouts["row"]
    assert row.shapes["W1"] == ("d_in", "hidden") and row.shapes["W2"] == ("hidden", "d_out")
    assert seed_spec.layouts["column"].shapes["x"] == ("d_in", "n")


def test_preconditions_and_general_identity(seed_spec):
    row = seed_spec.layouts["row"]
    assert row.identity("dL/dtheta").requires == ("labels_sum_to_one",)
    assert row.identity("dL/dtheta.general").requires == ()


def broken(seed_text: str, old: str, new: str) -> str:
    assert old in seed_text, old
    return seed_text.replace(old, new, 1)


CASES = [
    # (description, old, new, exception, fragments that must appear in the message)
    ("yaml syntax", "gradconform_spec: 1", "gradconform_spec: [1", SpecError, ["not valid YAML", "line"]),
    ("unknown top-level key", "gradconform_spec: 1", "gradconform_spec: 1\nflavour: sweet", SpecError,
     ["schema", "flavour"]),
    ("unknown dimension in a family", "sizes: {n: 1, d_in: 5, hidden: 3, d_out: 5}",
     "sizes: {n: 1, d_in: 5, hidden: 3, d_out: 5, depth: 2}", SpecError, ["unknown dimension 'depth'", "shape_families.seed"]),
    ("unknown dimension in a shape", "x: [n, d_in], W1", "x: [n, width], W1", SpecError,
     ["unknown dimension 'width'", "layouts.row.shapes.x"]),
    ("undeclared name", '{name: h, expr: "sigmoid(a)"}', '{name: h, expr: "sigmoid(a + bias)"}', SpecError,
     ["unknown name 'bias'", "layouts.row.forward[1].expr"]),
    ("non-whitelisted syntax", 'expr: "yhat - y"\n        shape: [n, d_out]\n        requires: [labels_sum_to_one]\n        description: softmax',
     'expr: "yhat.sum() - y"\n        shape: [n, d_out]\n        requires: [labels_sum_to_one]\n        description: softmax',
     SpecError, ["only the language's functions can be called", "layouts.row.identities[0].expr", "yhat.sum"]),
    ("missing transpose", 'expr: "((yhat - y) @ W2.T) * (h - h*h) @ W1.T"', 'expr: "((yhat - y) @ W2.T) * (h - h*h) @ W1"',
     ShapeError, ["not conformable", "did you mean W1.T", "layouts.row.identities[4].expr"]),
    ("declared shape disagrees", "expr: \"h.T @ (yhat - y)\"\n        shape: [hidden, d_out]",
     "expr: \"h.T @ (yhat - y)\"\n        shape: [d_out, hidden]", ShapeError, ["declared shape", "identities[8]"]),
    ("jacobian convention disagrees", "jacobian: {of: a, wrt: x, convention: numerator}",
     "jacobian: {of: a, wrt: x, convention: denominator}", ShapeError, ["denominator-layout jacobian", "declares"]),
    ("loss not scalar", '{name: L, expr: "-sum(y * log(yhat))"}\n    preconditions:\n      labels_sum_to_one:\n        description: every row',
     '{name: L, expr: "-(y * log(yhat))"}\n    preconditions:\n      labels_sum_to_one:\n        description: every row',
     SpecError, ["must be a scalar", "layouts.row.loss"]),
    ("unknown precondition", "requires: [labels_sum_to_one]\n        description: softmax",
     "requires: [labels_are_nice]\n        description: softmax", SpecError, ["unknown precondition 'labels_are_nice'"]),
    ("magnitude without magnitudes", "    magnitudes: [1.0e+1, 1.0e+2, 1.0e+3, 1.0e+4]\n", "", SpecError,
     ["refers to the magnitude", "regimes.large_logits"]),
    ("generator for an unknown input", "b2: {spike: magnitude}", "bias2: {spike: magnitude}", SpecError,
     ["not a declared input", "regimes.large_logits.inputs"]),
]


@pytest.mark.parametrize("what, old, new, exc, fragments", CASES, ids=[c[0] for c in CASES])
def test_broken_copies_are_refused_precisely(seed_text, what, old, new, exc, fragments):
    with pytest.raises(exc) as info:
        load_spec_text(broken(seed_text, old, new), name="copy.yaml")
    message = str(info.value)
    assert message.startswith("copy.yaml: ")
    for fragment in fragments:
        assert fragment in message, (what, message)


def test_unreadable_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "absent.yaml")


def test_wrong_identity_in_a_copy_is_refuted_with_a_counterexample(seed_text):
    """A wrong identity placed in a copy of the spec loads (it is shape-correct) and the oracle refutes it."""
    text = broken(seed_text, 'expr: "sum(yhat - y, axis=0)"\n        shape: [1, d_out]',
                  'expr: "mean(yhat - y, axis=0)"\n        shape: [1, d_out]')
    spec = load_spec_text(text, name="wrong.yaml")
    row = spec.layouts["row"]
    ident = row.identity("dL/db2")
    cases = generate_cases(spec, "row", "float64", "benign", examples=2)
    batch = [c for c in cases if c.sizes["n"] > 1 and np.any(c.inputs["y"] != 0)]
    verdict = verify_identity(row, ident, batch[-1].inputs, batch[-1].sizes)
    assert verdict.verdict == "refuted"
    assert verdict.worst_index is not None
    assert verdict.identity_value != pytest.approx(verdict.derivative_value)


# --------------------------------------------------------------------------- the spec is deeply frozen

def _reachable(obj: Any, path: str = "spec") -> Iterator[tuple[str, Any]]:
    """Every value reachable from a spec object through dataclass fields, mappings and tuples, with its path."""
    yield path, obj
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _reachable(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, FrozenMap):
        for k, v in obj.items():
            yield from _reachable(v, f"{path}[{k!r}]")
    elif isinstance(obj, tuple):
        for i, v in enumerate(obj):
            yield from _reachable(v, f"{path}[{i}]")


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_every_container_of_a_loaded_spec_is_immutable(path):
    spec = load_spec(path)
    for layout in spec.layouts.values():  # the derived views too
        assert isinstance(layout.definitions, FrozenMap) and isinstance(layout.value_shapes, FrozenMap)
    mutable = [(where, type(v).__name__) for where, v in _reachable(spec)
               if isinstance(v, (dict, list, set, bytearray)) or (dataclasses.is_dataclass(v)
                                                                  and not type(v).__dataclass_params__.frozen)]
    assert not mutable, mutable


def test_mutating_a_loaded_spec_raises(seed_spec):
    row = seed_spec.layouts["row"]
    ident = row.identities[0]
    regime = next(iter(seed_spec.regimes.values()))
    for mapping, key in ((seed_spec.families, "seed"), (seed_spec.families["seed"].sizes, "n"), (seed_spec.layouts, "row"),
                         (seed_spec.inputs["x"], "role"), (row.shapes, "x"), (row.preconditions, "p"),
                         (row.value_shapes, "h"), (row.definitions, "h"), (ident.when, "n"),
                         (seed_spec.tolerance.accumulate, "float16"), (seed_spec.tolerance.elementary_error_u, "exp"),
                         (regime.generators, "default"), (seed_spec.dimensions, "n")):
        with pytest.raises(TypeError):
            mapping[key] = None  # type: ignore[index]
        with pytest.raises((TypeError, AttributeError)):
            del mapping[key]  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            mapping.update({})  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.id = "renamed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        row.identities.append(ident)  # type: ignore[attr-defined]


def test_spec_values_hash_and_equal_specs_compare_equal(seed_spec, seed_text):
    row = seed_spec.layouts["row"]
    assert len({i for lay in seed_spec.layouts.values() for i in lay.identities}) == \
        sum(len(lay.identities) for lay in seed_spec.layouts.values())
    for value in (*row.identities, *row.forward, *row.preconditions.values(), *seed_spec.families.values(),
                  *seed_spec.regimes.values(), *seed_spec.negative_identities, seed_spec.tolerance, row):
        assert hash(value) == hash(dataclasses.replace(value))
    again = load_spec_text(seed_text, name=seed_spec.path, digest_of=seed_text.encode("utf-8"))
    assert again == seed_spec and hash(again) == hash(seed_spec)
    assert pickle.loads(pickle.dumps(seed_spec)) == seed_spec
    other = load_spec_text(seed_text.replace("sizes: {n: 1, d_in: 5, hidden: 3, d_out: 5}",
                                             "sizes: {n: 1, d_in: 5, hidden: 3, d_out: 4}", 1), name=seed_spec.path)
    assert other.families["seed"] != seed_spec.families["seed"] and other != seed_spec


def test_spec_objects_built_outside_the_loader_are_frozen_too(seed_spec):
    """``conformance.check`` builds identities and families of its own, and ``replace`` rebuilds them."""
    family = ShapeFamily("pinned", {"n": 1, "d_in": 2, "hidden": 3, "d_out": 4})
    ident = dataclasses.replace(seed_spec.layouts["row"].identities[0], when={"n": 1}, requires=["labels_sum_to_one"])
    assert isinstance(family.sizes, FrozenMap) and isinstance(ident.when, FrozenMap) and ident.requires == ("labels_sum_to_one",)
    assert hash(family) == hash(ShapeFamily("pinned", FrozenMap({"n": 1, "d_in": 2, "hidden": 3, "d_out": 4})))
    assert hash(ident) == hash(dataclasses.replace(ident))


def test_frozen_map_keeps_order_and_hashes_like_it_compares():
    a, b = FrozenMap({"x": 1, "y": 2}), FrozenMap([("y", 2), ("x", 1)])
    assert list(a) == ["x", "y"] and list(b) == ["y", "x"]
    assert a == b == {"x": 1, "y": 2} and hash(a) == hash(b)
    assert a != FrozenMap({"x": 1}) and a != {"x": 1, "y": 3}
    assert pickle.loads(pickle.dumps(a)) == a and repr(a) == "FrozenMap({'x': 1, 'y': 2})"
