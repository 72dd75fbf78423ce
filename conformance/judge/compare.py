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
from typing import Any, Sequence

import numpy as np

from conformance.formats import get_format, round_hilo, ulp_distance
from conformance.oracle.certify import Exact
from conformance.statuses import CRASHED, ERROR, FAIL, NOT_SUPPORTED, PASS, STATUSES, TIMED_OUT  # re-exported

__all__ = [
    "PASS", "FAIL", "ERROR", "NOT_SUPPORTED", "CRASHED", "TIMED_OUT", "STATUSES",
    "Comparison", "compare", "compare_many", "ULP_BUCKETS", "ulp_bucket_labels",
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
    toward_zero: int = 0  # counted components (see _directions) smaller in magnitude than the exact value, of its sign
    away_from_zero: int = 0  # the other counted components (larger in magnitude, or of the other sign)
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
    bound = np.broadcast_to(bound, g.shape)
    ref64, allowed, err, rel, ulps, nonfinite, flat_ratio, covered = _componentwise(got, hi, lo, bound, fmt,
                                                                                   safety_factor)
    worst = np.unravel_index(int(np.argmax(flat_ratio)), g.shape) if g.size else None
    uninformative = int(covered.sum() - (covered & (hi == 0) & (bound == 0)).sum())
    inexact, toward = _directions(g, hi, lo, ref64, fmt)
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


def _componentwise(got: np.ndarray, hi: np.ndarray, lo: np.ndarray, bound: np.ndarray, fmt: Any,
                   safety_factor: float) -> tuple[np.ndarray, ...]:
    """The per-component figures of a comparison, for :func:`compare` and the stacked :func:`compare_many` alike
    (one formula, so the two give the same numbers bit for bit): the correctly rounded value (as float64), what
    is allowed, the error, the relative error, the ulps, the non-finite answers, the ratio (NaN as inf) and
    whether the bound covers the exact value (uninformative)."""
    g = got.astype(np.float64)
    ref = round_hilo(hi, lo, fmt)  # correctly rounded, in the dtype
    ref64 = ref.astype(np.float64)
    with np.errstate(all="ignore"):
        allowed = safety_factor * bound + fmt.eta
        same_inf = np.isinf(g) & np.isinf(ref64) & (np.sign(g) == np.sign(ref64))
        err = np.where(same_inf, 0.0, np.abs((g - hi) - lo))
        err = np.where(np.isnan(g), np.inf, err)
        ratio = np.where(err == 0, 0.0, err / allowed)
        rel = np.where(err == 0, 0.0, err / np.abs(hi))
    ulps = ulp_distance(got, ref, fmt)
    nonfinite = ~np.isfinite(g) & ~same_inf
    flat_ratio = np.where(np.isnan(ratio), np.inf, ratio)
    return ref64, allowed, err, rel, ulps, nonfinite, flat_ratio, bound >= np.abs(hi)


def _directions(g: np.ndarray, hi: np.ndarray, lo: np.ndarray, ref64: np.ndarray,
                fmt: Any) -> tuple[np.ndarray, np.ndarray]:
    """The components that count for the grade tier's sign-bias finding (conformance/results/summary.py), and
    those of them that err toward zero. A store that truncates toward zero passes every per-component check and
    shows only over many components. Counted: finite answers that are not the correctly rounded value, where the
    exact value is in the normal range. A correctly rounded answer says nothing about a direction (which way
    rounding to nearest goes is the exact value's business: over a case's structured values it is far from one
    half), and a flush or an underflow toward zero is allowed (eta) and not a store's bias."""
    with np.errstate(all="ignore"):
        exact_val = hi + lo
        counted = np.isfinite(g) & np.isfinite(hi) & (g != ref64) & (np.abs(exact_val) >= 2.0 ** fmt.emin)
        toward = counted & (np.abs(g) < np.abs(exact_val)) & (np.sign(g) * np.sign(exact_val) >= 0)
    return counted, toward


def _regular(got: Any, exact: Exact, bound: Any, expected_shape: tuple[int, int], fmt: Any) -> bool:
    """Whether ``got`` takes the stacked path: an array of the right shape and dtype, with at least one component,
    whose exact value has its shape and whose bound broadcasts to it (anything else goes through :func:`compare`,
    which says what is wrong)."""
    return (isinstance(got, np.ndarray) and got.shape == tuple(expected_shape) and got.dtype == fmt.dtype
            and got.size > 0 and np.shape(exact.hi) == got.shape and np.shape(exact.lo) == got.shape
            and np.broadcast_shapes(np.shape(bound), got.shape) == got.shape)


def compare_many(items: Sequence[tuple[Any, Exact, np.ndarray, tuple[int, int]]], *, dtype: str,
                 safety_factor: float) -> list[Comparison]:
    """:func:`compare` of each ``(got, exact, bound, expected_shape)``, all in one dtype, with the componentwise
    work done once over the components of all of them stacked (one numpy pass instead of one per quantity: on
    the suite's small arrays the per-call overhead is most of the cost). The same numbers as :func:`compare`,
    bit for bit: every componentwise formula is the same, and each reduction (max, argmax, median, counts,
    histogram) is taken over each item's own components (``tests/test_compare_many.py``)."""
    fmt = get_format(dtype)
    out: list[Comparison | None] = [None] * len(items)
    stacked = []
    for k, (got, exact, bound, shape) in enumerate(items):
        if _regular(got, exact, bound, shape, fmt):
            stacked.append(k)
        else:
            out[k] = compare(got, exact, bound, dtype=dtype, expected_shape=shape, safety_factor=safety_factor)
    if stacked:
        for k, c in zip(stacked, _stacked([items[k] for k in stacked], fmt, safety_factor)):
            out[k] = c
    return [c for c in out if c is not None]


def _stacked(items: Sequence[tuple[Any, Exact, np.ndarray, tuple[int, int]]], fmt: Any,
             safety_factor: float) -> list[Comparison]:
    """The comparisons of regular items (see :func:`_regular`), the componentwise part stacked."""
    sizes = [int(got.size) for got, _, _, _ in items]
    ends = np.cumsum(sizes)
    starts = ends - np.asarray(sizes)
    got_all = np.concatenate([got.reshape(-1) for got, _, _, _ in items])
    hi = np.concatenate([np.asarray(e.hi, dtype=np.float64).reshape(-1) for _, e, _, _ in items])
    lo = np.concatenate([np.asarray(e.lo, dtype=np.float64).reshape(-1) for _, e, _, _ in items])
    bound = np.concatenate([np.broadcast_to(b, got.shape).reshape(-1) for got, _, b, _ in items])
    g = got_all.astype(np.float64)
    ref64, allowed, err, rel, ulps, nonfinite, flat_ratio, covered = _componentwise(got_all, hi, lo, bound, fmt,
                                                                                   safety_factor)
    covered_zero = covered & (hi == 0) & (bound == 0)
    beyond = err > allowed
    counted, toward = _directions(g, hi, lo, ref64, fmt)
    n_counted = np.add.reduceat(counted.astype(np.int64), starts)
    n_toward = np.add.reduceat(toward.astype(np.int64), starts)
    seg = np.repeat(np.arange(len(items)), sizes)
    max_ratio = np.maximum.reduceat(flat_ratio, starts)
    max_err = np.maximum.reduceat(err, starts)
    max_rel = np.maximum.reduceat(rel, starts)
    max_ulp = np.maximum.reduceat(ulps, starts)
    n_covered = np.add.reduceat(covered.astype(np.int64), starts)
    n_covered_zero = np.add.reduceat(covered_zero.astype(np.int64), starts)
    n_nonfinite = np.add.reduceat(nonfinite.astype(np.int64), starts)
    n_beyond = np.add.reduceat(beyond.astype(np.int64), starts)
    hist = _stacked_hist(ulps, seg, len(items))
    results = []
    for k, (got, _, _, _) in enumerate(items):
        a, b = int(starts[k]), int(ends[k])
        shape = got.shape
        flat_worst = a + int(np.argmax(flat_ratio[a:b]))
        worst = np.unravel_index(flat_worst - a, shape)
        common: dict[str, Any] = dict(
            components=b - a,
            max_ratio=_f(max_ratio[k]), max_abs_err=_f(max_err[k]), max_rel_err=_f(max_rel[k]),
            max_ulp=_f(max_ulp[k]), median_ulp=_median(ulps[a:b]),
            worst_index=tuple(int(i) for i in worst),
            worst_got=_f(g[flat_worst]), worst_exact=_f(hi[flat_worst]), worst_bound=_f(bound[flat_worst]),
            worst_allowed=_f(allowed[flat_worst]),
            uninformative=max(int(n_covered[k] - n_covered_zero[k]), 0),
            toward_zero=int(n_toward[k]), away_from_zero=int(n_counted[k] - n_toward[k]),
            ulp_hist=hist[k],
        )
        if n_nonfinite[k]:
            first = a + int(np.argmax(nonfinite[a:b]))
            idx = tuple(int(i) for i in np.unravel_index(first - a, shape))
            gv = g[first]
            results.append(Comparison(
                status=FAIL, detail="nonfinite",
                message=f"{int(n_nonfinite[k])} non-finite component(s) where the exact value is finite, "
                        f"first at {idx}: {gv!r} (exact {hi[first]:.6g})", **common))
        elif not n_beyond[k]:
            results.append(Comparison(status=PASS, **common))
        else:
            w = common["worst_index"]
            results.append(Comparison(
                status=FAIL, detail="out_of_bound",
                message=(f"{int(n_beyond[k])} of {b - a} component(s) beyond the bound; worst at {w}: got "
                         f"{common['worst_got']:.17g}, exact {common['worst_exact']:.17g}, |error| "
                         f"{common['max_abs_err']:.3g} > allowed {common['worst_allowed']:.3g} "
                         f"(ratio {common['max_ratio']:.3g})"),
                **common))
    return results


def _stacked_hist(ulps: np.ndarray, seg: np.ndarray, n: int) -> list[tuple[int, ...]]:
    """:func:`_hist` of each segment, from one bincount over (segment, bucket)."""
    v = np.asarray(ulps, dtype=np.float64)
    finite = np.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(v > 0, np.floor(np.log2(np.where(v > 0, v, 1.0))) + 1, 0.0)
    b = np.where(finite, np.minimum(b, 32), ULP_BUCKETS - 1).astype(np.int64)
    counts = np.bincount(seg * ULP_BUCKETS + b, minlength=n * ULP_BUCKETS).reshape(n, ULP_BUCKETS)
    return [tuple(int(c) for c in row) for row in counts]
