"""The high-precision oracle: certified reference values, and the independent check of each identity.

Certification. Every quantity is evaluated in an enclosure arithmetic (an
*engine*, :mod:`conformance.oracle.engines.base`: mpmath intervals by default, Arb balls
with ``engine="flint"``), so each component comes out as an interval that
encloses the exact value. A component is accepted when its interval is a point, or lies inside
(-2**-1100, 2**-1100) (it rounds to zero in every binary format), or is
narrower than 2**-(53 + 40) of its magnitude *and* both endpoints round to
the same float64 (Ziv's test; plus, where that float64 is a rounding midpoint
of a narrower format, the interval must not contain it, so the single
rounding into float32, float16 and bfloat16 is decided too). Otherwise the
precision doubles, from 128 bits up to 4096; the oracle never returns an
uncertified value (:class:`OracleError`). The rule is
:mod:`conformance.oracle.certify`, the same for every engine.

Independence. :func:`verify_identity` differentiates the forward definitions
with dual numbers (:class:`~conformance.oracle.arith.DualOps`), which know only each
primitive's derivative, and compares with the identity's closed form. Disjoint
intervals refute an identity rigorously; it holds on a case when both are
certified and overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from conformance.oracle.certify import MAX_BITS, START_BITS, TARGET_BITS, TIE_BITS, Exact, certified_endpoints
from conformance.oracle.engines.base import Engine
from conformance.oracle.engines.select import get_engine
from conformance.errors import OracleError
from conformance.expr import Expr, free_names, interpret
from conformance.oracle.arith import Dual, DualOps, FractionOps, endpoints, to_fraction
from conformance.oracle.program import compile_program
from conformance.oracle.higher_order import HIGHER_ORDER_KINDS, higher_order_derivative
from conformance.spec.model import Identity, Layout


__all__ = [
    "Exact",
    "OracleEvaluation",
    "Verification",
    "evaluate",
    "derivative",
    "verify_identity",
    "preconditions_hold",
    "applicable",
    "certify",
    "START_BITS",
    "MAX_BITS",
    "TARGET_BITS",
    "TIE_BITS",
]


@dataclass(frozen=True)
class OracleEvaluation:
    """Everything the comparison needs about one case.

    ``values`` maps forward names and identity ids to certified values;
    ``nodes`` gives a float64 approximation of every sub-expression (the error
    bounds are computed from them); ``preconditions`` says which hold exactly;
    ``precision`` is the number of bits at which everything was certified.
    """

    values: Mapping[str, Exact]
    nodes: Mapping[Expr, np.ndarray]
    preconditions: Mapping[str, bool]
    precision: int


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one identity against the derivative of the forward definitions.

    ``verdict`` is ``holds``, ``refuted`` or ``not_applicable``.
    """

    identity: str
    layout: str
    verdict: str
    reason: str
    worst_index: tuple[int, ...] | None = None
    identity_value: float | None = None
    derivative_value: float | None = None
    precision: int = 0

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"


# --------------------------------------------------------------------------- certification

def _certified_component(x: Any, *, waive_ties: bool = False) -> tuple[float, float] | None:
    """(hi, lo) of one mpmath interval if it is certified, else None (the rule:
    :func:`conformance.oracle.certify.certified_endpoints`).

    ``waive_ties``: accept a narrow interval that contains a rounding midpoint
    (of float64 or of a narrower format). Such a value is a midpoint plus a
    perturbation far below any precision worth chasing (one-hot labels and a
    logit gap of 1e4 perturb by e**-10000): its rounding is then ambiguous by
    one ulp, and the evaluation counts it as undecided. The verdict is not
    affected (it compares with the exact value, not its rounding).
    """
    a, b = endpoints(x)
    return certified_endpoints(a, b, waive_ties=waive_ties)


def certify(fn: Callable[[], tuple[dict[str, Any], Any]], *, start_bits: int = START_BITS,
            engine: "str | Engine | None" = None) -> tuple[dict[str, Exact], dict[str, Any], Any, int]:
    """Run ``fn()`` at increasing precisions of ``engine`` until every output component is certified.

    ``fn`` computes with the engine's algebra (it runs inside the engine's
    precision context). Returns the certified values, the raw enclosures,
    ``fn``'s extra output and the precision.
    """
    eng = get_engine(engine)

    def attempt(p: int) -> tuple[dict[str, Exact], dict[str, Any], Any, int] | None:
        raw, extra = fn()
        exact = eng.certify_all(raw, waive_ties=p >= TIE_BITS, bits=p)
        return None if exact is None else (exact, raw, extra, p)

    return _escalate(attempt, start_bits, eng)


