"""Metamorphic properties: relations between two runs of a backend that hold for every correct backend.

No reference value is needed to state them; each compares the backend with
itself on two related inputs, sent through the same worker as the oracle
tests (:meth:`Run.request_for`):

* ``shift``: adding c to every logit (through the logit bias, ``b2``) changes
  no gradient and none of the values after the softmax;
* ``layout``: the same numbers in the other layout give the transposed
  result (or the same one, for a variable whose shape is the same in both
  layouts, like ``W1``); a numerator-layout Jacobian is the transpose of the
  denominator-layout one;
* ``duplicate``: two copies of every sample double the loss and the gradients
  with respect to the parameters, and repeat the per-sample gradients;
* ``label_scale``: multiplying the labels by s multiplies the loss and every
  gradient that holds for any labels (``dL/dtheta.general``) by s.

Tolerance. The relations are exact for the exact values, and the inputs are
built so that the transformation itself is exact in the dtype (the bias is
put on a grid where ``b2 + c`` is representable; labels are scaled only by a
factor that keeps them representable; duplication and transposition copy
numbers). A correct result is within ``A = safety_factor * bound + eta`` of
its exact value (:mod:`conformance.judge.bounds`), so two correct results related
by a linear map M satisfy ``|r2 - M r1| <= A2 + |M| A1`` componentwise; the
float64 evaluation of ``M r1`` and of the difference adds at most
``2 u64 (|r2| + |M r1|)``, which is added too. Nothing is loosened beyond
that: a violation is a real inconsistency of the backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from conformance.cases.generate import Case, case_id
from conformance.checks.metamorphic_side import Side, evaluate_side
from conformance.statuses import ERROR, FAIL, NOT_SUPPORTED, PASS
from conformance.expr import BinOp, Call, Expr, Name, Neg, free_names, walk
from conformance.formats import get_format
from conformance.spec.model import Identity, Layout, Spec

if TYPE_CHECKING:  # pragma: no cover
    from conformance.run.run import Run

__all__ = ["PROPERTIES", "Violation", "MetamorphicResult", "applicable_properties", "base_cells", "check_property"]

PROPERTIES = {
    "shift": "adding c to every logit (through the logit bias) changes no gradient",
    "layout": "the other layout's result for the same numbers is the transpose (or the same matrix)",
    "duplicate": "two copies of every sample double the loss and the parameter gradients, and repeat the rest",
    "label_scale": "scaling the labels by s scales the loss and every gradient valid for any labels by s",
}
_U64 = 2.0 ** -53


@dataclass(frozen=True)
class Violation:
    quantity: str
    case: str
    index: tuple[int, ...]
    got: float
    expected: float
    allowed: float

    def to_json(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "case": self.case, "index": list(self.index),
                "got": _jf(self.got), "expected": _jf(self.expected), "allowed": _jf(self.allowed)}


def _jf(x: float) -> Any:
    return x if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))


@dataclass(frozen=True)
class MetamorphicResult:
    """The outcome of one property for one (layout, dtype) on a backend: every pair of cases, every quantity;
    a results-file record (``metamorphic``)."""

    section: ClassVar[str] = "metamorphic"

    property: str
    layout: str
    dtype: str
    regimes: tuple[str, ...]
    status: str
    detail: str = ""
    message: str = ""
    pairs: int = 0
    comparisons: int = 0
    exact: int = 0  # comparisons where the relation held bit for bit
    max_ratio: float = 0.0  # max over components of |r2 - M r1| / allowed
    violations: tuple[Violation, ...] = ()
    skipped: tuple[str, ...] = ()
    cases: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # the pairs of a failure, for a rerun

    def to_json(self) -> dict[str, Any]:
        return {"property": self.property, "description": PROPERTIES[self.property], "layout": self.layout,
                "dtype": self.dtype, "regimes": list(self.regimes), "status": self.status, "detail": self.detail,
                "message": self.message, "pairs": self.pairs, "comparisons": self.comparisons, "exact": self.exact,
                "max_ratio": _jf(self.max_ratio), "violations": [v.to_json() for v in self.violations[:20]],
                "skipped": list(self.skipped[:20]), "cases": list(self.cases)}


# --------------------------------------------------------------------------- what the spec supports

@dataclass(frozen=True)
class _Model:
    """What the properties need to know about a layout, derived from the spec's definitions."""

    logit_bias: str | None  # the input added to the logits right before the softmax
    shifted: frozenset[str]  # forward values that move with the shift (the logits)
    sample_dim: str | None
    label: str | None
    label_linear: bool
    summed_loss: bool


