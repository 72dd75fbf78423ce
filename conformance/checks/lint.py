"""Static checks of a spec file, before any backend is run: ``gradconform lint spec/...``.

Two questions, for every identity of every layout:

1. **Is every expression conformable?** Each forward definition, precondition,
   identity and negative identity is shape-checked over the *named*
   dimensions (so a missing transpose is an error even where a shape family
   happens to make it fit). A non-conformable product is reported with the
   sub-expression, both shapes and, where a single edit makes the whole
   expression conformable, the fix ("did you mean W1.T?").

2. **Can the test shapes tell the identity from its usual confusions?** The
   confusions are: the whole result transposed (for a Jacobian, the other
   convention: numerator vs denominator layout), the other layout's formula
   for the same derivative, and one operand's transpose dropped or added. A
   confusion is *told apart* in a shape family when it is not conformable
   there or has another shape (by shape), or when the two formulas evaluate
   to different values on generic inputs (by value: certified with interval
   arithmetic, disjoint intervals at one component). A confusion no family
   tells apart is a spec error: the suite could not fail for it. The one
   legitimate exception is a symmetric matrix (the softmax Jacobian
   ``Diag(yhat) - yhat^T yhat``), where numerator and denominator layout
   coincide; the spec must say so (``symmetric: true``), and lint verifies
   the claim (the value equals its transpose on generic inputs in every
   family where the identity is tested) before accepting it.

A reduction over the batch (the bias gradient ``sum(dL/da, axis=0)``) has one
more confusion: the sum over the *other* axis, over the features, transposed
to the result's shape. Shapes tell it apart only where the batch differs from
that width, and a backend that writes it so that shapes fit (a reshape) is
then caught by an exception, not by the check; so for this confusion lint
requires a family where it fits, with the batch equal to the width, and where
it differs in value on generic inputs (verdict ``value``); otherwise it is
``indiscriminable`` ("add a family with n = d_out").

Negative identities (known-wrong formulas) are shape-checked per family: lint
says where each is refuted by shape and where the suite must refute it by
value (``test_negative_identity`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from conformance.cases.generic import generic_inputs
from conformance.checks.negative import families_for
from conformance.errors import OracleError, ShapeError, SpecError
from conformance.expr import Call, Expr, Transpose, free_names, to_text
from conformance.oracle.ivalues import IntervalEnv, first_difference
from conformance.spec import Identity, Layout, ShapeFamily, Spec, load_spec
from conformance.spec.loader import parse_spec_data, raw_layout_pass
from conformance.spec.parse import parse_expr
from conformance.spec.yaml_safe import check_size
from conformance.spec.shapes import (Shape, concrete, concrete_shapes, format_shape, infer_all, replace_at, substitute,
                                     suggest_fixes, toggle_transpose, transpose_candidates, try_shape)

__all__ = ["Finding", "Discrimination", "NegativeShapes", "LintReport", "lint", "lint_spec", "spec_files",
           "EVAL_BITS"]

EVAL_BITS = 128

ERROR = "error"
NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One message of lint. ``severity`` is ``error`` (lint fails) or ``note``."""

    severity: str
    code: str  # load | shape | indiscriminable | symmetric | untestable | negative | evaluate
    where: str  # "file: key"
    message: str
    trace: tuple[tuple[str, str], ...] = ()
    suggestion: str | None = None

    def render(self) -> str:
        return f"{self.where}: {self.severity}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class Discrimination:
    """How the test shapes tell one identity from one confusion.

    ``verdict``: ``shape`` (a family where the confusion is not conformable or
    has another shape), ``value`` (a family where it evaluates differently),
    ``symmetric`` (equal to its transpose everywhere, declared and verified),
    ``equivalent`` (another formula of the same function: nothing to tell
    apart), ``indiscriminable`` (a spec error).
    """

    layout: str
    identity: str
    confusion: str
    formula: str
    verdict: str
    family: str | None = None
    detail: str = ""

    def render(self) -> str:
        where = f" in family {self.family}" if self.family else ""
        return f"{self.layout} {self.identity} vs {self.confusion} [{self.formula}]: {self.verdict}{where}: {self.detail}"


@dataclass(frozen=True)
class NegativeShapes:
    """Where a negative identity is refuted by shape, and where it must be refuted by value."""

    id: str
    layout: str
    by_shape: Mapping[str, str]  # family -> why
    by_value: tuple[str, ...]  # families where it is conformable with the claimed shape
    symbolic: str  # "conformable" or the symbolic shape error


