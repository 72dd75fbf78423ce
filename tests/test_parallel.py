"""Parallel (pytest-xdist) and sharded runs give the results of one serial run, each group computed once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.execution.sharding import assign, group_units, parse_shard, unit_of

REPO = Path(__file__).resolve().parent.parent
try:  # the fast engine where installed (these tests are about scheduling, not about the oracle)
    import flint  # noqa: F401

    ENGINE = "flint"
except ImportError:  # pragma: no cover
    ENGINE = "mpmath"
# a slice of the suite that is quick but has several groups of both kinds, and spec-identity tests
SELECT = ["-k", "float64 and (benign or large_logits or tiny_inputs) or test_spec_identity and row"]


def _pytest(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, "-m", "pytest", str(REPO / "conformance"), "--gc-backend", "numpy", "--gc-examples", "1",
           "--gc-oracle", ENGINE, "--gc-oracle-cache", "off", "--gc-results", str(out), "-q", "-p", "no:cacheprovider",
           f"--rootdir={REPO}", *SELECT, *extra]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _essence(doc: dict) -> tuple:
    def rec(r: dict) -> tuple:
        return tuple(sorted((k, json.dumps(v)) for k, v in r.items()))

    cases = sorted(json.dumps(c, sort_keys=True) for c in doc["cases"])
    records = sorted(rec(r) for r in doc["records"])
    verifs = sorted(json.dumps(v, sort_keys=True) for v in doc["verifications"])
    tests = sorted((t["nodeid"], t["outcome"]) for t in doc["tests"])
    return cases, records, verifs, tests


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    return _pytest(tmp_path_factory.mktemp("serial"), "serial")


@pytest.mark.slow
def test_xdist_two_workers_equal_one_and_groups_stay_whole(serial, tmp_path):
    pytest.importorskip("xdist", reason="parallel runs need pytest-xdist (the [test] extra; CI installs it)")
    par = _pytest(tmp_path, "par", "-n", "2")
    assert _essence(par) == _essence(serial)
    keys = [(g["layout"], g["dtype"], g["regime"]) for g in par["groups"]]
    assert len(keys) == len(set(keys)) > 2  # no group computed by two workers
    assert {g["worker"] for g in par["groups"]} == {"gw0", "gw1"}  # and both workers had work
    assert not list(tmp_path.glob("*.part-*"))  # the parts were merged and removed


@pytest.mark.slow
def test_shards_partition_the_suite_and_merge_back(serial, tmp_path):
    docs = [_pytest(tmp_path, f"shard{i}", "--gc-shard", f"{i}/3") for i in (1, 2, 3)]
    groups = [{(g["layout"], g["dtype"], g["regime"]) for g in d["groups"]} for d in docs]
    assert sum(map(len, groups)) == len(set().union(*groups))  # disjoint
    tests = [{t["nodeid"] for t in d["tests"]} for d in docs]
    assert sum(map(len, tests)) == len(set().union(*tests)) == len(serial["tests"])
    paths = [tmp_path / f"shard{i}.json" for i in (1, 2, 3)]
    merged = tmp_path / "merged.json"
    gc = [sys.executable, "-m", "conformance.views.cli", "merge", str(merged)]
    partial = subprocess.run(gc + [str(p) for p in paths[:2]], capture_output=True, text=True)
    assert partial.returncode == 2 and "3/3 missing" in partial.stderr
    done = subprocess.run(gc + [str(p) for p in paths], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(merged.read_text())
    assert _essence(doc) == _essence(serial)
    assert doc["settings"]["shard"] is None and doc["settings"]["merged_shards"] == ["1/3", "2/3", "3/3"]


def test_shard_assignment_is_deterministic_and_balanced(seed_spec):
    units = group_units(seed_spec)
    for n in (1, 2, 3, 7):
        a, b = assign(units, n), assign(dict(reversed(list(units.items()))), n)
        assert a == b and set(a.values()) == set(range(1, n + 1))
        loads = [sum(w for u, w in units.items() if a[u] == k) for k in range(1, n + 1)]
        assert max(loads) - min(loads) <= max(units.values())
    assert unit_of({"identity_item": ("dL/dx", "row", "float16", "benign")}) == ("group", "row", "float16", "benign")
    assert unit_of({"spec_identity_item": ("dL/dx", "row")}) == ("spec", "dL/dx", "row")


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1-2", ""])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_xdist_scope_is_the_group():
    from conformance.results.naming import scheduling_scope as scope_of

    base = "conformance/test_conformance.py::"
    assert scope_of(base + "test_identity[dL/dx.chain-row-float16-large_logits]") == \
        scope_of(base + "test_forward[yhat-row-float16-large_logits]") == "gradconform:row:float16:large_logits"
    assert scope_of(base + "test_spec_identity[dL/dx-column]") == "gradconform-spec:dL/dx-column"
    assert scope_of("tests/test_x.py::test_y") is None
