"""Negative identities: known-wrong formulas kept in the spec, each of which the harness must refute.

Like a conformance suite's negative tests, they prove the checks have teeth:
if the oracle could not refute ``dL/dx = ... @ W1`` (W1 for W1.T), or the
diagonal-only softmax Jacobian, nothing it says about a correct formula would
mean much. A negative identity is refuted in every shape family where its
claimed identity is tested (``families`` in the spec narrows this, e.g. the
batch families for a mean-instead-of-sum bias gradient, which is right for a
batch of one):

* **by shape** where it is not conformable, or conformable with another shape
  than the derivative's (a backend computing it fails there);
* **by value** elsewhere: a case of its regime on which the certified interval
  of the formula and that of the dual-number derivative of the forward
  definitions are disjoint, at one component. In the counterexample of the first such
  family every entry the refutation does not need is set to 0
  (conformance.cases.minimize), so it is small enough to check by hand.

A family where no case of the regime refutes it is reported ``not_refuted``,
and the suite fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from conformance.cache.oracle_cache import cached_verify_identity
from conformance.oracle import evaluate as oracle
from conformance.cases.generate import DEFAULT_SEED, Case, case_id, case_strategy, cell_seed, generate_cases
from conformance.cases.minimize import zero_unneeded
from conformance.errors import GradconformError
from conformance.spec.shapes import concrete, concrete_shapes, substitute, try_shape
from conformance.spec.model import DIRECTION_ROLES, NegativeIdentity, ShapeFamily, Spec
from conformance.spec.predicates import identity_applies_to_regime, pins_hold_in_some_family

__all__ = ["FamilyOutcome", "Refutation", "default_regime", "families_for", "refute", "shrink_counterexample"]

REFUTED_BY_SHAPE = "refuted_by_shape"
REFUTED_BY_VALUE = "refuted_by_value"
NOT_REFUTED = "not_refuted"
ERROR = "error"


@dataclass(frozen=True)
class FamilyOutcome:
    family: str
    verdict: str  # refuted_by_shape | refuted_by_value | not_refuted | error
    reason: str
    case: Case | None = None
    component: tuple[int, ...] | None = None
    claimed_value: float | None = None
    derivative_value: float | None = None
    cases_tried: int = 0

    @property
    def refuted(self) -> bool:
        return self.verdict in (REFUTED_BY_SHAPE, REFUTED_BY_VALUE)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "verdict": self.verdict, "reason": self.reason,
                "case": self.case.to_json() if self.case is not None else None,
                "component": list(self.component) if self.component is not None else None,
                "claimed_value": self.claimed_value, "derivative_value": self.derivative_value,
                "cases_tried": self.cases_tried}


@dataclass(frozen=True)
class Refutation:
    """The outcome of trying to refute one negative identity; a results-file record (``refutations``)."""

    section: ClassVar[str] = "refutations"

    negative: NegativeIdentity
    regime: str
    outcomes: tuple[FamilyOutcome, ...]

    @property
    def refuted(self) -> bool:
        """Refuted in every family where it is claimed (and there is at least one)."""
        return bool(self.outcomes) and all(o.refuted for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        n = self.negative
        return {"kind": "negative_identity", "identity": n.id, "layout": n.layout, "claims": n.claims,
                "expr": n.text, "mistake": n.mistake, "regime": self.regime,
                "verdict": "refuted" if self.refuted else "not_refuted",
                "outcomes": [o.to_json() for o in self.outcomes]}

    def render(self) -> str:
        n = self.negative
        lines = [f"negative identity {n.id} [{n.layout}] claims {n.claims} = {n.text}",
                 f"  the mistake: {n.mistake}"]
        for o in self.outcomes:
            lines.append(f"  family {o.family}: {o.verdict.replace('_', ' ')}: {o.reason}")
            if o.case is not None:
                lines.append(f"    counterexample {o.case.id}: " + "; ".join(
                    f"{k}={_short(v)}" for k, v in o.case.inputs.items()))
        return "\n".join(lines)


def _short(v: Any) -> str:
    return "[" + ", ".join(f"{float(x):.6g}" for x in v.astype(float).reshape(-1)) + "]"


def default_regime(spec: Spec, neg: NegativeIdentity) -> str:
    """The regime named by the negative identity, else the first one in which its claimed identity is tested."""
    if neg.regime is not None:
        return neg.regime
    claimed = spec.layouts[neg.layout].identity(neg.claims)
    applies = pins_hold_in_some_family if neg.ignore_requires else identity_applies_to_regime
    for name in spec.regimes:
        if applies(spec, claimed, name):
            return name
    return next(iter(spec.regimes))


def families_for(spec: Spec, neg: NegativeIdentity) -> tuple[ShapeFamily, ...]:
    """The families where the negative identity must be refuted: those of its regime (or its own list) in which
    the claimed identity is tested (its ``when`` pins)."""
    claimed = spec.layouts[neg.layout].identity(neg.claims)
    regime = spec.regimes[default_regime(spec, neg)]
    names = neg.families or tuple(f.name for f in spec.families_for(regime))
    return tuple(spec.families[n] for n in names
                 if all(spec.families[n].sizes.get(d) == v for d, v in claimed.when.items()))


def refute(spec: Spec, neg: NegativeIdentity, *, seed: int = DEFAULT_SEED, examples: int = 3,
           shrink: bool = True, cache: Any = None, engine: Any = None,
           cases: Callable[[str, str, int], list[Case]] | None = None) -> Refutation:
    """Try to refute ``neg`` in each of its families (see the module docstring). ``cache``: an on-disk
    oracle cache (conformance.cache.oracle_cache.OracleCache) for the verifications, shrinking included;
    ``engine``: the oracle engine they compute in (default: the oracle's default); ``cases``: where the
    float64 cases come from, ``cases(layout, regime, examples)`` (a run's supply, which generates the cases of
    a regime once for all its negative identities; default: generated here, with ``seed``)."""
    layout = spec.layouts[neg.layout]
    claimed = layout.identity(neg.claims)
    regime = default_regime(spec, neg)
    pinned = {k: substitute(s, claimed.when) for k, s in layout.value_shapes.items()}
    cases_by_family: dict[str, list[Case]] = {}
    outcomes: list[FamilyOutcome] = []
    for fam in families_for(spec, neg):
        expected = concrete(claimed.shape, fam.sizes)
        got = try_shape(neg.expr, concrete_shapes(pinned, fam.sizes))
        if got is None:
            outcomes.append(FamilyOutcome(fam.name, REFUTED_BY_SHAPE, "not conformable with "
                                          + ", ".join(f"{k} = {v}" for k, v in fam.sizes.items())))
            continue
        if got != expected:
            outcomes.append(FamilyOutcome(fam.name, REFUTED_BY_SHAPE,
                                          f"its shape is {got[0]} x {got[1]}, the derivative's {expected[0]} x {expected[1]}"))
            continue
        if not cases_by_family:
            drawn = cases(layout.name, regime, examples) if cases is not None else \
                generate_cases(spec, layout.name, "float64", regime, seed=seed, examples=examples)
            for c in drawn:
                cases_by_family.setdefault(c.family, []).append(c)
        # one shrunk counterexample is enough to read by hand; the other families keep the first refuting case
        first = shrink and not any(o.verdict == REFUTED_BY_VALUE for o in outcomes)
        outcomes.append(_refute_by_value(spec, neg, fam, cases_by_family.get(fam.name, []), regime, first,
                                         cache, engine))
    return Refutation(neg, regime, tuple(outcomes))


def _verify(spec: Spec, neg: NegativeIdentity, case: Case, cache: Any = None,
            engine: Any = None) -> oracle.Verification:
    layout = spec.layouts[neg.layout]
    return cached_verify_identity(layout, layout.identity(neg.claims), case.inputs, case.sizes, expr=neg.expr,
                                  ignore_requires=neg.ignore_requires, cache=cache, engine=engine)


def _refute_by_value(spec: Spec, neg: NegativeIdentity, fam: ShapeFamily, cases: list[Case], regime: str,
                     shrink: bool, cache: Any = None, engine: Any = None) -> FamilyOutcome:
    tried = 0
    for case in cases:
        try:
            v = _verify(spec, neg, case, cache, engine)
        except (GradconformError, ArithmeticError) as exc:
            return FamilyOutcome(fam.name, ERROR, f"the oracle failed: {exc}", case, cases_tried=tried + 1)
        if v.verdict == "not_applicable":
            continue
        tried += 1
        if v.verdict == "refuted":
            if shrink:
                case = _shrink(spec, neg, case, cache, engine)
                v = _verify(spec, neg, case, cache, engine)
            return FamilyOutcome(fam.name, REFUTED_BY_VALUE,
                                 f"at component {v.worst_index}: the formula gives {v.identity_value:.17g}, the "
                                 f"derivative is {v.derivative_value:.17g} (certified intervals, disjoint)",
                                 case, v.worst_index, v.identity_value, v.derivative_value, tried)
    return FamilyOutcome(fam.name, NOT_REFUTED,
                         f"it agrees with the derivative on all {tried} case(s) of regime {regime} tried"
                         if tried else f"no case of regime {regime} satisfies the claimed identity's conditions",
                         cases_tried=tried)


def _shrink(spec: Spec, neg: NegativeIdentity, found: Case, cache: Any = None, engine: Any = None) -> Case:
    """The found refuting case with every entry the refutation does not need set to 0
    (conformance.cases.minimize: one verification per entry). Labels and directions stay as drawn."""
    layout = spec.layouts[neg.layout]
    identity = layout.identity(neg.claims)
    names = [n for n, info in spec.inputs.items() if info.get("role") not in {"label", *DIRECTION_ROLES}]
    inputs = zero_unneeded(found.inputs, lambda trial: _refutes(layout, identity, neg.expr, trial, found.sizes,
                                                                neg.ignore_requires, cache, engine), names)
    return replace(found, id=case_id(found.layout, found.dtype, found.regime, found.family, found.magnitude, inputs),
                   inputs=inputs)


def _refutes(layout: Any, identity: Any, expr: Any, inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int],
             ignore_requires: bool, cache: Any, engine: Any) -> bool:
    """Whether the oracle refutes ``expr``, claimed for ``identity``, on ``inputs`` (a case it cannot evaluate
    refutes nothing)."""
    try:
        return cached_verify_identity(layout, identity, inputs, sizes, expr=expr, ignore_requires=ignore_requires,
                                      cache=cache, engine=engine).verdict == "refuted"
    except (GradconformError, ArithmeticError):
        return False


def shrink_counterexample(spec: Spec, layout: str, identity: Any, expr: Any, *, regime: str, family: str,
                          magnitude: float | None, seed: int, ignore_requires: bool = False,
                          max_examples: int = 40, cache: Any = None, engine: Any = None) -> Case | None:
    """The simplest case of a (regime, family, magnitude) cell on which ``expr``, claimed for ``identity``, is
    refuted by the oracle: hypothesis generates, then shrinks toward zeros and first positions. None if no
    case of the cell refutes it within the budget."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    lay = spec.layouts[layout]
    strategy = case_strategy(spec, layout, "float64", regime, family, magnitude)

    try:
        return find(strategy, lambda case: _refutes(lay, identity, expr, case.inputs, case.sizes, ignore_requires,
                                                    cache, engine),
                    settings=settings(max_examples=max_examples, database=None, deadline=None,
                                      phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck)),
                    random=random.Random(cell_seed(seed, family)))
    except NoSuchExample:
        return None