@dataclass(frozen=True)
class LintReport:
    path: str
    findings: tuple[Finding, ...] = ()
    discriminations: tuple[Discrimination, ...] = ()
    negatives: tuple[NegativeShapes, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    def render(self, *, verbose: bool = False) -> str:
        lines = []
        n_err = len(self.errors)
        summary = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        lines.append(f"{self.path}: {'ok' if self.ok else f'{n_err} error(s)'}" + (f" ({summary})" if summary else ""))
        for f in self.findings:
            if f.severity == ERROR or verbose:
                lines.append("  " + f.render())
                for text, shape in f.trace if f.severity == ERROR else ():
                    lines.append(f"      {shape:>22s}  {text}")
        if verbose:
            for d in self.discriminations:
                lines.append("  " + d.render())
            for n in self.negatives:
                where = "; ".join(f"{fam}: by shape ({why})" for fam, why in n.by_shape.items())
                value = ", ".join(n.by_value)
                lines.append(f"  negative {n.id} [{n.layout}]: " + "; ".join(
                    p for p in (where, f"by value in {value}" if value else "") if p))
        return "\n".join(lines)


def spec_files(directory: str | Path) -> list[Path]:
    """The spec files of a directory (``*.yaml`` / ``*.yml``)."""
    d = Path(directory)
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml"))


# --------------------------------------------------------------------------- entry points

def lint(path: str | Path) -> LintReport:
    """Lint one spec file: load it (schema, names, shapes), then check that its tests can discriminate."""
    p = str(path)
    try:
        spec = load_spec(path)
    except SpecError as exc:
        findings = [_finding_from(exc, "load" if not isinstance(exc, ShapeError) else "shape", p)]
        findings += [f for f in _raw_shape_pass(Path(path)) if f.message != findings[0].message]
        return LintReport(p, tuple(_dedupe(findings)))
    try:
        return lint_spec(spec)
    except OracleError as exc:  # a forward definition outside its domain (b1 / 0) or beyond every range
        return LintReport(p, (Finding(ERROR, "evaluate", p, str(exc)),))


def lint_spec(spec: Spec) -> LintReport:
    """Lint a loaded spec (its expressions are already known to be conformable)."""
    findings: list[Finding] = []
    discs: list[Discrimination] = []
    evaluators: dict[tuple[str, str], _Evaluator] = {}

    def evaluator(layout: Layout, family: ShapeFamily) -> _Evaluator:
        key = (layout.name, family.name)
        if key not in evaluators:
            evaluators[key] = _Evaluator(spec, layout, family)
        return evaluators[key]

    n_ident = 0
    default_families = spec.without_wide().families  # what a default run has: the proofs are about it
    for lname, layout in spec.layouts.items():
        for i, ident in enumerate(layout.identities):
            n_ident += 1
            where = f"{spec.path}: layouts.{lname}.identities[{i}] ({ident.id})"
            families = [f for f in default_families.values() if all(f.sizes.get(d) == v for d, v in ident.when.items())]
            if not families:
                pins = ", ".join(f"{d} = {v}" for d, v in ident.when.items())
                findings.append(Finding(ERROR, "untestable", where,
                                        f"no shape family has {pins}, so no test ever checks this identity"))
                continue
            for conf_name, conf_expr, genuine in _confusions(spec, layout, ident):
                d = _discriminate(spec, layout, ident, families, conf_name, conf_expr, genuine, evaluator)
                discs.append(d)
                if d.verdict == "indiscriminable":
                    findings.append(Finding(ERROR, "indiscriminable", where, d.detail))
                elif d.verdict == "symmetric_false":
                    findings.append(Finding(ERROR, "symmetric", where, d.detail))
            for conf_name, conf_expr in _axis_confusions(ident.expr):
                d = _discriminate_axis(layout, ident, families, conf_name, conf_expr, evaluator)
                discs.append(d)
                if d.verdict == "indiscriminable":
                    findings.append(Finding(ERROR, "indiscriminable", where, d.detail))
    negs = [_negative_shapes(spec, i, n) for i, n in enumerate(spec.negative_identities)]
    for i, (neg, ns) in enumerate(zip(spec.negative_identities, negs)):
        where = f"{spec.path}: negative_identities[{i}] ({neg.id})"
        if not ns.by_shape and not ns.by_value:
            findings.append(Finding(ERROR, "untestable", where,
                                    "no shape family of its regime is one where the claimed identity is tested"))
        elif ns.symbolic != "conformable":
            findings.append(Finding(NOTE, "negative", where, f"not conformable over the named dimensions: {ns.symbolic}"))
    counts = {"layouts": len(spec.layouts), "identities": n_ident, "families": len(spec.families),
              "confusions checked": len(discs), "negative identities": len(spec.negative_identities)}
    return LintReport(spec.path, tuple(findings), tuple(discs), tuple(negs), counts)


# --------------------------------------------------------------------------- confusions

def _confusions(spec: Spec, layout: Layout, ident: Identity) -> list[tuple[str, Expr, bool]]:
    """(name, formula, genuine) for each usual confusion of ``ident``.

    ``genuine``: the confusion is a formula that is conformable over the named
    dimensions with the identity's shape, so equal values mean the same
    function (harmless) rather than a blind spot of the test shapes.
    """
    pinned = {k: substitute(s, ident.when) for k, s in layout.value_shapes.items()}
    out: list[tuple[str, Expr, bool]] = []
    seen = {ident.expr}

    def add(name: str, e: Expr) -> None:
        if e in seen:
            return
        seen.add(e)
        out.append((name, e, try_shape(e, pinned) == ident.shape))

    whole = "the other convention (its transpose)" if ident.kind == "jacobian" else "its transpose"
    add(whole, toggle_transpose(ident.expr))
    for oname, other in spec.layouts.items():
        if oname == layout.name:
            continue
        for o in other.identities:
            if o.id == ident.id and all(n in layout.value_shapes for n in _names(o.expr)):
                add(f"the {oname} layout's formula", o.expr)
    for path, node in transpose_candidates(ident.expr, pinned):
        new = toggle_transpose(node)
        add(f"{to_text(new)} in place of {to_text(node)}", replace_at(ident.expr, path, new))
    return out


_REDUCTIONS = ("sum", "mean")


def _axis_confusions(expr: Expr) -> list[tuple[str, Expr]]:
    """For each sum or mean along one axis: the formula with that reduction over the other axis, transposed (the
    shape the result would have where the two widths are equal)."""
    out = []
    for path, node in _reduction_nodes(expr):
        other = Call(node.fn, node.args, 1 - node.axis)
        out.append((f"{node.fn} over axis {1 - node.axis} in place of axis {node.axis}, transposed to fit",
                    replace_at(expr, path, Transpose(other))))
    return out


def _reduction_nodes(expr: Expr, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Call]]:
    out: list[tuple[tuple[int, ...], Call]] = []
    if isinstance(expr, Call) and expr.fn in _REDUCTIONS and expr.axis in (0, 1) and len(expr.args) == 1:
        out.append((path, expr))
    for i, child in enumerate(expr.children()):
        out.extend(_reduction_nodes(child, path + (i,)))
    return out