def _model(spec: Spec, layout: Layout) -> _Model:
    defs = layout.definitions
    bias = None
    shifted: set[str] = set()
    softmax_out = None
    for d in layout.forward:
        e = d.expr
        if isinstance(e, Call) and e.fn in ("softmax", "log_softmax") and isinstance(e.args[0], Name):
            logits = e.args[0].id
            ldef = defs.get(logits)
            if isinstance(ldef, BinOp) and ldef.op == "+":
                for side in (ldef.left, ldef.right):
                    if isinstance(side, Name) and side.id in layout.shapes and \
                            spec.inputs[side.id].get("role") == "parameter":
                        bias, softmax_out = side.id, d.name
                        shifted.add(logits)
    data = [n for n, info in spec.inputs.items() if info.get("role") == "data"]
    sample_dim = layout.shapes[data[0]][layout.sample_axis] if data else None
    sample_dim = sample_dim if isinstance(sample_dim, str) else None
    labels = [n for n, info in spec.inputs.items() if info.get("role") == "label"]
    label = labels[0] if len(labels) == 1 else None
    loss = defs[layout.loss]
    linear = label is not None and all(label not in free_names(d.expr) for d in layout.forward if d.name != layout.loss) \
        and _linear_in(loss, label)
    body = loss.operand if isinstance(loss, Neg) else loss
    summed = isinstance(body, Call) and body.fn == "sum" and body.axis is None
    return _Model(bias if softmax_out else None, frozenset(shifted), sample_dim, label, linear, summed)


def _linear_in(e: Expr, name: str) -> bool:
    """Whether ``e`` is linear (homogeneous of degree 1) in the input ``name``: it occurs once, reached only
    through negation, sums and products whose other factor does not contain it."""
    if isinstance(e, Name):
        return e.id == name
    if name not in free_names(e):
        return False
    if isinstance(e, Neg):
        return _linear_in(e.operand, name)
    if isinstance(e, Call) and e.fn in ("sum", "mean"):
        return _linear_in(e.args[0], name)
    if isinstance(e, BinOp) and e.op in ("*", "@"):
        a, b = e.left, e.right
        return (_linear_in(a, name) and name not in free_names(b)) or (_linear_in(b, name) and name not in free_names(a))
    if isinstance(e, BinOp) and e.op == "/":
        return _linear_in(e.left, name) and name not in free_names(e.right)
    return False


def applicable_properties(spec: Spec) -> list[tuple[str, str]]:
    """(property, layout) pairs the spec supports; ``layout`` compares the first layout with the others."""
    out = []
    names = list(spec.layouts)
    for lname in names:
        m = _model(spec, spec.layouts[lname])
        if m.logit_bias:
            out.append(("shift", lname))
        if m.sample_dim and m.summed_loss:
            out.append(("duplicate", lname))
        if m.label_linear:
            out.append(("label_scale", lname))
    if len(names) >= 2 and all(_layout_map(spec, names[0], o) is not None for o in names[1:]):
        out.append(("layout", names[0]))
    return sorted(out, key=lambda p: (list(PROPERTIES).index(p[0]), names.index(p[1])))


# --------------------------------------------------------------------------- relations

Map = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Relation:
    quantity: str  # id in the transformed request
    base: str  # id in the base request
    value_map: Map  # M applied to the base value
    bound_map: Map  # |M| applied to the base allowance


def _identity_map(a: np.ndarray) -> np.ndarray:
    return a