def _escalate(attempt: Callable[[int], Any], start_bits: int, eng: Engine) -> Any:
    """``attempt(p)`` inside the engine's precision ``p``, from ``start_bits`` doubling up to MAX_BITS, until it
    returns something other than None (its certified result); an OracleError past MAX_BITS."""
    p = max(int(start_bits), 2)  # at most log2(MAX_BITS / start_bits) + 1 evaluations, never a loop at 0 bits
    while p <= MAX_BITS:
        with eng.precision(p):
            got = attempt(p)
        if got is not None:
            return got
        p *= 2
    raise OracleError(f"could not certify the reference values with {MAX_BITS} bits of precision "
                      "(cancellation beyond what the oracle will chase)")


# --------------------------------------------------------------------------- evaluation

def preconditions_hold(layout: Layout, inputs: Mapping[str, np.ndarray]) -> dict[str, bool]:
    """Decide each precondition exactly, in rational arithmetic."""
    needed: set[str] = set()
    for pre in layout.preconditions.values():
        needed |= free_names(pre.expr)
    env = {k: to_fraction(v) for k, v in inputs.items() if k in needed}  # Fractions are slow: only what is used
    ops = FractionOps()
    out: dict[str, bool] = {}
    for name, pre in layout.preconditions.items():
        value = interpret(pre.expr, env, ops)
        out[name] = all(v == pre.equals for v in value.reshape(-1).tolist())
    return out


def applicable(identity: Identity, sizes: Mapping[str, int], preconditions: Mapping[str, bool]) -> bool:
    """Whether an identity is claimed for a case: its pinned dimensions match and its preconditions hold."""
    if any(sizes.get(d) != v for d, v in identity.when.items()):
        return False
    return all(preconditions.get(r, False) for r in identity.requires)


def _forward(layout: Layout, env: dict[str, Any], ops: Any, cache: dict[Expr, Any] | None) -> dict[str, Any]:
    for d in layout.forward:
        env[d.name] = interpret(d.expr, env, ops, cache)
    return env


def evaluate(
    layout: Layout,
    inputs: Mapping[str, np.ndarray],
    identities: Sequence[Identity],
    *,
    start_bits: int = START_BITS,
    engine: "str | Engine | None" = None,
) -> OracleEvaluation:
    """Certified forward values and identity values for one case.

    ``engine``: the arithmetic (:mod:`conformance.oracle.engines.base`; default Arb balls where
    python-flint is installed, else mpmath intervals: :mod:`conformance.oracle.engines.select`). The on-disk cache sits above this function
    (:func:`conformance.cache.oracle_cache.cached_evaluate`): the oracle never reads a cache.

    The layout runs as a compiled program (:mod:`conformance.oracle.program`: ``interpret``'s calls, without its
    walk). A precision stops at its first output that is not certified, and the next one evaluates and certifies
    that output first: a third of the default suite's cases need two to five precisions, and the one that
    passes is evaluated in full, so the values, the nodes and the precision are those of a full evaluation at
    every precision (tests/test_program.py). One difference: an operation the algebra refuses (DomainError) in
    an output that a failing precision never reached is met, if at all, at the next precision.
    """
    eng = get_engine(engine)
    pre = preconditions_hold(layout, inputs)
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    program = compile_program(layout, identities)
    steps = {name: step for name, step in program.outputs}  # a later output of the same name wins, as in a dict
    position = {name: pos for pos, (name, _) in enumerate(program.outputs)}  # the last of a name, as steps
    suspect: list[str] = []  # the first output that failed at the last precision: tried first at the next

    def attempt(p: int) -> tuple[dict[str, Exact], list[Any], Any, int] | None:
        ops, env = eng.start(arrays)
        values: list[Any] = [None] * len(program.steps)
        exact: dict[str, Exact] = {}
        for chunk in _chunks(list(steps), suspect):
            program.run(ops, env, values, [position[n] for n in chunk])
            got, culprit = eng.certify_or_locate({n: values[steps[n]] for n in chunk}, waive_ties=p >= TIE_BITS,
                                                 bits=p)
            if got is None:
                suspect[:] = [culprit] if culprit is not None else []
                return None
            exact.update(got)
        return exact, values, ops, p

    exact, values, ops, prec = _escalate(attempt, start_bits, eng)
    nodes = {s.expr: values[i] for i, s in enumerate(program.steps)}
    return OracleEvaluation(values={n: exact[n] for n in steps}, nodes=eng.approx_all(nodes, ops),
                            preconditions=pre, precision=prec)


def _chunks(names: list[str], suspect: list[str]) -> list[list[str]]:
    """The outputs of one precision in the order they are certified, a part that fails stopping the precision
    (every output is certified before a precision is accepted, so the order changes only the work spent on a
    precision that fails): first the output that failed first at the last precision (a cancellation that
    needed more bits there often needs more here), then the rest."""
    probe = [n for n in suspect if n in names]
    rest = [n for n in names if n not in probe]
    return [c for c in (probe, rest) if c]


# --------------------------------------------------------------------------- derivatives

