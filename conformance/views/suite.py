"""The suite's tests without pytest: what tests there are (:func:`plan`) and what each one concludes (:class:`Checker`).

The pytest plugin (conformance.views.pytest_plugin) and the Python API (conformance.views.api) are both views of
this module: they enumerate the same :class:`SuiteItem` list and get the same :class:`Outcome` for each, so a
check is written once. Test names are the spec's (conformance.results.naming):

* ``test_forward[yhat-row-float32-benign]``: a forward value;
* ``test_identity[dL/dx-row-float32-large_logits]``: an identity's value, judged against the oracle;
* ``test_spec_identity[dL/dx-row]``: the identity itself against the derivative of the forward definitions;
* ``test_negative_identity[dL/dx.W1_not_transposed-row]``: a known-wrong formula, which must be refuted;
* ``test_metamorphic[shift-row-float32]``: a relation between two results of the backend;
* ``test_spec_lint``: the spec's static checks.

A quantity test passes when every case of its group passes; a dtype or quantity the backend declines is
``not_supported`` (never a pass); anything else fails with the worst case, the minimal counterexample hypothesis
finds and the command that reruns the test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample

from conformance.cases.generate import DEFAULT_SEED, Case, case_strategy, cell_seed, deterministic_generation
from conformance.checks.lint import lint_spec
from conformance.checks.metamorphic import PROPERTIES, applicable_properties, base_cells, check_property
from conformance.checks.negative import refute
from conformance.results.document import Record
from conformance.results.naming import (TEST_MODULE, metamorphic_param, negative_param, node_id, pytest_command, quantity_param,
                                        quantity_test_function, spec_identity_param)
from conformance.run.collector import CounterexampleRecord
from conformance.run.run import Run
from conformance.formats import DTYPES
from conformance.spec.model import Spec
from conformance.spec.predicates import identity_applies_to_regime
from conformance.statuses import FAIL, NOT_SUPPORTED, PASS, TEST_FAILED, TEST_NOT_SUPPORTED, TEST_PASSED

__all__ = ["SuiteItem", "Outcome", "Checker", "plan", "cells_of", "KINDS", "SUITE_FILE"]

#: the suite's test module, as installed (``pytest --pyargs conformance`` collects it)
SUITE_FILE = Path(__file__).resolve().parent.parent / "test_conformance.py"

#: test function -> the name of its parameter (the pytest fixture the plugin parametrises)
KINDS: dict[str, str] = {
    "test_forward": "forward_item",
    "test_identity": "identity_item",
    "test_spec_identity": "spec_identity_item",
    "test_negative_identity": "negative_item",
    "test_metamorphic": "metamorphic_item",
    "test_spec_lint": "",
}


@dataclass(frozen=True)
class SuiteItem:
    """One test of the suite: its function, its parameter's id (empty for ``test_spec_lint``) and value."""

    function: str
    param: str
    value: Any

    @property
    def node_id(self) -> str:
        return node_id(self.function, self.param) if self.param else f"{TEST_MODULE}::{self.function}"


@dataclass(frozen=True)
class Outcome:
    """What a test concluded: ``passed``, ``failed`` or ``not_supported``, and why (empty when it passed)."""

    status: str
    message: str = ""


def plan(spec: Spec) -> list[SuiteItem]:
    """Every test of the suite for ``spec``, in the order pytest collects them."""
    dtypes = [d for d in DTYPES if d in spec.tolerance.accumulate]
    items: list[SuiteItem] = []
    for lname, lay in spec.layouts.items():
        for d in lay.forward:
            for dtype in dtypes:
                for regime in spec.regimes:
                    items.append(SuiteItem("test_forward", quantity_param(d.name, lname, dtype, regime),
                                           (d.name, lname, dtype, regime)))
    for lname, lay in spec.layouts.items():
        for ident in lay.identities:
            for dtype in dtypes:
                for regime in spec.regimes:
                    if identity_applies_to_regime(spec, ident, regime):
                        items.append(SuiteItem("test_identity", quantity_param(ident.id, lname, dtype, regime),
                                               (ident.id, lname, dtype, regime)))
    for lname, lay in spec.layouts.items():
        for ident in lay.identities:
            items.append(SuiteItem("test_spec_identity", spec_identity_param(ident.id, lname), (ident.id, lname)))
    for index, neg in enumerate(spec.negative_identities):
        items.append(SuiteItem("test_negative_identity", negative_param(neg.id, neg.layout), index))
    for prop, lname in applicable_properties(spec):
        for dtype in dtypes:
            items.append(SuiteItem("test_metamorphic", metamorphic_param(prop, lname, dtype), (prop, lname, dtype)))
    items.append(SuiteItem("test_spec_lint", "", None))
    return items


