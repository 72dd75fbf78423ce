"""Numbers in and out of a report: read the results file's encodings, print figures one way everywhere.

Why one module: a reader compares figures across the HTML page, the markdown
page, the scoreboard and the tests that check them, so each figure must be
printed by the same function in every place. Results files encode the floats
JSON cannot hold as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["num", "worst", "fmt_ratio", "fmt_ulp", "fmt_sci", "fmt_value", "fmt_count", "fmt_rate", "fmt_magnitude"]


def num(x: Any) -> float | None:
    """A results-file number as a float (``"inf"`` -> inf); None for absent or unreadable values."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def worst(values: Iterable[Any]) -> float | None:
    """The largest of the numbers given, NaN counting as the worst (inf); None when there is none."""
    out: float | None = None
    for v in values:
        f = num(v)
        if f is None:
            continue
        if math.isnan(f):
            f = math.inf
        if out is None or f > out:
            out = f
    return out


def fmt_ratio(x: float | None) -> str:
    """error / allowed: 3 significant digits; 0 stays 0 (exact results)."""
    if x is None:
        return "—"
    if math.isnan(x) or math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    if x >= 1e4 or x < 1e-3:
        return _sci(x, 2)
    return f"{x:.3g}"


def fmt_ulp(x: float | None) -> str:
    """Ulps: integers up to 10^6, then a power of two (2^50 reads better than 1.1e15 for an ulp count)."""
    if x is None:
        return "—"
    if math.isnan(x) or math.isinf(x):
        return "∞"
    if x < 1e6:
        return f"{x:.0f}" if x == int(x) else f"{x:.1f}"
    return f"2^{math.log2(x):.1f}"


def fmt_sci(x: float | None) -> str:
    """Relative and absolute errors: 2 significant digits in scientific notation."""
    if x is None:
        return "—"
    if math.isnan(x) or math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    if 1e-3 <= x < 1e4:
        return f"{x:.2g}"
    return _sci(x, 2)


def fmt_value(x: Any) -> str:
    """A computed or exact value: enough digits to tell float64 neighbours apart."""
    f = num(x)
    if f is None:
        return "—"
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+inf" if f > 0 else "-inf"
    return repr(f)


def fmt_count(n: int) -> str:
    """Counts with thousands separators (a thin space would not survive markdown tables)."""
    return f"{n:,}"


def fmt_rate(passed: int, total: int) -> str:
    """A pass rate in percent, never rounded up to 100 % (nor down to 0 %) when it is not."""
    if total == 0:
        return "—"
    if passed == total:
        return "100%"
    if passed == 0:
        return "0%"
    r = 100.0 * passed / total
    s = f"{r:.1f}"
    if s == "100.0":
        s = "99.9"
    if s == "0.0":
        s = "0.1"
    return s + "%"


def fmt_magnitude(x: Any) -> str:
    f = num(x)
    if f is None:
        return "—"
    return f"{f:g}"


def _sci(x: float, digits: int) -> str:
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    return f"{mant}e{int(exp)}"
