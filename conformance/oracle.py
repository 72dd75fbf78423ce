"""The high-precision oracle: certified reference values, and the independent check of each identity.

Certification. Every quantity is evaluated in mpmath interval arithmetic, so
each component comes out as an interval that encloses the exact value. A
component is accepted when its interval is a point, or lies inside
(-2**-1100, 2**-1100) (it rounds to zero in every binary format), or is
narrower than 2**-(53 + 40) of its magnitude *and* both endpoints round to
the same float64 (Ziv's test; plus, where that float64 is a rounding midpoint
of a narrower format, the interval must not contain it, so the single
rounding into float32, float16 and bfloat16 is decided too). Otherwise the
precision doubles, from 128 bits up to 4096; the oracle never returns an
uncertified value (:class:`OracleError`).

Independence. :func:`verify_identity` differentiates the forward definitions
with dual numbers (:class:`~conformance.mparith.DualOps`), which know only each
primitive's derivative, and compares with the identity's closed form. Disjoint
intervals refute an identity rigorously; it holds on a case when both are
certified and overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import mpmath
import numpy as np

from .errors import OracleError
from .expr import Expr, interpret
from .formats import FORMATS, is_midpoint, round_mpf
from .mparith import Dual, DualOps, FractionOps, IvOps, endpoints, iv_mid_float, to_fraction, to_iv
from .spec import Identity, Layout

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
]

START_BITS = 128
MAX_BITS = 4096
TIE_BITS = 1024  # from here on, a narrower format's rounding tie is recorded as undecided, not chased
TARGET_BITS = 53 + 40
_TINY = mpmath.mpf(2) ** -1100
_F64 = FORMATS["float64"]
_NARROW = (FORMATS["float32"], FORMATS["float16"], FORMATS["bfloat16"])


@dataclass(frozen=True)
class Exact:
    """A certified value per component as a double-double: ``hi`` is the correctly rounded float64 of
    the exact value, ``lo`` the float64 nearest to the remainder (exact value - hi)."""

    hi: np.ndarray
    lo: np.ndarray
    undecided: int = 0  # components whose rounding into a narrower format is ambiguous by one ulp

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape


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
    """(hi, lo) of one interval if it is certified, else None.

    ``waive_ties``: accept a narrow interval that contains a rounding midpoint
    (of float64 or of a narrower format). Such a value is a midpoint plus a
    perturbation far below any precision worth chasing (one-hot labels and a
    logit gap of 1e4 perturb by e**-10000): its rounding is then ambiguous by
    one ulp, and the evaluation counts it as undecided. The verdict is not
    affected (it compares with the exact value, not its rounding).
    """
    a, b = endpoints(x)
    if a == b:
        if not mpmath.isfinite(a):
            return (float(a), 0.0) if mpmath.isinf(a) else None
        hi = round_mpf(a, _F64)
        return hi, round_mpf(a - mpmath.mpf(hi), _F64) if mpmath.isfinite(hi) else 0.0
    if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
        return None
    if -_TINY < a and b < _TINY:
        return 0.0, 0.0
    if a <= 0 <= b:
        return None
    if (b - a) > min(abs(a), abs(b)) * mpmath.mpf(2) ** -TARGET_BITS:
        return None
    hi = round_mpf(a, _F64)
    mid = (a + b) / 2
    if round_mpf(b, _F64) != hi:
        if not waive_ties:
            return None
        hi = round_mpf(mid, _F64)  # a float64 rounding midpoint lies inside: ties to even at the midpoint
    elif not waive_ties and a <= hi <= b and any(is_midpoint(hi, f) for f in _NARROW):
        return None
    return hi, round_mpf(mid - mpmath.mpf(hi), _F64)


def _to_exact(arr: np.ndarray, *, waive_ties: bool = False) -> Exact | None:
    hi = np.empty(arr.shape, dtype=np.float64)
    lo = np.empty(arr.shape, dtype=np.float64)
    undecided = 0
    for idx, v in np.ndenumerate(arr):
        got = _certified_component(v)
        if got is None and waive_ties:
            got = _certified_component(v, waive_ties=True)
            undecided += got is not None
        if got is None:
            return None
        hi[idx], lo[idx] = got
    return Exact(hi, lo, undecided)


def certify(fn: Callable[[], tuple[dict[str, np.ndarray], Any]], *, start_bits: int = START_BITS
            ) -> tuple[dict[str, Exact], dict[str, np.ndarray], Any, int]:
    """Run ``fn()`` at increasing interval precisions until every output component is certified.

    Returns the certified values, the raw intervals, ``fn``'s extra output and the precision.
    """
    iv = mpmath.iv
    saved = iv.prec
    p = start_bits
    try:
        while p <= MAX_BITS:
            iv.prec = p
            raw, extra = fn()
            with mpmath.workprec(2 * p):
                exact = {}
                for key, arr in raw.items():
                    e = _to_exact(arr, waive_ties=p >= TIE_BITS)
                    if e is None:
                        break
                    exact[key] = e
                else:
                    return exact, raw, extra, p
            p *= 2
    finally:
        iv.prec = saved
    raise OracleError(f"could not certify the reference values with {MAX_BITS} bits of precision "
                      "(cancellation beyond what the oracle will chase)")


# --------------------------------------------------------------------------- evaluation

def preconditions_hold(layout: Layout, inputs: Mapping[str, np.ndarray]) -> dict[str, bool]:
    """Decide each precondition exactly, in rational arithmetic."""
    env = {k: to_fraction(v) for k, v in inputs.items()}
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
) -> OracleEvaluation:
    """Certified forward values and identity values for one case."""
    pre = preconditions_hold(layout, inputs)
    arrays = {k: np.asarray(v) for k, v in inputs.items()}

    def run() -> tuple[dict[str, np.ndarray], dict[Expr, np.ndarray]]:
        env = {k: to_iv(v) for k, v in arrays.items()}
        ops = IvOps()
        cache: dict[Expr, np.ndarray] = {}
        _forward(layout, env, ops, cache)
        out = {d.name: env[d.name] for d in layout.forward}
        for ident in identities:
            out[ident.id] = interpret(ident.expr, env, ops, cache)
        return out, cache

    exact, _, nodes, prec = certify(run, start_bits=start_bits)
    approx = {e: iv_mid_float(v) for e, v in nodes.items()}
    return OracleEvaluation(values=exact, nodes=approx, preconditions=pre, precision=prec)


# --------------------------------------------------------------------------- derivatives

def derivative(layout: Layout, inputs: Mapping[str, np.ndarray], *, kind: str, of: str, wrt: str,
               convention: str | None = None) -> np.ndarray:
    """The derivative of forward value ``of`` with respect to ``wrt`` (an input or a forward value), by
    forward-mode dual numbers over intervals at the current ``mpmath.iv.prec``, in the identity's layout."""
    iv = mpmath.iv
    ops = DualOps()
    env: dict[str, Dual] = {}
    seeded = False

    def seed(value: np.ndarray) -> Dual:
        k = value.size
        t = np.empty((k, k), dtype=object)
        for i in range(k):
            for j in range(k):
                t[i, j] = iv.mpf(1 if i == j else 0)
        return Dual(value, t.reshape((k,) + value.shape))

    for name, arr in inputs.items():
        value = to_iv(arr)
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
    if out.t is None:
        t = np.empty((k,) + out.v.shape, dtype=object)
        for idx in np.ndindex(t.shape):
            t[idx] = iv.mpf(0)
    else:
        t = out.t
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
) -> Verification:
    """Check ``identity`` (or another closed form ``expr`` claimed for the same derivative) against the
    dual-number derivative of the forward definitions, on one case."""
    if any(sizes.get(d) != v for d, v in identity.when.items()):
        return Verification(identity.id, layout.name, "not_applicable", "pinned dimensions do not match this case")
    pre = preconditions_hold(layout, inputs)
    if not ignore_requires and not all(pre.get(r, False) for r in identity.requires):
        return Verification(identity.id, layout.name, "not_applicable", "preconditions do not hold for this case")
    closed_form = expr if expr is not None else identity.expr
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    iv = mpmath.iv
    saved = iv.prec
    p = start_bits
    try:
        while p <= MAX_BITS:
            iv.prec = p
            env = {k: to_iv(v) for k, v in arrays.items()}
            _forward(layout, env, IvOps(), {})
            closed = interpret(closed_form, env, IvOps(), {})
            ad = derivative(layout, arrays, kind=identity.kind, of=identity.of, wrt=identity.wrt,
                            convention=identity.convention)
            if closed.shape != ad.shape:
                return Verification(identity.id, layout.name, "refuted",
                                    f"shape {closed.shape[0]} x {closed.shape[1]} differs from the derivative's "
                                    f"{ad.shape[0]} x {ad.shape[1]}", precision=p)
            closed = np.broadcast_to(closed, ad.shape)
            with mpmath.workprec(2 * p):
                # disjoint intervals refute the identity rigorously, at any precision
                for idx, d in np.ndenumerate(ad):
                    c = closed[idx]
                    (ca, cb), (da, db) = endpoints(c), endpoints(d)
                    if cb < da or db < ca:
                        return Verification(
                            identity.id, layout.name, "refuted",
                            f"differs from the derivative of the forward definitions at component {idx}",
                            tuple(int(i) for i in idx), _mid(c), _mid(d), p)
                if all(_certified_component(v) is not None for v in closed.reshape(-1)) and \
                        all(_certified_component(v) is not None for v in ad.reshape(-1)):
                    return Verification(identity.id, layout.name, "holds",
                                        "agrees with the derivative of the forward definitions", precision=p)
            p *= 2
    finally:
        iv.prec = saved
    raise OracleError(f"could not decide identity {identity.id!r} with {MAX_BITS} bits of precision")


def _mid(x: Any) -> float:
    a, b = endpoints(x)
    return float((a + b) / 2)
