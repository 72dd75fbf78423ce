"""The acceptance rule of the oracle: when an enclosure of an exact value is narrow enough to be used.

Every oracle engine (mpmath intervals, Arb balls) produces, for each output
component, an enclosure [a, b] of the exact value. One rule, here, decides
whether it is *certified*, and what double-double (hi, lo) it stands for, so
that the engines agree bit for bit on ``hi`` (the correctly rounded float64 of
the exact value, which is unique) and differ in ``lo`` only below the width of
their enclosures:

* a point (a == b) is certified: hi = round(a), lo = round(a - hi);
* an enclosure inside (-2**-1100, 2**-1100) rounds to zero in every binary
  format: (0, 0);
* otherwise it must not contain 0, be narrower than 2**-(53 + 40) of its
  magnitude, and both endpoints must round to the same float64 (Ziv's test);
  and where that float64 is a rounding midpoint of a narrower format (float32,
  float16, bfloat16), the enclosure must not contain it, so that the single
  rounding into the narrower format is decided too;
* ``waive_ties`` (used from :data:`TIE_BITS` on) accepts a narrow enclosure
  that contains such a midpoint; the component is counted as *undecided*,
  and resolved the same way whatever the engine: a float64 midpoint rounds
  to even, and at a narrower format's midpoint ``lo`` is 0 (so the narrower
  rounding goes to even).

Anything else is not certified: the oracle raises the precision and tries
again. This module works on exact mpmath numbers (the reference path, used by
every engine for the components its fast path leaves undecided) and offers the
vectorised pieces an engine's fast path needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from conformance.formats import FORMATS, is_midpoint, round_mpf

__all__ = [
    "Exact",
    "START_BITS",
    "MAX_BITS",
    "TIE_BITS",
    "TARGET_BITS",
    "TINY",
    "certified_endpoints",
    "narrow_midpoint_mask",
    "half_ulp_inside",
]

START_BITS = 128
MAX_BITS = 4096
TIE_BITS = 1024  # from here on, a narrower format's rounding tie is recorded as undecided, not chased
TARGET_BITS = 53 + 40
TINY = mpmath.mpf(2) ** -1100
_F64 = FORMATS["float64"]
NARROW = (FORMATS["float32"], FORMATS["float16"], FORMATS["bfloat16"])


@dataclass(frozen=True)
class Exact:
    """A certified value per component as a double-double: ``hi`` is the correctly rounded float64 of
    the exact value, ``lo`` the float64 nearest to (midpoint of the certified enclosure - hi), which is
    the remainder (exact value - hi) to within the enclosure's width (< 2**-93 of the value). Where the
    sign of the remainder decides a rounding into a narrower format, the rule makes it exact."""

    hi: np.ndarray
    lo: np.ndarray
    undecided: int = 0  # components whose rounding into a narrower format is ambiguous by one ulp

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape


def certified_endpoints(a: Any, b: Any, *, waive_ties: bool = False) -> tuple[float, float] | None:
    """(hi, lo) of the enclosure [a, b] (exact ``mpmath.mpf`` endpoints) if it is certified, else None.

    Call it inside ``mpmath.workprec`` with at least twice the bits of the
    endpoints, so that ``(a + b) / 2`` and ``mid - hi`` are exact.
    """
    if a == b:
        if not mpmath.isfinite(a):
            return (float(a), 0.0) if mpmath.isinf(a) else None
        hi = round_mpf(a, _F64)
        return hi, _remainder(a - mpmath.mpf(hi)) if mpmath.isfinite(hi) else 0.0
    if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
        return None
    if -TINY < a and b < TINY:
        return 0.0, 0.0
    if a <= 0 <= b:
        return None
    if (b - a) > min(abs(a), abs(b)) * mpmath.mpf(2) ** -TARGET_BITS:
        return None
    hi = round_mpf(a, _F64)
    mid = (a + b) / 2
    hi_b = round_mpf(b, _F64)
    if hi_b != hi:
        if not waive_ties:
            return None
        # a float64 rounding midpoint lies inside: ties to even at that midpoint, whatever the enclosure
        # (so that every engine makes the same choice)
        tie = (mpmath.mpf(hi) + mpmath.mpf(hi_b)) / 2 if math.isfinite(hi_b) else mid
        hi = round_mpf(tie, _F64)
    elif a <= hi <= b and any(is_midpoint(hi, f) for f in NARROW):
        if not waive_ties:
            return None
        return hi, 0.0  # a narrower format's midpoint, the side undecided: its rounding goes to even
    return hi, _remainder(mid - mpmath.mpf(hi))


def _remainder(r: Any) -> float:
    """``lo`` for a remainder ``r`` (exact value - hi): its float64 rounding, and where a nonzero remainder is
    below float64's smallest subnormal, that subnormal with its sign (a rounding to zero would lose the sign,
    which decides the rounding into a narrower format when hi is one of its midpoints: a logit gap of 1000
    puts e**-1000 there)."""
    lo = round_mpf(r, _F64)
    if lo == 0 and r != 0:
        return math.copysign(5e-324, float(mpmath.sign(r)))
    return lo


# --------------------------------------------------------------------------- vectorised helpers (fast paths)

def narrow_midpoint_mask(hi: np.ndarray) -> np.ndarray:
    """Whether each finite float64 is a rounding midpoint of float32, float16 or bfloat16."""
    h = np.asarray(hi, dtype=np.float64)
    out = np.zeros(h.shape, dtype=bool)
    ok = np.isfinite(h) & (h != 0)
    if not np.any(ok):
        return out
    with np.errstate(all="ignore"):
        _, e = np.frexp(np.where(ok, h, 1.0))
        for fmt in NARROW:
            q = np.maximum(e - 1, fmt.emin) - fmt.p + 1
            scaled = np.ldexp(np.where(ok, h, 1.0), -q)  # exact scaling by a power of two
            out |= ok & (scaled - np.floor(scaled) == 0.5)
    return out


def half_ulp_inside(hi: np.ndarray) -> np.ndarray:
    """For each finite nonzero float64 ``hi``, the distance from ``hi`` to the nearer edge of the set of reals
    that round to it (half an ulp; a quarter towards zero at a power of two). A value within
    ``|t - hi| < half_ulp_inside(hi)`` rounds to ``hi``, ties excluded."""
    h = np.abs(np.asarray(hi, dtype=np.float64))
    with np.errstate(all="ignore"):
        up = np.spacing(h) / 2  # half the gap above |hi|
        mant, _ = np.frexp(h)
        below = np.where((mant == 0.5) & (h > np.finfo(np.float64).tiny), up / 2, up)
    return below
