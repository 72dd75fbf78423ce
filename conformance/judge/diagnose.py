"""Failure diagnosis: when a result is wrong, say what kind of wrong.

A failing verdict says *that* a backend's gradient is out of bound; a person
fixing the backend wants to know *why*. The usual suspects are tested against
the oracle, each as a candidate value the result should match if that
mistake was made:

================  =========================================================================
class             the result matches...
================  =========================================================================
nonfinite         (NaN or inf where the exact value is finite)
transposed        the transpose of the exact value, or the formula with one operand's
                  transpose dropped or added (W1 for W1.T where the shapes let it through)
wrong_layout      the other layout's answer: the transposed shape of a gradient whose
                  variable is transposed between layouts, a Jacobian in the other convention
                  (numerator vs denominator), or the other layout's formula read in this one
sign_flipped      minus the exact value
constant_factor   k times the exact value: 1/n (a mean where the loss is a sum), n, 2, 1/2...
missing_term      the exact value with a term dropped: only the diagonal of a Jacobian (a
                  function treated as elementwise), or the formula without one of its terms
lower_precision   a downcast: every component is a number of a narrower dtype (float32 for
                  float64, bfloat16 or float16 for float32), within that dtype's (finite) bound
                  of its evaluation from the inputs rounded to it. Being within the narrower
                  bound alone proves nothing (a float64 result off by 1e-13 is within the
                  float32 bound), so the downcast's signature is required too
tail_failure      (group level) the same quantity conforms at the regime's small magnitudes
                  and fails from some magnitude on: fine in the bulk, wrong where logits are
                  large or sigmoids saturate
less_accurate_   a textbook formula of a primitive that is worse in one tail
formula           (sigmoid as 0.5 * (1 + tanh(a/2)) for a << 0): within the bound of the
                  forward pass rewritten with that formula, though not within the spec's
                  (conformance/judge/textbook.py); the message names the tail and the regime
unexplained       none of the above
================  =========================================================================

"Matches" uses the same principled tolerance as the verdict: the candidate's
own running error bound in the dtype (for a candidate formula), or the
quantity's bound carried through the candidate's linear map (|k| A for k
times the value, A^T for the transpose). A candidate that is itself within
the verdict's bound of the exact value explains nothing and is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from conformance.expr import BinOp, Expr, Neg, to_text
from conformance.formats import get_format, is_representable, round_hilo
from conformance.spec.shapes import concrete_shapes, replace_at, substitute, toggle_transpose, transpose_candidates, try_shape
from conformance.spec.model import Identity, Layout, Spec
from conformance.judge.bounds import ErrorBounds
from conformance.judge.textbook import textbook_match
from conformance.oracle import evaluate as oracle
from conformance.oracle.ivalues import IntervalEnv

__all__ = ["Diagnosis", "CaseDiagnoser", "CLASSES", "refine_group"]

CLASSES = ("nonfinite", "transposed", "wrong_layout", "sign_flipped", "constant_factor", "missing_term",
           "lower_precision", "less_accurate_formula", "tail_failure", "unexplained")

#: Narrower formats a result computed in ``dtype`` may silently have been computed in.
NARROWER = {"float64": ("float32",), "float32": ("bfloat16", "float16"), "float16": (), "bfloat16": ()}


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.kind, "message": self.message, **{k: _plain(v) for k, v in self.evidence.items()}}


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


@dataclass(frozen=True)
class _Candidate:
    kind: str
    message: str
    value: np.ndarray
    tolerance: np.ndarray
    evidence: Mapping[str, Any] = field(default_factory=dict)


class CaseDiagnoser:
    """Diagnoses the failing results of one case (shares the interval evaluations between quantities).

    ``mode`` is ``"backend"`` (a floating-point result, judged with the running
    error bounds of ``dtype``) or ``"exact"`` (a candidate formula evaluated
    exactly, as ``gradconform check`` does: matches are decided to 2**-40
    relative).
    """

    def __init__(self, spec: Spec, layout: Layout, inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int],
                 dtype: str = "float64", *, mode: str = "backend", regime: str = "") -> None:
        self.spec = spec
        self.layout = layout
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        self.sizes = dict(sizes)
        self.dtype = dtype
        self.mode = mode
        self.regime = regime  # named in a diagnosis that depends on where the inputs are (a formula's bad tail)
        self._env: Any = None
        self._narrow: dict[str, Any] = {}
        self._textbooks: dict[Any, Any] = {}  # rewritten forward passes (conformance.judge.textbook)

    # ------------------------------------------------------------------ helpers
    @property
    def env(self) -> Any:
        if self._env is None:

            self._env = IntervalEnv(self.layout, self.inputs)
        return self._env

    def _formula_tolerance(self, expr: Expr, value: np.ndarray, kind: str | None = None) -> np.ndarray:
        """The tolerance of a candidate formula for the quantity (of ``kind``) being diagnosed."""
        if self.mode == "exact":
            return _exact_tolerance(value)

        bounds = ErrorBounds(self.layout, self.env.nodes(), self.inputs, self.dtype, self.spec.tolerance)
        return self.spec.tolerance.safety_factor * bounds.bound(expr, kind) + get_format(self.dtype).eta

    def _scaled(self, allowed: np.ndarray, k: float, value: np.ndarray) -> np.ndarray:
        u = get_format(self.dtype).u if self.mode == "backend" else 2.0 ** -45
        return abs(k) * allowed + u * np.abs(value)

    # ------------------------------------------------------------------ the diagnosis
    def diagnose(self, quantity: str, expr: Expr, got: np.ndarray, exact: np.ndarray, allowed: np.ndarray,
                 *, identity: Identity | None = None) -> Diagnosis:
        """Classify a failing result ``got`` of ``quantity`` (``expr`` its spec formula) against ``exact``
        (float64 of the exact value) where ``allowed`` is the verdict's per-component allowance."""
        g = np.asarray(got, dtype=np.float64)
        e = np.asarray(exact, dtype=np.float64)
        allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), e.shape)
        if g.shape == e.shape and np.any(~np.isfinite(g) & np.isfinite(e)):
            bad = np.argwhere(~np.isfinite(g) & np.isfinite(e))
            idx = tuple(int(i) for i in bad[0])
            return Diagnosis("nonfinite", f"{len(bad)} non-finite component(s) where the exact value is finite, first "
                                          f"at {list(idx)}: {g[idx]!r} (exact {e[idx]:.6g}): an overflow, 0/0 or "
                                          "log(0) on the way", {"count": int(len(bad)), "index": idx})
        if g.shape != e.shape:
            if g.shape == e.shape[::-1]:
                return self._transposed_shape(quantity, g, e, allowed, identity)
            return Diagnosis("unexplained", f"shape {g.shape}, expected {e.shape}: not the transpose either")
        for cand in self._candidates(quantity, expr, e, allowed, identity):
            if not _distinguishable(cand.value, e, allowed, cand.tolerance):
                continue
            if _matches(g, cand.value, cand.tolerance):
                if cand.kind == "missing_term" and self.mode == "backend":
                    # a term below a narrower format's resolution (h - h*h = 0 once sigmoid saturates in float32)
                    # is lost to rounding, not forgotten: if the whole formula in that format explains the result,
                    # that is the diagnosis
                    narrower = self._lower_precision(quantity, expr, g, identity)
                    if narrower is not None:
                        return narrower
                return Diagnosis(cand.kind, cand.message, cand.evidence)
        if self.mode == "backend":
            # a downcast first: its signature (every component a number of the narrower dtype) is the stronger
            found = self._lower_precision(quantity, expr, g, identity) or self._textbook(expr, g, e, allowed)
            if found is not None:
                return found
        ratio = np.where(allowed > 0, np.abs(g - e) / allowed, np.inf)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
        return Diagnosis("unexplained", f"none of the usual suspects (transposed, other layout, sign, constant factor, "
                                        f"missing term, lower precision) matches; worst at {list(idx)}: got "
                                        f"{g[idx]:.17g}, exact {e[idx]:.17g}", {"index": idx})

    def _layout_class(self, identity: Identity | None) -> tuple[str, str]:
        """("wrong_layout", why) when a transposed result is what the other layout (or convention) gives."""
        if identity is None:
            return "transposed", "the transpose of the exact value"
        if identity.kind == "jacobian":
            other = "denominator" if identity.convention == "numerator" else "numerator"
            return "wrong_layout", (f"the Jacobian in {other} layout (the other convention: d{identity.of}_j/d"
                                    f"{identity.wrt}_i at row i, column j) instead of {identity.convention} layout")
        for oname, olay in self.spec.layouts.items():
            if oname == self.layout.name:
                continue
            try:
                o = olay.identity(identity.id)
            except KeyError:
                continue
            if tuple(o.shape) == tuple(identity.shape)[::-1] and identity.shape[0] != identity.shape[1]:
                return "wrong_layout", (f"the {oname} layout's gradient ({o.shape[0]} x {o.shape[1]}, the transpose) "
                                        f"instead of this layout's")
        return "transposed", "the transpose of the exact value"

    def _transposed_shape(self, quantity: str, g: np.ndarray, e: np.ndarray, allowed: np.ndarray,
                          identity: Identity | None) -> Diagnosis:
        kind, why = self._layout_class(identity)
        if _matches(g, e.T, allowed.T):
            return Diagnosis(kind, f"shape {g.shape} instead of {e.shape}, and the values are {why}: a transpose "
                                   "too many or too few", {"shape": tuple(g.shape)})
        return Diagnosis(kind if kind == "wrong_layout" else "transposed",
                         f"shape {g.shape} instead of {e.shape} (transposed), and the values are not the transposed "
                         "exact values either", {"shape": tuple(g.shape), "values_match": False})

    def _candidates(self, quantity: str, expr: Expr, e: np.ndarray, allowed: np.ndarray,
                    identity: Identity | None) -> Iterable[_Candidate]:
        yield _Candidate("sign_flipped", "minus the exact value: the sign is flipped (e.g. the negative gradient, "
                                         "y - yhat for yhat - y)", -e, allowed + 0.0)
        if e.shape[0] == e.shape[1] and e.shape[0] > 1:
            kind, why = self._layout_class(identity)
            yield _Candidate(kind, f"{why}: the values are transposed", e.T, allowed.T + 0.0)
        for k, why in self._factors(e):
            v = k * e
            yield _Candidate("constant_factor", f"{why}: the result is {_ktext(k)} times the exact value", v,
                             self._scaled(allowed, k, v), {"factor": float(k)})
        if e.shape[0] == e.shape[1] and e.shape[0] > 1:
            d = np.diag(np.diag(e))
            yield _Candidate("missing_term", "only the diagonal of the exact matrix: the off-diagonal terms are missing "
                                             "(a function like softmax treated as if it acted elementwise)",
                             d, allowed + 0.0)
        yield from self._formula_candidates(quantity, expr, e, identity)

    def _factors(self, e: np.ndarray) -> list[tuple[float, str]]:
        n = None
        data = [k for k, info in self.spec.inputs.items() if info.get("role") == "data"]
        if data:
            dim = self.layout.shapes[data[0]][self.layout.sample_axis]
            n = self.sizes.get(dim) if isinstance(dim, str) else None
        out: list[tuple[float, str]] = []
        if n and n > 1:
            out.append((1.0 / n, f"a mean over the batch where the loss is a sum (factor 1/n, n = {n})"))
            out.append((float(n), f"a sum over the batch where a mean is meant (factor n = {n})"))
        for k in (2.0, 0.5, 4.0, 0.25, 3.0, 1.0 / 3):
            if all(abs(k - f) > 1e-12 for f, _ in out):
                out.append((k, f"off by a constant factor {_ktext(k)}"))
        return out

    def _formula_candidates(self, quantity: str, expr: Expr, e: np.ndarray,
                            identity: Identity | None) -> Iterable[_Candidate]:
        """The formula with one additive term dropped, and the other layout's formula read in this layout."""
        when = identity.when if identity is not None else {}
        kind = identity.kind if identity is not None else None
        pinned = {k: substitute(s, when) for k, s in self.layout.value_shapes.items()}
        cs = concrete_shapes(pinned, self.sizes)
        for path, node in _additive_nodes(expr):
            for keep, dropped in ((node.left, node.right), (node.right, node.left)):
                kept = keep if (keep is node.left or node.op == "+") else Neg(keep)
                cand = replace_at(expr, path, kept)
                if try_shape(cand, cs) != e.shape:
                    continue
                v = self.env.approx(cand)
                if v is None:
                    continue
                yield _Candidate("missing_term", f"the formula without the term {to_text(dropped)}: "
                                                 f"{to_text(cand)}", v, self._formula_tolerance(cand, v, kind),
                                 {"formula": to_text(cand), "dropped": to_text(dropped)})
        for path, node in transpose_candidates(expr, pinned):
            new = toggle_transpose(node)
            cand = replace_at(expr, path, new)
            if try_shape(cand, cs) != e.shape:
                continue
            v = self.env.approx(cand)
            if v is None:
                continue
            yield _Candidate("transposed", f"{to_text(new)} in place of {to_text(node)} inside the formula: "
                                           f"{to_text(cand)}", v, self._formula_tolerance(cand, v, kind),
                             {"formula": to_text(cand)})
        if identity is not None:
            for oname, olay in self.spec.layouts.items():
                if oname == self.layout.name:
                    continue
                try:
                    o = olay.identity(identity.id)
                except KeyError:
                    continue
                if o.expr == identity.expr or try_shape(o.expr, cs) != e.shape:
                    continue
                v = self.env.approx(o.expr)
                if v is None:
                    continue
                yield _Candidate("wrong_layout", f"the {oname} layout's formula {to_text(o.expr)} read in the "
                                                 f"{self.layout.name} layout", v, self._formula_tolerance(o.expr, v, kind),
                                 {"formula": to_text(o.expr)})

    def _textbook(self, expr: Expr, g: np.ndarray, e: np.ndarray, allowed: np.ndarray) -> Diagnosis | None:
        m = textbook_match(self.spec, self.layout, self.inputs, self.dtype, expr, g, e, allowed, self._textbooks)
        if m is None:
            return None
        book = m.textbook
        tail = "negative" if book.tail_sign < 0 else "positive"
        where = f" in regime {self.regime}" if self.regime else ""
        lo, hi = m.argument_range
        others = [b.formula.replace("X", "a") for b in m.alternatives]
        also = f" (or {' or '.join(others)}: the bounds cannot tell them apart on this case)" if others else ""
        return Diagnosis("less_accurate_formula",
                         f"{book.primitive} evaluated by the less accurate textbook formula "
                         f"{book.formula.replace('X', 'a')}{also}: it breaks in the {tail} tail of its argument "
                         f"(here a from {lo:.3g} to {hi:.3g}{where}), where {book.why}; the result is within that "
                         f"formula's error bound, not within {book.primitive}'s. Use a formula accurate in both "
                         f"tails (e.g. exp(-|a|) / (1 + exp(-|a|)) for a < 0) or the library's own {book.primitive}",
                         {"primitive": book.primitive, "formula": book.formula.replace("X", "a"), "alternatives": others,
                          "tail": tail,
                          "regime": self.regime, "argument_min": lo, "argument_max": hi, "failing": m.failing})

    def _lower_precision(self, quantity: str, expr: Expr, g: np.ndarray, identity: Identity | None) -> Diagnosis | None:

        for narrow in NARROWER.get(self.dtype, ()):
            if narrow not in self.spec.tolerance.accumulate:
                continue
            if narrow not in self._narrow:
                fmt = get_format(narrow)
                rounded = {k: round_hilo(v.astype(np.float64), np.zeros(v.shape), fmt).astype(np.float64)
                           for k, v in self.inputs.items()}
                sized = [i for i in self.layout.identities if all(self.sizes.get(d) == v for d, v in i.when.items())]
                try:
                    ev = oracle.evaluate(self.layout, rounded, sized)
                    bounds = ErrorBounds(self.layout, ev.nodes, rounded, narrow, self.spec.tolerance)
                except Exception:  # an input that overflows the narrow format, an oracle failure: no verdict
                    self._narrow[narrow] = None
                    continue
                self._narrow[narrow] = (ev, bounds)
            got = self._narrow[narrow]
            if got is None or quantity not in got[0].values:
                continue
            ev, bounds = got
            ex = ev.values[quantity]
            kind = identity.kind if identity is not None else None
            allowed = self.spec.tolerance.safety_factor * bounds.bound(expr, kind) + get_format(narrow).eta
            err = np.abs((g - ex.hi) - ex.lo)
            representable = bool(np.all(is_representable(g, get_format(narrow))))
            if representable and np.all(np.isfinite(allowed)) and np.all(err <= allowed):
                return Diagnosis("lower_precision",
                                 f"every component is a {narrow} number within the {narrow} bound of a {narrow} "
                                 f"evaluation (from the inputs rounded to {narrow}), though not within the "
                                 f"{self.dtype} bound: computed in {narrow}, returned as {self.dtype}",
                                 {"narrower": narrow})
        return None


