"""The results file's ``summary``: aggregates of the records that a reader must see beside the verdict.

A pass says a result is within what a correct evaluation may produce; it does
not always say the result is accurate. Where a component's bound B is at
least as large as the exact value itself (``|B| >= |exact|``), *any* answer
between 0 and twice the exact value passes, so the check is **uninformative**
about relative accuracy: this is common in float16 and bfloat16, where the
bound of a cancelling gradient can exceed the gradient. The summary counts
those components per quantity x dtype x regime, so that a report can say how
much of a pass is accuracy and how much is only "not absurd".

It also holds the grade tier's **sign bias**, per dtype: a backend whose
stores truncate toward zero (a truncating conversion, as some bfloat16 paths
do) passes every per-component check, each error being within its bound, but
over thousands of components its errors all point one way, and far fewer of
its results are correctly rounded. Correct rounding to nearest has no
preferred direction: the count of components below the exact value in
magnitude is then close to half. Counted (``judge.compare``): answers that are
not the correctly rounded value, where the exact value is normal (a flush or an
underflow is allowed, not a store's bias), in the :data:`BIAS_REGIME` regime
when the records have it: in a hard regime a correct evaluation's error can
have a direction of its own (a saturated sigmoid makes a correct float32
``h - h*h`` err toward zero on most components: measured 0.82 over 435 for a
correct bfloat16 backend, against 0.50 in benign), while a truncating store is
biased everywhere (1.0 in benign float16). The finding is made when that share is at
least :data:`BIAS_SHARE` over at least :data:`BIAS_MIN` counted components
and a binomial test rejects "no preferred direction" at :data:`BIAS_P`
(the p-value is bounded above by the Chernoff bound ``2 exp(-n KL(k/n, 1/2))``,
rigorous and free of any statistics library). It is reported apart from the
verdict: it never makes a check fail.

The summary is a pure function of the records (:func:`summarize`): it is
written with the document, recomputed when documents are merged, and a
reader of an older file without one can compute it the same way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

__all__ = ["summarize", "uninformative_cells", "sign_bias", "chernoff_p", "BIAS_SHARE", "BIAS_MIN", "BIAS_P", "BIAS_REGIME"]

#: The share of inexact components rounded toward zero from which a sign bias is a finding (rounding to
#: nearest gives about one half; a truncating store nearly all).
BIAS_SHARE = 0.75
#: The regime a sign bias is judged in, where the records have it (the inputs with no direction of their own).
BIAS_REGIME = "benign"
#: The fewest counted components of a dtype on which a sign bias is judged.
BIAS_MIN = 200
#: The largest p-value (of "no preferred direction") at which the sign bias is a finding.
BIAS_P = 1e-9

#: Records whose components were compared (the others carry no counts).
_COMPARED = ("pass", "fail")


def uninformative_cells(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (quantity, dtype, regime), in first-seen order: the compared records and components, the components
    whose bound is at least their exact value (``uninformative``), and the passing records with any."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        if r.get("status") not in _COMPARED or not r.get("components"):
            continue
        key = (str(r["quantity"]), str(r["dtype"]), str(r["regime"]))
        c = cells.get(key)
        if c is None:
            c = cells[key] = {"quantity": key[0], "dtype": key[1], "regime": key[2], "records": 0,
                              "components": 0, "uninformative": 0, "passing_records_with_uninformative": 0}
        u = int(r.get("uninformative") or 0)
        c["records"] += 1
        c["components"] += int(r["components"])
        c["uninformative"] += u
        if u and r["status"] == "pass":
            c["passing_records_with_uninformative"] += 1
    return list(cells.values())


def _by_dtype(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        acc[c["dtype"]][0] += int(c["uninformative"])
        acc[c["dtype"]][1] += int(c["components"])
    return [{"dtype": d, "uninformative": u, "components": n} for d, (u, n) in acc.items()]


def chernoff_p(k: int, n: int) -> float:
    """An upper bound on the two-sided binomial p-value of ``k`` of ``n`` under p = 1/2: 2 exp(-n KL(k/n, 1/2))."""
    if n <= 0:
        return 1.0
    q = k / n
    kl = sum(x * math.log(2 * x) for x in (q, 1 - q) if x > 0)
    return min(1.0, 2.0 * math.exp(-n * kl))


def sign_bias(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per dtype, in first-seen order, over the :data:`BIAS_REGIME` records: counted components toward and away from zero, the share toward zero, the
    p-value bound, the components and the correctly rounded ones (ulp bucket 0), and ``finding``."""
    acc: dict[str, list[int]] = {}
    records = list(records)
    judged = BIAS_REGIME if any(r.get("regime") == BIAS_REGIME for r in records) else None
    for r in records:
        if r.get("status") not in _COMPARED or not r.get("components"):
            continue
        if judged is not None and r.get("regime") != judged:
            continue
        a = acc.setdefault(str(r["dtype"]), [0, 0, 0, 0])
        a[0] += int(r.get("toward_zero") or 0)
        a[1] += int(r.get("away_from_zero") or 0)
        a[2] += int(r["components"])
        hist = r.get("ulp_hist") or []
        a[3] += int(hist[0]) if hist else 0
    out = []
    for dtype, (toward, away, comps, exact) in acc.items():
        n = toward + away
        share = toward / n if n else 0.0
        p = chernoff_p(toward, n)
        out.append({"dtype": dtype, "toward_zero": toward, "away_from_zero": away,
                    "share_toward_zero": round(share, 6), "p_value_bound": p, "components": comps,
                    "correctly_rounded": exact,
                    "finding": bool(n >= BIAS_MIN and share >= BIAS_SHARE and p <= BIAS_P)})
    return out


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``summary`` section of a results document (docs/results.md, "Summary")."""
    records = list(records)
    cells = uninformative_cells(records)
    return {"uninformative": cells, "uninformative_by_dtype": _by_dtype(cells), "sign_bias": sign_bias(records)}