def _discriminate_axis(layout: Layout, ident: Identity, families: Sequence[ShapeFamily], conf_name: str,
                       conf: Expr, evaluator: Any) -> Discrimination:
    """By value only: a family where the reduction over the other axis fits the result's shape and differs."""
    formula = to_text(conf)
    pinned = {k: substitute(s, ident.when) for k, s in layout.value_shapes.items()}
    base = dict(layout=layout.name, identity=ident.id, confusion=conf_name, formula=formula)
    fitting = []
    for fam in families:
        if try_shape(conf, concrete_shapes(pinned, fam.sizes)) != concrete(ident.shape, fam.sizes):
            continue
        fitting.append(fam.name)
        ev = evaluator(layout, fam)
        a, b = ev.value(ident.expr), ev.value(conf)
        diff = first_difference(a, b) if a is not None and b is not None else None
        if diff is not None:
            idx, va, vb = diff
            return Discrimination(**base, verdict="value", family=fam.name,
                                  detail=f"component {idx}: {va:.6g} vs {vb:.6g} on generic inputs ({_sizes(fam)})")
    fams = ", ".join(f.name for f in families)
    if not fitting:
        return Discrimination(**base, verdict="indiscriminable",
                              detail=f"no shape family where the identity is tested ({fams}) has the two dimensions "
                                     f"of the reduced operand equal (the batch and a width), so a backend that "
                                     f"reduces over the wrong axis and reshapes ({formula}) is caught only by a shape "
                                     f"error or an exception; add a shape family with those two dimensions equal")
    return Discrimination(**base, verdict="indiscriminable",
                          detail=f"conformable in {', '.join(fitting)} but equal on generic inputs there: no test "
                                 f"can tell the reduction over the batch from the one over the features")