def cells_of(items: Iterable[SuiteItem], spec: Spec,
             examples: int | None) -> list[tuple[str, str, str, int | None]]:
    """The (layout, dtype, regime, examples) cells whose cases ``items`` use, in the order they first need them
    (the quantity tests' groups, then the metamorphic tests' bases): what :meth:`Run.prefetch` is told, so that
    they are drawn ahead. ``examples``: the run's."""
    cells: dict[tuple[str, str, str, int | None], None] = {}
    for item in items:
        if item.function in ("test_forward", "test_identity"):
            _, layout, dtype, regime = item.value
            cells.setdefault((layout, dtype, regime, examples), None)
    for item in items:
        if item.function == "test_metamorphic":
            prop, layout, dtype = item.value
            for cell in base_cells(spec, prop, layout, dtype, examples):
                cells.setdefault(cell, None)
    return list(cells)


class Checker:
    """What each test does, on one :class:`Run`. ``counterexamples``: how many failing tests get a shrunk
    minimal counterexample; ``spec_path``: the spec file as the user gave it (for rerun commands)."""

    def __init__(self, run: Run, *, counterexamples: int = 12, spec_path: str | None = None) -> None:
        self.run = run
        self.spec: Spec = run.spec
        self.spec_path = spec_path
        self._budget = counterexamples

    def check(self, item: SuiteItem) -> Outcome:
        """The outcome of one test of the suite."""
        if item.function in ("test_forward", "test_identity"):
            return self.check_quantity(item.value)
        if item.function == "test_spec_identity":
            return self.check_spec_identity(item.value)
        if item.function == "test_negative_identity":
            return self.check_negative(item.value)
        if item.function == "test_metamorphic":
            return self.check_metamorphic(item.value)
        return self.check_lint()

    def check_quantity(self, item: tuple[str, str, str, str]) -> Outcome:
        """Every case of the group computed (a declined dtype gives ``not_supported`` records, so that the
        results count what the backend did not do)."""
        qid, layout, dtype, regime = item
        group = self.run.group(layout, dtype, regime)
        records = group.for_quantity(qid)
        if not records:
            return Outcome(TEST_FAILED, f"{qid} [{layout}, {dtype}, {regime}]: no generated case is one the identity "
                                        "applies to (a spec or generator problem: nothing was checked)")
        bad = [r for r in records if r.status not in (PASS, NOT_SUPPORTED)]
        unsupported = [r for r in records if r.status == NOT_SUPPORTED]
        if not bad and not unsupported:
            return Outcome(TEST_PASSED)
        if not bad:
            return Outcome(TEST_NOT_SUPPORTED, f"not supported on {len(unsupported)} of {len(records)} cases: "
                                               f"{unsupported[0].message}")
        return Outcome(TEST_FAILED, self._failure_message(qid, layout, dtype, regime, records, bad, group.cases))

    def _failure_message(self, qid: str, layout: str, dtype: str, regime: str, records: list[Record],
                         bad: list[Record], cases: list[Case]) -> str:
        by_status: dict[str, int] = {}
        for r in bad:
            key = r.status + (f" ({r.detail})" if r.detail else "")
            by_status[key] = by_status.get(key, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
        worst = max(bad, key=lambda r: (r.status == FAIL, _finite(r.max_ratio)))
        case = next(c for c in cases if c.id == worst.case)
        lines = [
            f"{qid} [{layout}, {dtype}, regime {regime}]: {len(bad)} of {len(records)} cases do not conform: {counts}",
            f"worst: case {worst.case} (family {worst.family}"
            + (f", magnitude {worst.magnitude:g}" if worst.magnitude is not None else "") + f"): {worst.message.strip()}",
        ]
        if worst.max_ulp is not None and worst.status == FAIL:
            lines.append(f"  error {worst.max_abs_err:.3g} (relative {worst.max_rel_err:.3g}, {worst.max_ulp:.0f} ulp); "
                         f"bound {worst.worst_bound:.3g}; ratio to allowed {worst.max_ratio:.3g}")
        if worst.diagnosis:
            kinds: dict[str, int] = {}
            for r in bad:
                if r.diagnosis:
                    kinds[r.diagnosis["class"]] = kinds.get(r.diagnosis["class"], 0) + 1
            tally = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            lines.append(f"  diagnosis: {worst.diagnosis['class']}: {worst.diagnosis['message']}"
                         + (f" (over the failing cases: {tally})" if len(kinds) > 1 or len(bad) > 1 else ""))
        lines.append(f"  inputs: {_inputs_text(case)}")
        minimal = self._counterexample(qid, layout, dtype, regime, worst)
        if minimal is not None:
            lines.append(f"minimal counterexample (hypothesis shrinking): case {minimal.id}: {_inputs_text(minimal)}")
        lines.append(f"rerun: {self.rerun_command(qid, layout, dtype, regime)}")
        return "\n".join(lines)

    def rerun_command(self, qid: str, layout: str, dtype: str, regime: str) -> str:
        """The command that reruns exactly this test: its node id (``-k`` would match substrings:
        ``L-row-...`` also selects ``dL/dtheta.general-row-...``)."""
        kind = "value" if any(d.name == qid for d in self.spec.layouts[layout].forward) else "identity"
        node = node_id(quantity_test_function(kind), quantity_param(qid, layout, dtype, regime))
        run = self.run
        return pytest_command(node, run.ref.target if run.ref.source == "module:attr" else run.ref.name,
                              seed=run.seed if run.seed != DEFAULT_SEED else None, examples=run.examples,
                              spec=self.spec_path or None, wide=self.spec.is_wide(regime))

    def _counterexample(self, qid: str, layout: str, dtype: str, regime: str, worst: Record) -> Case | None:
        if self._budget <= 0 or worst.status != FAIL:
            return None
        self._budget -= 1
        strategy = case_strategy(self.spec, layout, dtype, regime, worst.family, worst.magnitude)
        detail = worst.detail

        def fails(case: Case) -> bool:
            recs, _ = self.run.evaluate_case(case, only=[qid], diagnose=False)
            return any(r.quantity == qid and r.status == FAIL and r.detail == detail for r in recs)

        try:
            with deterministic_generation():
                found = find(strategy, fails,
                             settings=settings(max_examples=60, database=None, deadline=None,
                                               phases=[Phase.generate, Phase.shrink],
                                               suppress_health_check=list(HealthCheck)),
                             random=random.Random(cell_seed(self.run.seed, "shrink", qid, layout, dtype, regime)))
        except NoSuchExample:
            return None
        recs, _ = self.run.evaluate_case(found, only=[qid])
        self.run.record(CounterexampleRecord(qid, layout, dtype, regime, found, tuple(recs),
                                             self.rerun_command(qid, layout, dtype, regime)))
        return found

    def check_spec_identity(self, item: tuple[str, str]) -> Outcome:
        identity, layout = item
        verifs = self.run.verifications(layout, identity)
        if not verifs:
            return Outcome(TEST_FAILED, f"{identity} [{layout}]: no case of any regime satisfies the identity's conditions")
        bad = [v for v in verifs if v["verdict"] != "holds"]
        if not bad:
            return Outcome(TEST_PASSED)
        v = bad[0]
        case = Case.from_json(v["case"])
        return Outcome(TEST_FAILED,
                       f"the spec's identity {identity} [{layout}] is {v['verdict']} on {len(bad)} of {len(verifs)} "
                       f"cases: {v['reason']}; identity {v.get('identity_value')!r} vs derivative "
                       f"{v.get('derivative_value')!r}\n  inputs: {_inputs_text(case)}")

    def check_negative(self, index: int) -> Outcome:
        neg = self.spec.negative_identities[index]
        refutation = refute(self.spec, neg, seed=self.run.seed, cache=self.run.oracle_cache, engine=self.run.engine,
                            cases=lambda layout, regime, n: self.run.cases(layout, "float64", regime, examples=n))
        self.run.record(refutation)
        if refutation.refuted:
            return Outcome(TEST_PASSED)
        return Outcome(TEST_FAILED, "the harness could not refute a known-wrong formula of the spec (so its checks "
                                    "could not catch this mistake either):\n" + refutation.render())

    def check_metamorphic(self, item: tuple[str, str, str]) -> Outcome:
        prop, layout, dtype = item
        result = check_property(self.run, prop, layout, dtype)
        self.run.record(result)
        if result.status == PASS:
            return Outcome(TEST_PASSED)
        if result.status == NOT_SUPPORTED:
            return Outcome(TEST_NOT_SUPPORTED, f"not supported: {result.message}")
        return Outcome(TEST_FAILED, f"metamorphic property {prop} [{layout}, {dtype}] ({PROPERTIES[prop]}): "
                                    f"{result.status}: {result.message}")

    def check_lint(self) -> Outcome:
        report = lint_spec(self.spec)
        return Outcome(TEST_PASSED) if report.ok else Outcome(TEST_FAILED, report.render())


def _finite(x: Any) -> float:
    try:
        return float(x) if x is not None else 0.0
    except (TypeError, ValueError):
        return float("inf")


def _inputs_text(case: Case) -> str:
    parts = []
    for k, v in case.inputs.items():
        flat = v.astype(float).reshape(-1).tolist()
        parts.append(f"{k}={[float(f'{x:.6g}') for x in flat]}")
    return "; ".join(parts)