def _compare(base: Side, other: Side, relations: Sequence[_Relation], viol: list[Violation],
             notes: list[str]) -> tuple[int, int, float]:
    """Compare every related quantity of a pair; append violations, and notes on what could not be compared.

    A component that is NaN on both sides is not comparable (the oracle tests report the NaN itself); NaN or
    an infinity on one side only is a violation whatever the allowance. A quantity none of whose components
    is comparable does not count as a comparison.
    """
    compared = exact = 0
    worst = 0.0
    for rel in relations:
        if rel.base not in base.values or rel.quantity not in other.values:
            continue
        b, o = base.values[rel.base], other.values[rel.quantity]
        allowed_other, allowed_base = other.allowed(rel.quantity), base.allowed(rel.base)
        if allowed_other is None or allowed_base is None:
            continue
        expected = rel.value_map(b)
        if expected.shape != o.shape:
            viol.append(Violation(rel.quantity, other.case.id, (), float("nan"), float("nan"), 0.0))
            worst = math.inf
            compared += 1
            continue
        with np.errstate(all="ignore"):
            allowed = allowed_other + rel.bound_map(allowed_base) + \
                2 * _U64 * (np.abs(o) + np.abs(expected))
            same = (o == expected) | (np.isinf(o) & np.isinf(expected) & (np.sign(o) == np.sign(expected)))
            both_nan = np.isnan(o) & np.isnan(expected)
            one_sided = (np.isnan(o) | np.isnan(expected) | (np.isinf(o) != np.isinf(expected))) & ~same & ~both_nan
            diff = np.where(same | both_nan, 0.0, np.abs(o - expected))
            diff = np.where(np.isnan(diff), np.inf, diff)
            ratio = np.where(diff == 0, 0.0, diff / allowed)
            ratio = np.where(one_sided | np.isnan(ratio), np.inf, ratio)
        if np.any(both_nan):
            notes.append(f"{rel.quantity} on case {other.case.id}: {int(both_nan.sum())} component(s) NaN on both "
                         "sides, not comparable")
            if np.all(both_nan):
                continue
        compared += 1
        exact += bool(np.all(same | both_nan))
        bad = np.argwhere((diff > allowed) | one_sided)
        worst = max(worst, float(np.max(ratio)) if ratio.size else 0.0)
        if bad.size:
            idx = tuple(int(i) for i in bad[np.argmax(ratio[tuple(bad.T)])])
            viol.append(Violation(rel.quantity, other.case.id, idx, float(o[idx]), float(expected[idx]),
                                  float(allowed[idx])))
    return compared, exact, worst


def _with_inputs(case: Case, inputs: Mapping[str, np.ndarray], *, layout: str | None = None,
                 sizes: Mapping[str, int] | None = None, tag: str = "") -> Case:
    lay = layout or case.layout
    cid = case_id(lay, case.dtype, case.regime + tag, case.family, case.magnitude, inputs)
    return replace(case, id=cid, layout=lay, inputs=dict(inputs), sizes=dict(sizes or case.sizes))


# shift ---------------------------------------------------------------------------------------------

def _shift_pair(spec: Spec, case: Case, bias: str) -> tuple[Case, Case, float] | None:
    """(base on the grid, shifted, c): b2 put on a grid where b2 + c is exact in the dtype."""
    fmt = get_format(case.dtype)
    b = case.inputs[bias].astype(np.float64)
    c0 = -float(case.magnitude) if (case.magnitude and spec.regimes[case.regime].generator_for(bias).kind
                                    in ("spike", "tied")) else 3.0
    top = float(np.max(np.abs(b))) + abs(c0) + 1.0
    m = 2.0 ** math.ceil(math.log2(top))
    if m > fmt.max_finite / 2:
        return None
    grid = m * 2.0 ** -(fmt.p - 1)
    c = round(c0 / grid) * grid or grid
    bq = np.round(b / grid) * grid
    base_inputs = dict(case.inputs)
    base_inputs[bias] = bq.astype(fmt.dtype)
    shifted_inputs = dict(case.inputs)
    shifted_inputs[bias] = (bq + c).astype(fmt.dtype)
    if not (np.array_equal(base_inputs[bias].astype(np.float64), bq)
            and np.array_equal(shifted_inputs[bias].astype(np.float64), bq + c)):
        return None  # pragma: no cover - the grid guarantees exactness
    return _with_inputs(case, base_inputs, tag="+grid"), _with_inputs(case, shifted_inputs, tag=f"+shift{c!r}"), c


