"""The cases drawn ahead in a second process (conformance.cases.prefetch) are those the run would draw itself."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conformance.cases.generate import generate_cases
import conformance.run.supply as supply_module
from conformance.cases.prefetch import CasePrefetcher, _parse
from conformance.run.phases import NO_TIMING
from conformance.run.supply import CaseSupply, RunCache
from conformance.spec import load_spec



@pytest.fixture
def helper_wanted(monkeypatch):
    """A supply starts its helper only where a core is spare (not under ``pytest -n 2``): here it always does."""
    monkeypatch.setattr(supply_module, "_helper_wanted", lambda: True)


@pytest.fixture(scope="module")
def spec():
    return load_spec(None).without_wide()


def _cells(spec, n=None):
    cells = [(lay, dt, reg, None) for lay in spec.layouts for dt in ("float64", "float16", "bfloat16")
             for reg in spec.regimes]
    return cells[:n] if n else cells


def _same(a, b):
    assert [c.id for c in a] == [c.id for c in b]
    for x, y in zip(a, b):
        assert (x.family, x.sizes, x.magnitude) == (y.family, y.sizes, y.magnitude)
        assert x.inputs.keys() == y.inputs.keys()
        for k in x.inputs:
            assert x.inputs[k].dtype == y.inputs[k].dtype
            assert x.inputs[k].tobytes() == y.inputs[k].tobytes()  # bit for bit, signs of zeros included


def test_the_helper_draws_the_very_cases_of_the_run(spec):
    cells = _cells(spec, 8)
    helper = CasePrefetcher.start(spec, 20161104, cells)
    assert helper is not None
    try:
        for cell in cells:
            got = helper.take(cell)
            assert got is not None, cell
            _same(got, generate_cases(spec, *cell[:3], seed=20161104))
    finally:
        helper.close()


def test_another_seed_and_examples_are_passed_on(spec):
    cell = _cells(spec, 1)[0][:3] + (1,)
    helper = CasePrefetcher.start(spec, 7, [cell])
    assert helper is not None
    try:
        assert helper.take(cell[:3] + (None,)) is None  # another number of examples: not drawn
        _same(helper.take(cell), generate_cases(spec, *cell[:3], seed=7, examples=1))
    finally:
        helper.close()


def test_a_spec_changed_in_memory_gets_no_helper(spec):
    regime = next(iter(spec.regimes))
    changed = replace(spec, regimes={regime: replace(spec.regimes[regime], examples=spec.regimes[regime].examples + 1)})
    assert CasePrefetcher.start(changed, 20161104, [(next(iter(spec.layouts)), "float64", regime, None)]) is None
    assert CasePrefetcher.start(replace(spec, source=""), 20161104, _cells(spec, 2)) is None


def test_a_cell_not_asked_for_or_a_dead_helper_gives_none(spec):
    cells = _cells(spec, 3)
    helper = CasePrefetcher.start(spec, 20161104, cells[1:])
    assert helper is not None
    assert helper.take(cells[0]) is None  # not planned: the run draws it
    helper.close()  # killed before (or after) drawing the rest
    for cell in cells[1:]:
        got = helper.take(cell)
        assert got is None or [c.id for c in got] == [c.id for c in generate_cases(spec, *cell[:3])]


def test_a_line_whose_case_does_not_match_its_id_is_refused(spec):
    cell = _cells(spec, 1)[0]
    case = generate_cases(spec, *cell[:3])[0]
    good = json.dumps({"cell": list(cell), "cases": [case.to_json()]}).encode()
    got_cell, got_cases = _parse(good)
    assert got_cell == cell and [c.id for c in got_cases] == [case.id]
    bad = case.to_json()
    name = next(iter(bad["inputs"]))
    bad["inputs"][name]["hex"][0] = float.hex(float.fromhex(bad["inputs"][name]["hex"][0]) + 1.0)
    assert _parse(json.dumps({"cell": list(cell), "cases": [bad]}).encode()) == (cell, None)
    other = dict(case.to_json(), dtype="float32" if cell[1] != "float32" else "float64")
    assert _parse(json.dumps({"cell": list(cell), "cases": [other]}).encode()) == (cell, None)
    assert _parse(json.dumps({"cell": list(cell), "error": "boom"}).encode()) == (cell, None)
    assert _parse(b"not json") == (None, None)
    assert _parse(json.dumps({"cell": [1, 2, 3, None]}).encode()) == (None, None)
    assert _parse(json.dumps({"cell": list(cell[:3]) + ["2"]}).encode()) == (None, None)


def test_a_supply_told_of_its_cells_hands_out_the_same_cases(spec, helper_wanted):
    cells = _cells(spec, 6)
    ahead = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
    ahead.prefetch(cells)
    assert ahead._prefetcher is not None
    try:
        here = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
        for cell in cells:
            _same(ahead.cases(*cell[:3]), here.cases(*cell[:3]))
    finally:
        ahead.close()


def test_cases_drawn_ahead_are_kept_in_the_case_cache(spec, tmp_path, helper_wanted):
    from conformance.cache.case_cache import CaseCache

    cells = _cells(spec, 5)
    ahead = CaseSupply(spec, 20161104, None, RunCache(), CaseCache(tmp_path), NO_TIMING)
    ahead.prefetch(cells)
    try:
        drawn = {cell: ahead.cases(*cell[:3]) for cell in cells}
    finally:
        ahead.close()
    stored = CaseCache(tmp_path)
    for cell, cases in drawn.items():
        _same(stored.get(spec.sha256, *cell[:3], 20161104, None), cases)


def test_a_helper_that_would_import_another_copy_of_the_package_draws_nothing(spec):
    import subprocess
    import sys

    request = {"package": "/nowhere", "spec": spec.source, "path": spec.path, "seed": 1, "cells": [list(_cells(spec, 1)[0])]}
    done = subprocess.run([sys.executable, "-m", "conformance.cases.prefetch"], input=json.dumps(request).encode(),
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stdout == b""


def test_no_helper_without_a_spare_core_or_in_an_xdist_worker(spec, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(supply_module, "spare_cores", lambda: 0)
    busy = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
    busy.prefetch(_cells(spec, 6))
    assert busy._prefetcher is None
    monkeypatch.setattr(supply_module, "spare_cores", lambda: 1)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    worker = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
    worker.prefetch(_cells(spec, 6))
    assert worker._prefetcher is None
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    few = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
    few.prefetch(_cells(spec, CaseSupply.PREFETCH_MIN_CELLS - 1))
    assert few._prefetcher is None
    idle = CaseSupply(spec, 20161104, None, RunCache(), None, NO_TIMING)
    idle.prefetch(_cells(spec, 6))
    try:
        assert idle._prefetcher is not None
    finally:
        idle.close()