def derivative(layout: Layout, inputs: Mapping[str, np.ndarray], *, kind: str, of: str, wrt: str,
               convention: str | None = None, direction: str | None = None,
               engine: "str | Engine" = "mpmath") -> np.ndarray:
    """The derivative of forward value ``of`` with respect to ``wrt`` (an input or a forward value), by
    forward-mode dual numbers over ``engine``'s enclosures (mpmath intervals unless named) at its current
    precision (call inside ``engine.precision``; mpmath: ``mpmath.iv.prec``), in the identity's layout.
    The kinds jvp, vjp, hessian and hvp (along the input ``direction``) come from second-order jets
    (:mod:`conformance.oracle.higher_order`) over the same enclosures."""
    if kind in HIGHER_ORDER_KINDS:
        return higher_order_derivative(layout, inputs, kind=kind, of=of, wrt=wrt, direction=direction,
                                       engine=engine)
    eng = get_engine(engine)
    ops = DualOps(eng.ops())
    env: dict[str, Dual] = {}
    seeded = False

    def seed(value: np.ndarray) -> Dual:
        k = value.size
        return Dual(value, eng.from_floats(np.eye(k)).reshape((k,) + value.shape))

    for name, arr in inputs.items():
        value = eng.from_floats(arr)
        if name == wrt:
            env[name] = seed(value)
            seeded = True
        else:
            env[name] = Dual(value, None)
    for d in layout.forward:
        val = interpret(d.expr, env, ops, {})
        if d.name == wrt:
            val = seed(val.v)
            seeded = True
        env[d.name] = val
    if not seeded:
        raise KeyError(f"{wrt!r} is neither an input nor a forward value")
    out = env[of]
    wrt_shape = env[wrt].v.shape
    k = int(np.prod(wrt_shape))
    t = eng.from_floats(np.zeros((k,) + out.v.shape)) if out.t is None else out.t
    if kind == "gradient":
        if out.v.shape != (1, 1):
            raise ValueError(f"gradient of non-scalar {of!r}")
        return np.array(t).reshape(wrt_shape)
    flat = np.array(t).reshape(k, -1)  # row j: d of / d wrt_j
    return flat.T.copy() if convention == "numerator" else flat.copy()


def verify_identity(
    layout: Layout,
    identity: Identity,
    inputs: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    *,
    expr: Expr | None = None,
    ignore_requires: bool = False,
    start_bits: int = START_BITS,
    engine: "str | Engine | None" = None,
) -> Verification:
    """Check ``identity`` (or another closed form ``expr`` claimed for the same derivative) against the
    dual-number derivative of the forward definitions, on one case (cached above this function:
    :func:`conformance.cache.oracle_cache.cached_verify_identity`).

    Both sides are enclosures in one engine (``engine``, default the oracle's): disjoint enclosures refute the
    identity rigorously, at any precision; it holds when they overlap and both are certified (the rule of
    :mod:`conformance.oracle.certify`), else the precision doubles. Any sound engine gives the same verdict
    except where the two values differ by less than the enclosures' width at every precision tried."""
    if any(sizes.get(d) != v for d, v in identity.when.items()):
        return Verification(identity.id, layout.name, "not_applicable", "pinned dimensions do not match this case")
    pre = preconditions_hold(layout, inputs)
    if not ignore_requires and not all(pre.get(r, False) for r in identity.requires):
        return Verification(identity.id, layout.name, "not_applicable", "preconditions do not hold for this case")
    closed_form = expr if expr is not None else identity.expr
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    eng = get_engine(engine)
    p = max(int(start_bits), 2)
    while p <= MAX_BITS:
        with eng.precision(p):
            ops, env = eng.start(arrays)
            _forward(layout, env, ops, {})
            closed = interpret(closed_form, env, ops, {})
            ad = derivative(layout, arrays, kind=identity.kind, of=identity.of, wrt=identity.wrt,
                            convention=identity.convention, direction=identity.direction, engine=eng)
            if closed.shape != ad.shape:
                return Verification(identity.id, layout.name, "refuted",
                                    f"shape {closed.shape[0]} x {closed.shape[1]} differs from the derivative's "
                                    f"{ad.shape[0]} x {ad.shape[1]}", precision=p)
            closed = np.broadcast_to(closed, ad.shape)
            idx = eng.first_disjoint(closed, ad)
            if idx is not None:
                return Verification(
                    identity.id, layout.name, "refuted",
                    f"differs from the derivative of the forward definitions at component {idx}",
                    idx, eng.midpoint(closed[idx]), eng.midpoint(ad[idx]), p)
            if eng.certify_array(closed, waive_ties=False, bits=p) is not None and \
                    eng.certify_array(ad, waive_ties=False, bits=p) is not None:
                return Verification(identity.id, layout.name, "holds",
                                    "agrees with the derivative of the forward definitions", precision=p)
        p *= 2
    raise OracleError(f"could not decide identity {identity.id!r} with {MAX_BITS} bits of precision")