# layout ----------------------------------------------------------------------------------------------

def _layout_map(spec: Spec, a: str, b: str) -> dict[str, bool] | None:
    """For each input: True if layout b holds its transpose, False if the same matrix; None if neither."""
    la, lb = spec.layouts[a], spec.layouts[b]
    out = {}
    for name in spec.inputs:
        sa, sb = tuple(la.shapes[name]), tuple(lb.shapes[name])
        if sb == sa:
            out[name] = False
        elif sb == (sa[1], sa[0]):
            out[name] = True
        else:
            return None
    return out


def _transposes(spec: Spec, a: str, b: str, qid: str) -> bool | None:
    """Whether quantity ``qid`` of layout b is the transpose of layout a's (None: not comparable)."""
    la, lb = spec.layouts[a], spec.layouts[b]
    va, vb = la.value_shapes, lb.value_shapes
    if qid in va and qid in vb and qid in la.definitions:
        sa, sb = tuple(va[qid]), tuple(vb[qid])
    else:
        try:
            ia, ib = la.identity(qid), lb.identity(qid)
        except KeyError:
            return None
        if (ia.kind, ia.of, ia.wrt) != (ib.kind, ib.of, ib.wrt):
            return None
        if ia.kind == "jacobian":
            return ia.convention != ib.convention
        sa, sb = tuple(ia.shape), tuple(ib.shape)
    if sa == sb and (sa[0] != sa[1] or sa == (1, 1)):
        return False
    if sb == (sa[1], sa[0]) and sa[0] != sa[1]:
        return True
    return None  # square in both layouts: not decidable from shapes, so not compared


# --------------------------------------------------------------------------- the properties

def check_property(run: "Run", prop: str, layout: str, dtype: str, *, examples: int | None = None) -> MetamorphicResult:
    """Check one property for one layout and dtype on the run's backend."""
    spec = run.spec
    model = _model(spec, spec.layouts[layout])
    regimes = _regimes(spec, prop, model)
    result = dict(property=prop, layout=layout, dtype=dtype, regimes=tuple(regimes))
    info = run.info
    if not info.available:
        return MetamorphicResult(**result, status=NOT_SUPPORTED, detail="backend",
                                 message=f"backend unavailable: {info.reason}")
    if not run.supports(dtype):
        return MetamorphicResult(**result, status=NOT_SUPPORTED, detail="backend", message=f"dtype {dtype} is not supported")
    bases = [c for r in regimes for c in _bases(run, layout, dtype, r, examples)]
    viol: list[Violation] = []
    skipped: list[str] = []
    pairs = compared = exact = 0
    worst = 0.0
    failing_cases: list[dict[str, Any]] = []
    built_pairs = []
    for case in bases:
        built = _build_pair(spec, prop, case, model)
        if built is None:
            skipped.append(f"case {case.id}: the transformation is not exact in {dtype}")
            continue
        built_pairs.append(built)
    # every side's request goes to the backend in one message: it computes while the oracle evaluates
    sides = [c for base_case, other_case, _ in built_pairs for c in (base_case, other_case)]
    with run.executor.batch(sides):
        stacked = run.stacked_bounds(sides)  # the sides' bounds computed together, shape by shape
        for base_case, other_case, relations in built_pairs:
            base, other = evaluate_side(run, base_case, stacked), evaluate_side(run, other_case, stacked)
            for side in (base, other):
                if side.problem is not None and not side.oracle_failed:
                    run.executor.abandon()  # the other pairs' replies are not waited for (a hang costs one timeout)
                    status, message = side.problem
                    return MetamorphicResult(**result, status=status, detail="backend", message=message, pairs=pairs,
                                             cases=(side.case.to_json(),))
            if base.oracle_failed or other.oracle_failed:
                skipped.append((base.problem or other.problem)[1])  # type: ignore[index]
                continue
            before = len(viol)
            c, e, w = _compare(base, other, relations, viol, skipped)
            pairs += 1
            compared += c
            exact += e
            worst = max(worst, w)
            if len(viol) > before and len(failing_cases) < 4:
                failing_cases += [base_case.to_json(), other_case.to_json()]
    if not compared:
        return MetamorphicResult(**result, status=ERROR, detail="nothing_compared",
                                 message="no pair of results could be compared: " + "; ".join(skipped[:3]),
                                 pairs=pairs, skipped=tuple(skipped))
    if viol:
        v = max(viol, key=lambda x: abs(x.got - x.expected) / x.allowed if x.allowed else math.inf)
        message = (f"{len(viol)} violation(s) over {pairs} pair(s) of cases; worst: {v.quantity} at {list(v.index)} "
                   f"of case {v.case}: got {v.got:.17g}, the relation says {v.expected:.17g}, allowed difference "
                   f"{v.allowed:.3g}")
        return MetamorphicResult(**result, status=FAIL, detail="violated", message=message, pairs=pairs,
                                 comparisons=compared, exact=exact, max_ratio=worst, violations=tuple(viol),
                                 skipped=tuple(skipped), cases=tuple(failing_cases))
    return MetamorphicResult(**result, status=PASS, pairs=pairs, comparisons=compared, exact=exact, max_ratio=worst,
                             skipped=tuple(skipped))


