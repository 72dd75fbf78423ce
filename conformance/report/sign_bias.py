"""Sign-bias findings of the grade tier: errors that all point toward zero over many components.

A backend whose stores truncate toward zero passes every per-component check
(each error is within its bound), so no verdict sees it; over thousands of
components, though, nearly all its inexact results are smaller in magnitude
than the exact value, and far fewer are correctly rounded than a backend
rounding to nearest gets. The results file's ``summary.sign_bias``
(conformance/results/summary.py) decides the finding per dtype (share toward
zero, binomial test); here it becomes a sentence, with the most accurate
other backend's share correctly rounded in that dtype as the reference when
the report sees other backends. A finding, never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from conformance.results.summary import summarize

__all__ = ["SignBias", "sign_bias_rows", "sign_findings", "with_reference"]


@dataclass(frozen=True)
class SignBias:
    dtype: str
    toward_zero: int
    inexact: int
    p_value_bound: float
    components: int
    correctly_rounded: int
    finding: bool
    reference: str = ""  # the other backend with the largest share correctly rounded in this dtype
    reference_share: float | None = None

    @property
    def share_toward_zero(self) -> float:
        return self.toward_zero / self.inexact if self.inexact else 0.0

    @property
    def share_correct(self) -> float:
        return self.correctly_rounded / self.components if self.components else 0.0

    @property
    def sentence(self) -> str:
        p = f"p ≤ {self.p_value_bound:.0e}" if self.p_value_bound > 0 else "p < 1e-300"
        ref = (f"; {self.reference} gets {100 * self.reference_share:.1f}%" if self.reference
               and self.reference_share is not None else "")
        return (f"{self.dtype}: {100 * self.share_toward_zero:.1f}% of {self.inexact:,} inexact components are "
                f"smaller in magnitude than the exact value ({p} for no preferred direction), and "
                f"{100 * self.share_correct:.1f}% of {self.components:,} are correctly rounded{ref}: results "
                f"rounded toward zero (a truncating store?), within every bound but systematically low")


def sign_bias_rows(doc: Mapping[str, Any], dtypes: Sequence[str]) -> tuple[SignBias, ...]:
    """Every dtype's sign figures, in dtype order (from the summary, or the records of an older file)."""
    s = doc.get("summary")
    rows = s.get("sign_bias") if isinstance(s, Mapping) else None
    if rows is None:
        rows = summarize(doc.get("records", []))["sign_bias"]
    idx = {d: i for i, d in enumerate(dtypes)}
    out = [SignBias(str(r["dtype"]), int(r["toward_zero"]), int(r["toward_zero"]) + int(r["away_from_zero"]),
                    float(r["p_value_bound"]), int(r["components"]), int(r["correctly_rounded"]), bool(r["finding"]))
           for r in rows]
    return tuple(sorted(out, key=lambda b: idx.get(b.dtype, 99)))


def sign_findings(rows: Sequence[SignBias]) -> tuple[SignBias, ...]:
    return tuple(r for r in rows if r.finding)


def with_reference(mine: Sequence[SignBias], others: Mapping[str, Sequence[SignBias]]) -> tuple[SignBias, ...]:
    """``mine`` with, for each finding, the other backend with the largest share correctly rounded in its dtype."""
    out = []
    for r in mine:
        best: tuple[float, str] | None = None
        for name in sorted(others):
            for o in others[name]:
                if o.dtype == r.dtype and o.components and not o.finding and (best is None or o.share_correct > best[0]):
                    best = (o.share_correct, name)
        out.append(replace(r, reference=best[1], reference_share=best[0]) if r.finding and best else r)
    return tuple(out)
