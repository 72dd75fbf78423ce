"""``gradconform check`` (conformance.check): is a gradient derived by hand conformable, and is it right?

For people learning backprop (and anyone deriving a backward pass on paper).
Write the candidate in the spec's math language, say what it is the
derivative of, and in which layout::

    gradconform check '((yhat - y) @ W2.T) * (h - h*h) @ W1' --wrt x --layout row

The answer has three parts:

1. **Shapes**, over the named dimensions (so a missing transpose is an error
   even when sizes happen to agree): every sub-expression with its shape, and
   for a non-conformable product the two shapes and the single edit that
   fixes it ("did you mean W1.T?"), itself checked against the oracle.
2. **Value**, against the oracle: the candidate and the dual-number derivative
   of the spec's forward definitions, both in certified interval arithmetic,
   on generic inputs in every shape family where the candidate's shapes fit.
   Disjoint intervals refute it; the counterexample reported is shrunk by
   hypothesis to the simplest inputs that still refute it.
3. **Diagnosis** of a wrong candidate: transposed, the other layout, a sign, a
   constant factor, a missing term (:mod:`conformance.judge.diagnose`).

Also from Python: ``conformance.check('...', wrt='x', layout='row')`` returns a
:class:`CheckResult`. Options are keyword-only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from conformance.errors import GradconformError, ShapeError, SpecError
from conformance.expr import Expr, to_text
from conformance.spec.shapes import (Shape, concrete, concrete_shapes, format_shape, infer_all, substitute, suggest_fixes,
                     try_shape, vector_length)
from conformance.spec import Identity, Layout, Spec, load_spec
from conformance.cases.generic import generic_inputs
from conformance.checks.negative import shrink_counterexample
from conformance.judge.diagnose import CaseDiagnoser
from conformance.judge.diagnose import _exact_tolerance
from conformance.oracle import evaluate as oracle
from conformance.oracle.arith import iv_mid_float
from conformance.oracle.ivalues import IntervalEnv, precision
from conformance.spec.model import DIRECTION_ROLE, DIRECTION_ROLES, ShapeFamily
from conformance.spec.parse import parse_expr

__all__ = ["check", "CheckResult", "CheckError", "add_check_arguments", "main_check"]

CORRECT = "correct"
WRONG = "wrong"
NOT_CONFORMABLE = "not_conformable"
WRONG_SHAPE = "wrong_shape"


class CheckError(GradconformError, ValueError):
    """A question ``check`` cannot answer as asked (an unknown layout or name, syntax outside the language)."""


@dataclass(frozen=True)
class Counterexample:
    family: str
    inputs: Mapping[str, list[list[float]]]
    component: tuple[int, ...]
    candidate: float
    expected: float

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "inputs": dict(self.inputs), "component": list(self.component),
                "candidate": self.candidate, "expected": self.expected}


@dataclass(frozen=True)
class FixCheck:
    """A suggested edit and what the oracle says about the edited formula."""

    description: str
    formula: str
    verdict: str  # correct | wrong
    cases: int


@dataclass(frozen=True)
class CheckResult:
    expr: str
    layout: str
    quantity: str
    kind: str
    expected_shape: str
    verdict: str  # correct | wrong | not_conformable | wrong_shape
    conformable: bool
    shape: str | None
    trace: tuple[tuple[str, str], ...]
    shape_error: str | None = None
    fixes: tuple[FixCheck, ...] = ()
    cases: int = 0
    families: tuple[str, ...] = ()
    counterexample: Counterexample | None = None
    diagnosis: Mapping[str, Any] | None = None
    assumptions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    spec_identity: str | None = None

    @property
    def correct(self) -> bool:
        return self.verdict == CORRECT

    def to_json(self) -> dict[str, Any]:
        return {"expr": self.expr, "layout": self.layout, "quantity": self.quantity, "kind": self.kind,
                "expected_shape": self.expected_shape, "verdict": self.verdict, "conformable": self.conformable,
                "shape": self.shape, "trace": [list(t) for t in self.trace], "shape_error": self.shape_error,
                "fixes": [f.__dict__ for f in self.fixes], "cases": self.cases, "families": list(self.families),
                "counterexample": self.counterexample.to_json() if self.counterexample else None,
                "diagnosis": dict(self.diagnosis) if self.diagnosis else None,
                "assumptions": list(self.assumptions), "notes": list(self.notes), "spec_identity": self.spec_identity}

    def render(self) -> str:
        out = [f"candidate for {self.quantity} ({self.kind}, {self.layout} layout; expected shape "
               f"{self.expected_shape}):", f"  {self.expr}"]
        for a in self.assumptions:
            out.append(f"  assuming {a}")
        out.append("")
        out.append("shapes, over the named dimensions:")
        width = max([len(s) for _, s in self.trace] + [5])
        for text, shp in self.trace:
            out.append(f"  {shp:>{width}s}  {text}")
        if self.shape_error:
            out.append(f"  NOT CONFORMABLE: {self.shape_error}")
        elif self.shape is not None:
            tail = "" if self.verdict != WRONG_SHAPE else f"  (but {self.quantity} is {self.expected_shape})"
            out.append(f"  conformable: {self.shape}{tail}")
        for f in self.fixes:
            out.append(f"  did you mean {f.description}?  {f.formula}")
            out.append(f"    -> with that edit the formula is {f.verdict.upper()} "
                       f"(checked against the oracle on {f.cases} cases)")
        out.append("")
        if self.cases or self.counterexample:
            if self.counterexample is None:
                out.append(f"value: agrees with the derivative of the forward definitions on all {self.cases} cases "
                           f"(generic inputs; families {', '.join(self.families)}; certified interval arithmetic)")
            else:
                c = self.counterexample
                prefix = ("value, where the shapes happen to fit" if self.verdict in (NOT_CONFORMABLE, WRONG_SHAPE)
                          else "value")
                out.append(f"{prefix}: WRONG. Counterexample (family {c.family}, shrunk to the simplest inputs that "
                           "still refute it):")
                for k, v in c.inputs.items():
                    out.append(f"  {k} = {_fmt_matrix(v)}")
                out.append(f"  component {list(c.component)}: the candidate gives {c.candidate:.17g}, "
                           f"the derivative is {c.expected:.17g}")
        if self.diagnosis:
            out.append(f"diagnosis: {self.diagnosis['class']}: {self.diagnosis['message']}")
        for n in self.notes:
            out.append(f"note: {n}")
        if self.spec_identity:
            out.append(f"the spec's identity: {self.spec_identity}")
        out.append(f"verdict: {self.verdict.replace('_', ' ').upper()}")
        return "\n".join(out)


def _fmt_matrix(rows: list[list[float]]) -> str:
    return "[" + "; ".join(" ".join(f"{x:.6g}" for x in r) for r in rows) + "]"


# --------------------------------------------------------------------------- the check

def check(expr: str, *, wrt: str, of: str | None = None, layout: str = "row", spec: str | Path | Spec | None = None,
          cases: int = 3, seed: int = 0, shrink: bool = True, kind: str | None = None,
          along: str | None = None) -> CheckResult:
    """Check a candidate closed form for d(of)/d(wrt) (``of`` defaults to the layout's loss).

    A gradient when ``of`` is a scalar, else a Jacobian in the layout's
    convention, for one sample. ``kind`` asks for a directional or second-order
    derivative instead: ``jvp`` / ``hvp`` along the tangent input ``along``,
    ``vjp`` with the cotangent input ``along``, ``hessian`` (of a scalar, for one
    sample). Raises :class:`CheckError` for a question that cannot be asked
    (unknown layout or name, syntax outside the language).
    """
    sp = spec if isinstance(spec, Spec) else load_spec(spec)
    sp = sp.without_wide()  # a formula is checked in the default families (the wide ones are slow)
    if layout not in sp.layouts:
        raise CheckError(f"unknown layout {layout!r}; this spec has: {', '.join(sp.layouts)}")
    lay = sp.layouts[layout]
    of = of or lay.loss
    for role, name in (("--of", of), ("--wrt", wrt)):
        if name not in lay.value_shapes:
            raise CheckError(f"{role} {name!r} is neither an input nor a forward value of the {layout} layout; "
                             f"known: {', '.join(lay.value_shapes)}")

    try:
        cand = parse_expr(expr, names=lay.value_shapes, key="candidate")
    except SpecError as exc:
        raise CheckError(exc.detail) from None
    if along is not None and kind not in DIRECTION_ROLE:
        raise CheckError(f"--along names the tangent or cotangent of a jvp, vjp or hvp; a "
                         f"{kind or 'gradient or Jacobian'} takes none: drop --along or give --kind jvp, vjp or hvp")
    ident, assumptions = _target(sp, lay, of, wrt) if kind in (None, "gradient", "jacobian") else \
        _higher_order_target(sp, lay, of, wrt, kind, along)
    if kind in ("gradient", "jacobian") and ident.kind != kind:  # the shapes decide; a contrary --kind is a mistake
        raise CheckError(f"--kind {kind}: d{of}/d{wrt} is a {ident.kind} ({of} is "
                         f"{format_shape(lay.value_shapes[of])}; a gradient is of a scalar, a Jacobian of a vector): "
                         f"give --kind {ident.kind} or leave --kind out")
    ref = next((i for i in lay.identities if i.quantity == ident.quantity and not i.when), None) or \
        next((i for i in lay.identities if i.quantity == ident.quantity), None)
    ref_text = f"{ref.id} = {to_text(ref.expr)}" if ref is not None else None
    pinned = {k: substitute(s, ident.when) for k, s in lay.value_shapes.items()}
    notes: list[str] = []
    try:
        shapes = infer_all(cand, pinned)
    except ShapeError as exc:
        shapes = None
        error = exc
        # a per-sample formula (Diag of a vector...) is conformable once the samples are pinned to one
        sample = _sample_dim(sp, lay)
        if sample and sample not in ident.when:
            when1 = dict(ident.when, **{sample: 1})
            pinned1 = {k: substitute(s, when1) for k, s in lay.value_shapes.items()}
            try:
                shapes = infer_all(cand, pinned1)
                ident = _with_when(ident, when1)
                pinned = pinned1
                notes.append(f"conformable only for a single sample ({sample} = 1), so it is checked with "
                             f"{sample} = 1")
                assumptions = assumptions + (f"{sample} = 1 (one sample)",)
            except ShapeError:
                shapes = None
    families = [f for f in sp.families.values() if all(f.sizes.get(d) == v for d, v in ident.when.items())]
    if not families:
        families = [_pinned_family(sp, ident.when)]
    if shapes is None:
        return _not_conformable(sp, lay, ident, cand, expr, error, pinned, families, assumptions, notes, ref_text,
                                cases, seed, shrink)
    shape = shapes[cand]
    trace = tuple((to_text(e), format_shape(s)) for e, s in shapes.items())
    base = dict(expr=expr, layout=layout, quantity=ident.id, kind=ident.kind, expected_shape=format_shape(ident.shape),
                conformable=True, shape=format_shape(shape), trace=trace, assumptions=assumptions,
                spec_identity=ref_text)
    if shape != ident.shape:
        fixes = _checked_fixes(sp, lay, ident, cand, pinned, families, cases, seed)
        diag = _diagnose_value(sp, lay, ident, cand, families, seed)
        return CheckResult(**base, verdict=WRONG_SHAPE, fixes=fixes, diagnosis=diag, notes=tuple(notes))
    n, fams, cex = _value_check(sp, lay, ident, cand, families, cases, seed, shrink)
    if n == 0:
        raise CheckError("no shape family of the spec can evaluate this candidate, so nothing was checked")
    if cex is None:
        return CheckResult(**base, verdict=CORRECT, cases=n, families=fams, notes=tuple(notes))
    first = [f for f in families if f.name == cex.family]
    diag = _diagnose_value(sp, lay, ident, cand, first + [f for f in families if f.name != cex.family], seed)
    return CheckResult(**base, verdict=WRONG, cases=n, families=fams, counterexample=cex, diagnosis=diag,
                       notes=tuple(notes))


def _target(spec: Spec, lay: Layout, of: str, wrt: str) -> tuple[Identity, tuple[str, ...]]:
    shapes = lay.value_shapes
    requires = tuple(lay.preconditions)
    assumptions = tuple(f"{p.description or p.name} ({p.name})" for p in lay.preconditions.values())
    if tuple(shapes[of]) == (1, 1):
        return Identity(id=f"d{of}/d{wrt}", layout=lay.name, kind="gradient", of=of, wrt=wrt, convention=None,
                        expr=None, text="", shape=tuple(shapes[wrt]), requires=requires), assumptions  # type: ignore[arg-type]
    sample = _sample_dim(spec, lay)
    when = {sample: 1} if sample else {}
    so, sw = substitute(shapes[of], when), substitute(shapes[wrt], when)
    lo, lw = vector_length(so), vector_length(sw)
    if lo is None or lw is None:
        raise CheckError(f"a Jacobian relates two vectors; {of} is {format_shape(so)} and {wrt} is "
                         f"{format_shape(sw)} even for one sample")
    conv = lay.jacobian_convention
    shape = (lo, lw) if conv == "numerator" else (lw, lo)
    assumptions = assumptions + (f"one sample ({sample} = 1); Jacobian in {conv} layout, the {lay.name} layout's "
                                 "convention",)
    return Identity(id=f"d{of}/d{wrt}", layout=lay.name, kind="jacobian", of=of, wrt=wrt, convention=conv,
                    expr=None, text="", shape=shape, requires=requires, when=when), assumptions  # type: ignore[arg-type]


def _higher_order_target(spec: Spec, lay: Layout, of: str, wrt: str, kind: str,
                         along: str | None) -> tuple[Identity, tuple[str, ...]]:
    """The derivative a ``jvp``, ``vjp``, ``hessian`` or ``hvp`` candidate claims (docs/backends.md, "Quantity
    kinds"); the same rules as the spec loader's."""
    shapes = lay.value_shapes
    requires = tuple(lay.preconditions)
    assumptions = tuple(f"{p.description or p.name} ({p.name})" for p in lay.preconditions.values())
    if kind not in ("jvp", "vjp", "hessian", "hvp"):
        raise CheckError(f"unknown --kind {kind!r}; known: gradient, jacobian, jvp, vjp, hessian, hvp")
    role = DIRECTION_ROLE.get(kind)
    if role is not None:
        choices = [n for n, info in spec.inputs.items() if info.get("role") == role
                   and tuple(lay.shapes[n]) == tuple(shapes[of if kind == "vjp" else wrt])]
        if along is None:
            raise CheckError(f"a {kind} needs --along, the {role} input it is taken along"
                             + (f" (here: {', '.join(choices)})" if choices else ""))
        if spec.inputs.get(along, {}).get("role") != role or along not in choices:
            raise CheckError(f"--along {along!r} is not a {role} input with the shape of "
                             f"{of if kind == 'vjp' else wrt}" + (f"; use one of: {', '.join(choices)}" if choices
                                                                  else f"; the spec declares none"))
        assumptions = assumptions + (f"{'cotangent' if kind == 'vjp' else 'tangent'} {along}",)
    if kind in ("hessian", "hvp") and tuple(shapes[of]) != (1, 1):
        raise CheckError(f"a {kind} is of a scalar; {of} is {format_shape(shapes[of])}")
    when: dict[str, int] = {}
    if kind == "hessian":
        sample = _sample_dim(spec, lay)
        when = {sample: 1} if sample else {}
        k = vector_length(substitute(shapes[wrt], when))
        if k is None:
            raise CheckError(f"a Hessian is taken with respect to a vector; {wrt} is "
                             f"{format_shape(substitute(shapes[wrt], when))} even for one sample")
        shape = (k, k)
        assumptions = assumptions + (f"one sample ({sample} = 1)",)
    else:
        shape = tuple(shapes[of] if kind == "jvp" else shapes[wrt])
    ident = Identity(id=f"d{of}/d{wrt}.{kind}", layout=lay.name, kind=kind, of=of, wrt=wrt, convention=None,
                     expr=None, text="", shape=shape, requires=requires, when=when,  # type: ignore[arg-type]
                     direction=along if role is not None else None)
    return ident, assumptions


def _with_when(ident: Identity, when: Mapping[str, int]) -> Identity:
    from dataclasses import replace

    return replace(ident, when=dict(when), shape=substitute(ident.shape, when))


def _sample_dim(spec: Spec, lay: Layout) -> str | None:
    data = [k for k, info in spec.inputs.items() if info.get("role") == "data"]
    if not data:
        return None
    d = lay.shapes[data[0]][lay.sample_axis]
    return d if isinstance(d, str) else None


def _pinned_family(spec: Spec, when: Mapping[str, int]) -> Any:

    first = next(iter(spec.families.values()))
    sizes = dict(first.sizes)
    sizes.update(when)
    return ShapeFamily(f"{first.name}+" + ",".join(f"{k}={v}" for k, v in when.items()), sizes)


def _verify_on(spec: Spec, lay: Layout, ident: Identity, cand: Expr, fam: Any, seed: int) -> Any:

    inputs = generic_inputs(spec, lay, fam, seed=seed)
    return inputs, oracle.verify_identity(lay, ident, inputs, fam.sizes, expr=cand)


def _value_check(spec: Spec, lay: Layout, ident: Identity, cand: Expr, families: Sequence[Any], cases: int, seed: int,
                 shrink: bool) -> tuple[int, tuple[str, ...], Counterexample | None]:
    """Check on ``cases`` generic draws per family where the candidate has the right shape; the first refutation
    becomes a (shrunk) counterexample."""
    pinned = {k: substitute(s, ident.when) for k, s in lay.value_shapes.items()}
    n = 0
    used: list[str] = []
    model_inputs = [s for k, s in lay.shapes.items() if spec.inputs[k].get("role") not in DIRECTION_ROLES]
    for fam in sorted(families, key=lambda f: sum(concrete(s, f.sizes)[0] * concrete(s, f.sizes)[1]
                                                  for s in model_inputs)):  # the smallest network first
        if try_shape(cand, concrete_shapes(pinned, fam.sizes)) != concrete(ident.shape, fam.sizes):
            continue
        used.append(fam.name)
        for k in range(cases):
            inputs, v = _verify_on(spec, lay, ident, cand, fam, seed + k)
            n += 1
            if v.verdict == "refuted":
                return n, tuple(used), _counterexample(spec, lay, ident, cand, fam, inputs, v, seed, shrink)
    return n, tuple(used), None


def _counterexample(spec: Spec, lay: Layout, ident: Identity, cand: Expr, fam: Any, inputs: Mapping[str, np.ndarray],
                    v: Any, seed: int, shrink: bool) -> Counterexample:

    if shrink and fam.name in spec.families:
        regime = next((n for n, r in spec.regimes.items() if not r.violates
                       and all(r.generator_for(i).kind in ("normal", "labels") for i in spec.inputs)), None)
        if regime is not None:
            case = shrink_counterexample(spec, lay.name, ident, cand, regime=regime, family=fam.name, magnitude=None,
                                         seed=seed)
            if case is not None:
                inputs = case.inputs
                v = oracle.verify_identity(lay, ident, inputs, fam.sizes, expr=cand)
    # directions (tangents, cotangents) matter only to the quantity that is taken along one: show just that one
    shown = {k: a for k, a in inputs.items()
             if spec.inputs[k].get("role") not in DIRECTION_ROLES or k == ident.direction}
    return Counterexample(fam.name, {k: np.asarray(a, dtype=np.float64).tolist() for k, a in shown.items()},
                          tuple(v.worst_index or ()), float(v.identity_value), float(v.derivative_value))


def _checked_fixes(spec: Spec, lay: Layout, ident: Identity, cand: Expr, pinned: Mapping[str, Shape],
                   families: Sequence[Any], cases: int, seed: int) -> tuple[FixCheck, ...]:
    out = []
    for fix in suggest_fixes(cand, pinned, expected=ident.shape, limit=2):
        n, _, cex = _value_check(spec, lay, ident, fix.expr, families, cases, seed, shrink=False)
        out.append(FixCheck(fix.description, to_text(fix.expr), CORRECT if cex is None and n else WRONG, n))
        if cex is None and n:
            break
    return tuple(out)


def _not_conformable(spec: Spec, lay: Layout, ident: Identity, cand: Expr, text: str, error: ShapeError,
                     pinned: Mapping[str, Shape], families: Sequence[Any], assumptions: tuple[str, ...],
                     notes: list[str], ref_text: str | None, cases: int, seed: int, shrink: bool) -> CheckResult:
    fixes = _checked_fixes(spec, lay, ident, cand, pinned, families, cases, seed)
    failing = getattr(error, "node", None)
    trace = tuple(error.trace) + ((to_text(failing), "?"),) if failing is not None else tuple(error.trace)
    detail = error.detail.split("; did you mean")[0]
    # where the sizes happen to let it through (square families), the value must be wrong too
    n, fams, cex = _value_check(spec, lay, ident, cand, families, cases, seed, shrink)
    if fams:
        sizes = ", ".join(f"{k} = {v}" for k, v in spec.families[fams[0]].sizes.items()) if fams[0] in spec.families \
            else fams[0]
        notes.append(f"in family {fams[0]} ({sizes}) the sizes happen to let the product through"
                     + ("; the value is wrong there too" if cex is not None else
                        "; there its value agrees with the derivative"))
    diag = None
    if cex is not None:
        ordered = [cex.family] + [f for f in fams if f != cex.family]
        diag = _diagnose_value(spec, lay, ident, cand, [spec.families[f] for f in ordered if f in spec.families], seed)
    return CheckResult(expr=text, layout=lay.name, quantity=ident.id, kind=ident.kind,
                       expected_shape=format_shape(ident.shape), verdict=NOT_CONFORMABLE, conformable=False,
                       shape=None, trace=trace, shape_error=detail, fixes=fixes, cases=n, families=fams,
                       counterexample=cex, diagnosis=diag, assumptions=assumptions, notes=tuple(notes),
                       spec_identity=ref_text)


def _diagnose_value(spec: Spec, lay: Layout, ident: Identity, cand: Expr, families: Sequence[Any],
                    seed: int) -> dict[str, Any] | None:
    """Classify a wrong candidate on one generic draw: the candidate's exact value against the derivative's."""

    pinned = {k: substitute(s, ident.when) for k, s in lay.value_shapes.items()}
    for fam in families:
        if try_shape(cand, concrete_shapes(pinned, fam.sizes)) is None:
            continue
        inputs = generic_inputs(spec, lay, fam, seed=seed)
        env = IntervalEnv(lay, inputs)
        got = env.approx(cand)
        with precision(env.bits):
            exact = iv_mid_float(oracle.derivative(lay, inputs, kind=ident.kind, of=ident.of, wrt=ident.wrt,
                                                   convention=ident.convention, direction=ident.direction))
        if got is None:
            continue
        got = np.broadcast_to(got, exact.shape) if got.shape != exact.shape and got.shape != exact.shape[::-1] \
            and got.size == 1 else got

        diag = CaseDiagnoser(spec, lay, inputs, fam.sizes, mode="exact")
        spec_ident = next((i for i in lay.identities if i.quantity == ident.quantity), None)
        d = diag.diagnose(ident.id, spec_ident.expr if spec_ident is not None else cand, got, exact,
                          _exact_tolerance(exact), identity=spec_ident or ident)
        return d.to_json()
    return None


# --------------------------------------------------------------------------- command line

def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", help="the candidate formula, in the spec's math language (quote it)")
    p.add_argument("--wrt", required=True, help="the variable: an input (x, W1...) or a forward value (a, h...)")
    p.add_argument("--of", default=None, help="what is differentiated (default: the loss; a vector for a Jacobian)")
    p.add_argument("--kind", default=None, choices=["gradient", "jacobian", "jvp", "vjp", "hessian", "hvp"],
                   help="a directional or second-order derivative (default: a gradient of a scalar, else a Jacobian)")
    p.add_argument("--along", default=None, help="the tangent (jvp, hvp) or cotangent (vjp) input, e.g. v_x")
    p.add_argument("--layout", default="row", help="row (samples are rows) or column (default: row)")
    p.add_argument("--spec", default=None, help="spec file (default: the shipped seed network)")
    p.add_argument("--cases", type=int, default=3, help="generic cases per shape family (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generic inputs")
    p.add_argument("--no-shrink", action="store_true", help="report the first counterexample, not a shrunk one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def main_check(args: argparse.Namespace) -> int:
    import json

    try:
        result = check(args.expr, wrt=args.wrt, of=args.of, layout=args.layout, spec=args.spec, cases=args.cases,
                       seed=args.seed, shrink=not args.no_shrink, kind=args.kind, along=args.along)
    except GradconformError as exc:
        print(f"gradconform check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json(), indent=1) if args.json else result.render())
    return 0 if result.correct else 1