def _ktext(k: float) -> str:
    f = Fraction(k).limit_denominator(64)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _additive_nodes(expr: Expr, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], BinOp]]:
    out: list[tuple[tuple[int, ...], BinOp]] = []
    if isinstance(expr, BinOp) and expr.op in "+-":
        out.append((path, expr))
    for i, child in enumerate(expr.children()):
        out.extend(_additive_nodes(child, path + (i,)))
    return out


def _exact_tolerance(value: np.ndarray) -> np.ndarray:
    scale = float(np.max(np.abs(value))) if value.size else 0.0
    return 2.0 ** -40 * (np.abs(value) + scale) + 1e-300


def _matches(got: np.ndarray, cand: np.ndarray, tol: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.all(np.isfinite(got)) and np.all(np.abs(got - cand) <= tol))


def _distinguishable(cand: np.ndarray, exact: np.ndarray, allowed: np.ndarray, tol: np.ndarray) -> bool:
    """The candidate is not itself a correct result: somewhere it is farther from the exact value than both
    tolerances together (else a correct backend could match it by chance)."""
    with np.errstate(all="ignore"):
        return bool(np.any(np.abs(cand - exact) > allowed + tol))


# --------------------------------------------------------------------------- group level

def refine_group(records: Sequence[Any], spec: Spec, regime: str) -> list[Any]:
    """Turn per-case diagnoses into a tail-failure diagnosis where the pattern over magnitudes shows one.

    For each quantity of a (layout, dtype, regime) group whose regime sweeps a
    magnitude: if every case passes at the smaller magnitudes and the failures
    start at some magnitude m0 (and continue above it), the failing records
    whose per-case class was ``unexplained`` become ``tail_failure``; a
    ``nonfinite`` one keeps its class and gains the pattern. Records are
    frozen dataclasses with a ``diagnosis`` dict; new ones are returned.
    """
    reg = spec.regimes[regime]
    mags = [m for m in reg.magnitudes if m is not None]
    if len(mags) < 2:
        return list(records)
    by_q: dict[str, list[Any]] = {}
    for r in records:
        by_q.setdefault(r.quantity, []).append(r)
    patterns: dict[str, tuple[float, float]] = {}
    for q, recs in by_q.items():
        failing = {r.magnitude for r in recs if r.status == "fail"}
        passing = {r.magnitude for r in recs if r.status == "pass"}
        if not failing:
            continue
        m0 = min(failing)
        below = [m for m in mags if m < m0]
        if below and all(m in passing and m not in failing for m in below) and \
                all(m in failing for m in mags if m >= m0):
            patterns[q] = (max(below), m0)
    out = []
    for r in records:
        d = getattr(r, "diagnosis", None)
        if r.status == "fail" and r.quantity in patterns and d is not None:
            ok_up_to, m0 = patterns[r.quantity]
            note = (f"fine in the bulk (every case passes up to magnitude {ok_up_to:g}), wrong from magnitude {m0:g} "
                    f"on, in regime {regime} ({reg.description.strip()})")
            if d.get("class") == "unexplained":
                d = {"class": "tail_failure", "message": f"a tail failure: {note}", "case_diagnosis": d.get("message"),
                     "from_magnitude": m0}
            else:
                d = dict(d, pattern=f"tail: {note}", from_magnitude=m0)
            r = replace(r, diagnosis=d)
        out.append(r)
    return out