def _names(e: Expr) -> set[str]:
    return set(free_names(e))


def _discriminate(spec: Spec, layout: Layout, ident: Identity, families: Sequence[ShapeFamily], conf_name: str,
                  conf: Expr, genuine: bool, evaluator: Any) -> Discrimination:
    formula = to_text(conf)
    is_transpose = conf == toggle_transpose(ident.expr)
    pinned = {k: substitute(s, ident.when) for k, s in layout.value_shapes.items()}
    base = dict(layout=layout.name, identity=ident.id, confusion=conf_name, formula=formula)
    if is_transpose and ident.symmetric and ident.shape[0] != ident.shape[1]:
        return Discrimination(**base, verdict="symmetric_false",
                              detail=f"declared symmetric: true, but its shape {format_shape(ident.shape)} is not square")
    if not (is_transpose and ident.symmetric):
        for fam in families:
            cs = concrete_shapes(pinned, fam.sizes)
            expected = concrete(ident.shape, fam.sizes)
            got = try_shape(conf, cs)
            if got is None:
                return Discrimination(**base, verdict="shape", family=fam.name,
                                      detail=f"not conformable ({_sizes(fam)})")
            if got != expected:
                return Discrimination(**base, verdict="shape", family=fam.name,
                                      detail=f"{got[0]} x {got[1]}, the identity is {expected[0]} x {expected[1]}")
    equal_in: list[str] = []
    for fam in families:
        ev = evaluator(layout, fam)
        cs = concrete_shapes(pinned, fam.sizes)
        if try_shape(conf, cs) != concrete(ident.shape, fam.sizes):
            continue  # only for a declared-symmetric transpose of a non-square result: reported below
        a, b = ev.value(ident.expr), ev.value(conf)
        if a is None or b is None:
            continue
        diff = first_difference(a, b)
        if diff is not None:
            idx, va, vb = diff
            if is_transpose and ident.symmetric:
                return Discrimination(**base, verdict="symmetric_false", family=fam.name,
                                      detail=f"declared symmetric: true, but it differs from its transpose at component "
                                             f"{idx} in family {fam.name}: {va:.6g} vs {vb:.6g}; remove the declaration")
            return Discrimination(**base, verdict="value", family=fam.name,
                                  detail=f"component {idx}: {va:.6g} vs {vb:.6g} on generic inputs")
        equal_in.append(fam.name)
    fams = ", ".join(f.name for f in families)
    if is_transpose:
        if ident.symmetric and equal_in:
            return Discrimination(**base, verdict="symmetric",
                                  detail=f"declared symmetric; verified: equal to its transpose on generic inputs in "
                                         f"{', '.join(equal_in)}")
        if ident.symmetric:
            return Discrimination(**base, verdict="symmetric_false",
                                  detail="declared symmetric: true, but no family could evaluate it to verify the claim")
        what = ("numerator from denominator layout" if ident.kind == "jacobian" else "the result from its transpose")
        sizes = sorted({"{} x {}".format(*concrete(ident.shape, f.sizes)) for f in families})
        if ident.shape[0] == ident.shape[1]:
            hint = ("if the matrix is symmetric by nature, declare `symmetric: true` on the identity (lint verifies "
                    "it), otherwise add a shape family where the two differ")
        else:
            hint = "add a shape family where the two dimensions differ"
        return Discrimination(**base, verdict="indiscriminable",
                              detail=f"no shape family can tell {what}: {format_shape(ident.shape)} is "
                                     f"{' or '.join(sizes)} in every family where it is tested ({fams}), and equal "
                                     f"to its transpose on generic inputs; {hint}")
    if genuine:
        return Discrimination(**base, verdict="equivalent",
                              detail=f"conformable with the same shape and equal on generic inputs in {fams}: "
                                     "the same function, nothing to tell apart")
    return Discrimination(**base, verdict="indiscriminable",
                          detail=f"a test could not fail for {conf_name} ({formula}): it is a shape error over the "
                                 f"named dimensions, yet in every family where the identity is tested ({fams}) it is "
                                 "conformable, has the same shape and the same value on generic inputs; add a shape "
                                 "family where the dimensions differ")