def _regimes(spec: Spec, prop: str, model: "_Model") -> list[str]:
    """The regimes whose cases a property is checked on: the first that violates no precondition, and for
    ``shift`` the first that spikes the logits through their bias."""
    base_regime = next((n for n, r in spec.regimes.items() if not r.violates), next(iter(spec.regimes)))
    regimes = [base_regime]
    if prop == "shift" and model.logit_bias:
        regimes += [n for n, r in spec.regimes.items() if n != base_regime and not r.violates
                    and r.generator_for(model.logit_bias).kind in ("spike", "tied")][:1]
    return regimes


def _base_examples(spec: Spec, regime: str, run_examples: int | None) -> int | None:
    """How many cases per cell :func:`_bases` asks for (with no ``examples`` given): None for the run's own."""
    if run_examples is not None:
        return max(run_examples, 2)
    return 2 if spec.regimes[regime].examples < 2 else None


def base_cells(spec: Spec, prop: str, layout: str, dtype: str,
               run_examples: int | None) -> list[tuple[str, str, str, int | None]]:
    """The (layout, dtype, regime, examples) cells whose cases :func:`check_property` takes as its bases (what
    a run is told to draw ahead, conformance.cases.prefetch)."""
    regimes = _regimes(spec, prop, _model(spec, spec.layouts[layout]))
    return [(layout, dtype, r, _base_examples(spec, r, run_examples)) for r in regimes]


def _bases(run: "Run", layout: str, dtype: str, regime: str, examples: int | None) -> list[Case]:
    """The base cases of a property in one regime: ``examples`` per (family, magnitude) cell when given, else
    the run's own cases, the first two of each cell (the run's oracle evaluations of these are made already),
    at least two per cell (one case relates little)."""
    if examples is not None:
        return run.cases(layout, dtype, regime, examples=examples)
    n = _base_examples(run.spec, regime, run.examples)
    if n is not None:
        return run.cases(layout, dtype, regime, examples=n)
    per_cell: dict[tuple[str, float | None], int] = {}
    out = []
    for case in run.cases(layout, dtype, regime):
        n = per_cell.get((case.family, case.magnitude), 0)
        if n < 2:
            out.append(case)
        per_cell[(case.family, case.magnitude)] = n + 1
    return out


