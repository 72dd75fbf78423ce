"""Judge one backend result against the oracle: a verdict (sound, condition-aware) and a grade (ulps).

Two different questions, both answered for every component:

* the **verdict**: is ``|computed - exact| <= safety_factor * bound + eta``,
  with ``bound`` the running error bound of the identity in this dtype
  (:mod:`conformance.judge.bounds`)? The difference is taken against the exact
  value itself (the double-double ``hi + lo``), not against its rounding, so
  sub-ulp errors in float64 are measured too.
* the **grade**: how many ulps of the dtype separate the result from the
  correctly rounded exact value (a libm-style accuracy table). A result can
  conform and grade poorly: returning 0 for sigmoid'(37) in float64 is within
  what a correct evaluation of ``h - h*h`` produces, and 2**50 ulps away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.formats import get_format, round_hilo, ulp_distance
from conformance.oracle.certify import Exact
from conformance.statuses import CRASHED, ERROR, FAIL, NOT_SUPPORTED, PASS, STATUSES, TIMED_OUT  # re-exported

__all__ = [
    "PASS", "FAIL", "ERROR", "NOT_SUPPORTED", "CRASHED", "TIMED_OUT", "STATUSES",
    "Comparison", "compare", "ULP_BUCKETS", "ulp_bucket_labels",
]


#: ulp histogram: bucket 0 holds exact results, bucket b (1..32) holds [2**(b-1), 2**b), bucket 33 NaN/inf.
ULP_BUCKETS = 34


def ulp_bucket_labels() -> list[str]:
    labels = ["0"]
    for b in range(1, 33):
        lo, hi = 2 ** (b - 1), 2 ** b - 1
        labels.append(str(lo) if lo == hi else f"{lo}-{hi}" if b < 12 else f"2^{b - 1}+")
    labels.append("nan/inf")
    return labels


@dataclass(frozen=True)
class Comparison:
    status: str
    detail: str = ""  # out_of_bound | nonfinite | wrong_shape | wrong_dtype | not_an_array | ''
    message: str = ""
    components: int = 0
    max_ratio: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_ulp: float | None = None
    median_ulp: float | None = None
    worst_index: tuple[int, ...] | None = None
    worst_got: float | None = None
    worst_exact: float | None = None
    worst_bound: float | None = None
    worst_allowed: float | None = None
    uninformative: int = 0  # components whose bound is no smaller than the exact value itself
    toward_zero: int = 0  # inexact finite components smaller in magnitude than the exact value, of its sign (or 0)
    away_from_zero: int = 0  # the other inexact finite components (larger in magnitude, or of the other sign)
    ulp_hist: tuple[int, ...] = field(default=(), repr=False)


def _hist(ulps: np.ndarray) -> tuple[int, ...]:
    v = np.asarray(ulps, dtype=np.float64).reshape(-1)
    finite = np.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(v > 0, np.floor(np.log2(np.where(v > 0, v, 1.0))) + 1, 0.0)
    b = np.where(finite, np.minimum(b, 32), ULP_BUCKETS - 1).astype(np.int64)
    return tuple(int(c) for c in np.bincount(b, minlength=ULP_BUCKETS))


def _f(x: Any) -> float:
    return float(x)


def _median(values: np.ndarray) -> float:
    """``numpy.median`` of NaN-free values, without its per-call overhead (the same float: the middle value,
    or the mean (a + b) / 2 of the two middle values)."""
    s = np.sort(values, axis=None)
    n = s.size
    return float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)


def compare(got: Any, exact: Exact, bound: np.ndarray, *, dtype: str, expected_shape: tuple[int, int],
            safety_factor: float) -> Comparison:
    """Verdict and grade of ``got`` (the backend's array for one quantity of one case)."""
    fmt = get_format(dtype)
    if not isinstance(got, np.ndarray):
        return Comparison(status=FAIL, detail="not_an_array", message=f"expected an array, got {type(got).__name__}")
    if got.shape != tuple(expected_shape):
        return Comparison(status=FAIL, detail="wrong_shape",
                          message=f"shape {tuple(got.shape)}, expected {tuple(expected_shape)}")
    if got.dtype != fmt.dtype:
        return Comparison(status=FAIL, detail="wrong_dtype", message=f"dtype {got.dtype}, expected {fmt.name}")
    g = got.astype(np.float64)
    hi, lo = exact.hi, exact.lo
    ref = round_hilo(hi, lo, fmt)  # correctly rounded, in the dtype
    ref64 = ref.astype(np.float64)
    bound = np.broadcast_to(bound, g.shape)
    with np.errstate(all="ignore"):
        allowed = safety_factor * bound + fmt.eta
        same_inf = np.isinf(g) & np.isinf(ref64) & (np.sign(g) == np.sign(ref64))
        err = np.where(same_inf, 0.0, np.abs((g - hi) - lo))
        err = np.where(np.isnan(g), np.inf, err)
        ratio = np.where(err == 0, 0.0, err / allowed)
        mag = np.abs(hi)
        rel = np.where(err == 0, 0.0, err / mag)
    ulps = ulp_distance(got, ref, fmt)
    nonfinite = ~np.isfinite(g) & ~same_inf
    flat_ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = np.unravel_index(int(np.argmax(flat_ratio)), g.shape) if g.size else None
    covered = bound >= np.abs(hi)
    uninformative = int(covered.sum() - (covered & (hi == 0) & (bound == 0)).sum())
    # the sign of the errors, for the grade tier's sign-bias finding (conformance/results/summary.py): a store
    # that truncates toward zero passes every per-component check, and shows here over many components
    with np.errstate(all="ignore"):
        inexact = np.isfinite(g) & (err > 0) & np.isfinite(hi)
        exact_val = hi + lo
        toward = inexact & (np.abs(g) < np.abs(exact_val)) & (np.sign(g) * np.sign(exact_val) >= 0)
    n_toward = int(toward.sum())
    common: dict[str, Any] = dict(
        components=int(g.size),
        max_ratio=_f(flat_ratio.max()) if g.size else 0.0,
        max_abs_err=_f(err.max()) if g.size else 0.0,
        max_rel_err=_f(rel.max()) if g.size else 0.0,
        max_ulp=_f(ulps.max()) if g.size else 0.0,
        median_ulp=_median(ulps) if g.size else 0.0,
        worst_index=tuple(int(i) for i in worst) if worst is not None else None,
        worst_got=_f(g[worst]) if worst is not None else None,
        worst_exact=_f(hi[worst]) if worst is not None else None,
        worst_bound=_f(bound[worst]) if worst is not None else None,
        worst_allowed=_f(allowed[worst]) if worst is not None else None,
        uninformative=max(uninformative, 0),
        toward_zero=n_toward,
        away_from_zero=int(inexact.sum()) - n_toward,
        ulp_hist=_hist(ulps),
    )
    if nonfinite.any():
        idx = tuple(int(i) for i in np.argwhere(nonfinite)[0])
        return Comparison(status=FAIL, detail="nonfinite",
                          message=f"{int(nonfinite.sum())} non-finite component(s) where the exact value is finite, "
                                  f"first at {idx}: {g[idx]!r} (exact {hi[idx]:.6g})",
                          **common)
    if (err <= allowed).all():
        return Comparison(status=PASS, **common)
    bad = int(np.sum(err > allowed))
    w = common["worst_index"]
    return Comparison(
        status=FAIL, detail="out_of_bound",
        message=(f"{bad} of {g.size} component(s) beyond the bound; worst at {w}: got {common['worst_got']:.17g}, "
                 f"exact {common['worst_exact']:.17g}, |error| {common['max_abs_err']:.3g} > allowed "
                 f"{common['worst_allowed']:.3g} (ratio {common['max_ratio']:.3g})"),
        **common,
    )