def _sizes(fam: ShapeFamily) -> str:
    return ", ".join(f"{k} = {v}" for k, v in fam.sizes.items())


class _Evaluator(IntervalEnv):
    """Interval values on one generic draw of a (layout, family)."""

    def __init__(self, spec: Spec, layout: Layout, family: ShapeFamily) -> None:
        super().__init__(layout, generic_inputs(spec, layout, family), bits=EVAL_BITS)


# --------------------------------------------------------------------------- negative identities

def _negative_shapes(spec: Spec, index: int, neg: Any) -> NegativeShapes:
    layout = spec.layouts[neg.layout]
    claimed = layout.identity(neg.claims)
    pinned = {k: substitute(s, claimed.when) for k, s in layout.value_shapes.items()}
    try:
        infer_all(neg.expr, pinned)
        symbolic = "conformable"
        shape = try_shape(neg.expr, pinned)
        if shape != claimed.shape:
            symbolic = f"its shape {format_shape(shape)} differs from {neg.claims}'s {format_shape(claimed.shape)}"
    except ShapeError as exc:
        symbolic = exc.detail
    by_shape: dict[str, str] = {}
    by_value: list[str] = []
    for fam in families_for(spec, neg):
        cs = concrete_shapes(pinned, fam.sizes)
        expected = concrete(claimed.shape, fam.sizes)
        got = try_shape(neg.expr, cs)
        if got is None:
            by_shape[fam.name] = "not conformable"
        elif got != expected:
            by_shape[fam.name] = f"{got[0]} x {got[1]}, not {expected[0]} x {expected[1]}"
        else:
            by_value.append(fam.name)
    return NegativeShapes(neg.id, neg.layout, by_shape, tuple(by_value), symbolic)


# --------------------------------------------------------------------------- a spec that does not load

def _finding_from(exc: SpecError, code: str, path: str) -> Finding:
    where = ": ".join(p for p in (exc.file or path, exc.key) if p)
    trace = tuple(getattr(exc, "trace", ()) or ())
    return Finding(ERROR, code, where, exc.detail + (f"; did you mean {exc.suggestion}?"
                                                      if getattr(exc, "suggestion", None) and "did you mean" not in exc.detail
                                                      else ""), trace, getattr(exc, "suggestion", None))


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.where, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _raw_shape_pass(path: Path) -> list[Finding]:
    """Shape-check every expression of a spec that failed to load, independently, to report every error at once.

    Runs only when the file is valid YAML and matches the schema (otherwise the
    loader's message is the whole story). Expressions that use a name whose
    own definition failed are skipped (their error would only repeat).
    """
    file = str(path)
    try:
        check_size(path.stat().st_size, file)  # a file the loader refused for its size is not read again
        data = parse_spec_data(path.read_text(encoding="utf-8"), file)
    except (OSError, UnicodeDecodeError, SpecError):
        return []
    out: list[Finding] = []

    def check(text: str, names: Mapping[str, Shape | None], key: str, expected: Shape | None) -> Shape | None:
        try:
            expr = parse_expr(text, names=names, file=file, key=key)
        except SpecError as exc:
            out.append(_finding_from(exc, "load", file))
            return None
        if any(names.get(n) is None for n in free_names(expr)):
            return None
        shapes = {k: v for k, v in names.items() if v is not None}
        try:
            shape = infer_all(expr, shapes, file=file, key=key)[expr]
        except ShapeError as exc:
            out.append(_finding_from(exc, "shape", file))
            return None
        if expected is not None and shape != expected:
            fixes = suggest_fixes(expr, shapes, expected=expected)
            fix = f"; did you mean {to_text(fixes[0].by)}?" if fixes else ""
            out.append(Finding(ERROR, "shape", f"{file}: {key}",
                               f"the expression has shape {format_shape(shape)}, the declared shape is "
                               f"{format_shape(expected)}{fix}"))
        return shape

    for lname, ldata in (data.get("layouts") or {}).items():
        raw_layout_pass(lname, ldata, check)
    return out