def _build_pair(spec: Spec, prop: str, case: Case, model: _Model) -> tuple[Case, Case, list[_Relation]] | None:
    lay = spec.layouts[case.layout]
    ids = [d.name for d in lay.forward] + [i.id for i in lay.identities]
    if prop == "shift":
        assert model.logit_bias is not None
        got = _shift_pair(spec, case, model.logit_bias)
        if got is None:
            return None
        base, other, _ = got
        moved = _moves_with(lay, model.shifted)
        rels = [_Relation(q, q, _identity_map, _identity_map) for q in ids if q not in moved]
        return base, other, rels
    if prop == "layout":
        target = next(n for n in spec.layouts if n != case.layout)
        tmap = _layout_map(spec, case.layout, target)
        assert tmap is not None
        inputs = {k: (v.T.copy() if tmap[k] else v) for k, v in case.inputs.items()}
        other = _with_inputs(case, inputs, layout=target, tag="+layout")
        tl = spec.layouts[target]
        other_ids = set([d.name for d in tl.forward] + [i.id for i in tl.identities])
        rels = []
        for q in ids:
            if q not in other_ids:
                continue
            t = _transposes(spec, case.layout, target, q)
            if t is None:
                continue
            rels.append(_Relation(q, q, (lambda a: a.T) if t else _identity_map, (lambda a: a.T) if t else _identity_map))
        return case, other, rels
    if prop == "duplicate":
        axis = lay.sample_axis
        dim = model.sample_dim
        assert dim is not None
        per_sample = {k for k, s in lay.shapes.items() if s[axis] == dim}
        inputs = {k: (np.concatenate([v, v], axis=axis) if k in per_sample else v) for k, v in case.inputs.items()}
        sizes = dict(case.sizes)
        sizes[dim] = 2 * sizes[dim]
        other = _with_inputs(case, inputs, sizes=sizes, tag="+duplicate")
        rels = []

        def tile(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a, a], axis=axis)

        def twice(a: np.ndarray) -> np.ndarray:
            return 2.0 * a

        for q in ids:
            shape = _symbolic_shape(lay, q)
            if shape is None:
                continue
            if shape[axis] == dim:
                rels.append(_Relation(q, q, tile, tile))
            elif dim not in shape and (q == lay.loss or _is_parameter_gradient(spec, lay, q)):
                rels.append(_Relation(q, q, twice, twice))
        return case, other, rels
    if prop == "label_scale":
        label = model.label
        assert label is not None
        fmt = get_format(case.dtype)
        y = case.inputs[label].astype(np.float64)
        for s in (3.0, 2.0):
            scaled = (s * y).astype(fmt.dtype)
            if np.array_equal(scaled.astype(np.float64), s * y):
                break
        else:  # pragma: no cover - 2 y is exact unless it overflows
            return None
        inputs = dict(case.inputs)
        inputs[label] = scaled
        other = _with_inputs(case, inputs, tag=f"+labels*{s:g}")
        general = [i.id for i in lay.identities if not i.requires and label in _depends(lay, i)]
        rels = [_Relation(q, q, (lambda a, s=s: s * a), (lambda a, s=s: s * a)) for q in [lay.loss] + general]
        return case, other, rels
    raise ValueError(f"unknown metamorphic property {prop!r}; known: {', '.join(PROPERTIES)}")


def _moves_with(layout: Layout, shifted: frozenset[str]) -> set[str]:
    """Forward values that change under the shift: the logits, and values computed from them other than
    through the softmax (none in the seed)."""
    moved = set(shifted)
    for d in layout.forward:
        if d.name in moved:
            continue
        for node in walk(d.expr):
            if isinstance(node, Name) and node.id in moved and not _through_softmax(d.expr, node.id):
                moved.add(d.name)
                break
    return moved


def _through_softmax(e: Expr, name: str) -> bool:
    return isinstance(e, Call) and e.fn in ("softmax", "log_softmax") and isinstance(e.args[0], Name) \
        and e.args[0].id == name


def _symbolic_shape(layout: Layout, qid: str) -> tuple[Any, Any] | None:
    if qid in layout.definitions:
        return tuple(layout.value_shapes[qid])  # type: ignore[return-value]
    try:
        ident = layout.identity(qid)
    except KeyError:
        return None
    if ident.kind != "gradient":
        return None
    return tuple(ident.shape)  # type: ignore[return-value]


def _is_parameter_gradient(spec: Spec, layout: Layout, qid: str) -> bool:
    try:
        ident = layout.identity(qid)
    except KeyError:
        return False
    return ident.kind == "gradient" and ident.of == layout.loss and \
        spec.inputs.get(ident.wrt, {}).get("role") == "parameter"


def _depends(layout: Layout, ident: Identity) -> set[str]:
    """Inputs the identity's value depends on, through the forward definitions."""
    defs = layout.definitions
    out: set[str] = set()
    todo = list(free_names(ident.expr))
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        if n in defs:
            todo.extend(free_names(defs[n]))
    return out
