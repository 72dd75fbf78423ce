"""Binary floating-point formats: single rounding from high precision, and ulp distance.

Why this module exists: the obvious conversions round twice. ``float(mpf)``
rounds to 53 bits and then again into the subnormal range; ``np.float32(float(x))``
rounds to float64 first; ``ml_dtypes`` converts float64 to bfloat16 through
float32. Each can land one ulp off the correctly rounded value. Here every
target value is obtained by *one* rounding of the exact value: either from an
mpmath number (integer arithmetic on its mantissa), or from an exact
double-double split ``hi + lo`` (vectorised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "FloatFormat",
    "FORMATS",
    "get_format",
    "round_mpf",
    "split_mpf",
    "round_hilo",
    "ordinal",
    "ulp_distance",
    "is_representable",
    "is_midpoint",
]


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-style binary format: ``p`` significand bits (with the hidden bit), exponents ``emin..emax``."""

    name: str
    p: int
    emin: int
    emax: int
    bits: int

    @property
    def u(self) -> float:
        """Unit roundoff, 2**-p."""
        return 2.0 ** -self.p

    @property
    def eta(self) -> float:
        """Smallest positive normal number, 2**emin: bounds the error of one underflowing (or flushed) result."""
        return 2.0 ** self.emin

    @property
    def tiny(self) -> float:
        """Smallest positive subnormal, 2**(emin - p + 1)."""
        return 2.0 ** (self.emin - self.p + 1)

    @property
    def max_finite(self) -> float:
        return (2.0 - 2.0 ** (1 - self.p)) * 2.0 ** self.emax

    @cached_property
    def dtype(self) -> np.dtype:
        if self.name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.name)

    @property
    def uint(self) -> np.dtype:
        return np.dtype(f"uint{self.bits}")


#: The dtype names gradconform knows, widest first: the one list (and order) of dtypes everywhere.
DTYPES = ("float64", "float32", "float16", "bfloat16")

FORMATS: dict[str, FloatFormat] = {
    "float16": FloatFormat("float16", p=11, emin=-14, emax=15, bits=16),
    "bfloat16": FloatFormat("bfloat16", p=8, emin=-126, emax=127, bits=16),
    "float32": FloatFormat("float32", p=24, emin=-126, emax=127, bits=32),
    "float64": FloatFormat("float64", p=53, emin=-1022, emax=1023, bits=64),
}


def get_format(name: str) -> FloatFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown floating-point format {name!r}; known: {', '.join(FORMATS)}") from None


# --------------------------------------------------------------------------- scalar, from mpmath

def round_mpf(x: Any, fmt: FloatFormat) -> float:
    """Round an mpmath number once, to nearest-even, into ``fmt``; returned as an exact Python float.

    Overflow gives ±inf (IEEE: when the rounded value would need an exponent
    beyond emax), underflow gives a subnormal or a signed zero.
    """
    sign, man, exp, bc = x._mpf_
    if not man:
        if exp == 0 or bc == 0:  # zero (mpmath's zero has no sign)
            return 0.0
        # special values: +inf (sign 0), -inf (sign 1), nan
        if x != x:
            return math.nan
        return -math.inf if sign else math.inf
    e = exp + bc - 1  # exponent of the leading bit
    q = max(e, fmt.emin) - fmt.p + 1  # exponent of the last kept bit
    shift = q - exp
    if shift <= 0:
        n = man << (-shift)
    else:
        n = man >> shift
        rem = man - (n << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and (n & 1)):
            n += 1
    if n == 0:
        return -0.0 if sign else 0.0
    if n.bit_length() + q - 1 > fmt.emax:
        return -math.inf if sign else math.inf
    value = math.ldexp(n, q)
    return -value if sign else value


def split_mpf(x: Any) -> tuple[float, float]:
    """Exact-enough double-double of an mpmath number: hi = round(x), lo = round(x - hi) (float64 each)."""
    import mpmath

    f64 = FORMATS["float64"]
    hi = round_mpf(x, f64)
    if not math.isfinite(hi):
        return hi, 0.0
    lo = round_mpf(x - mpmath.mpf(hi), f64)
    return hi, lo


def is_midpoint(x: float, fmt: FloatFormat) -> bool:
    """Whether the float64 ``x`` lies exactly halfway between two neighbours in ``fmt``."""
    if x == 0 or not math.isfinite(x):
        return False
    _, e = math.frexp(x)
    q = max(e - 1, fmt.emin) - fmt.p + 1
    scaled = math.ldexp(x, -q)
    return scaled - math.floor(scaled) == 0.5


# --------------------------------------------------------------------------- vectorised, from hi + lo

def round_hilo(hi: np.ndarray, lo: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Correctly round the exact value ``hi + lo`` into ``fmt``, once, returning an array of fmt's dtype.

    ``hi`` must be the float64 nearest to the exact value and ``lo`` the sign
    (and approximate size) of the remainder. For float64 the answer is ``hi``.
    For a narrower format, rounding ``hi`` agrees with rounding the exact value
    except when ``hi`` lies exactly on a midpoint of the narrower format (every
    such midpoint is a float64); there the sign of ``lo`` decides.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), hi.shape)
    if fmt.name == "float64":
        return hi.copy()
    out = np.empty(hi.shape, dtype=np.float64)
    finite = np.isfinite(hi)
    out[~finite] = hi[~finite]
    h = hi[finite]
    l = lo[finite]
    with np.errstate(all="ignore"):
        _, e = np.frexp(h)  # h = m * 2**e, 0.5 <= |m| < 1, so the leading bit has exponent e - 1
        lead = e - 1
        q = np.maximum(lead, fmt.emin) - fmt.p + 1
        scaled = np.ldexp(h, -q)  # exact: a power-of-two scaling within float64's range
        r = np.rint(scaled)  # ties to even
        frac = scaled - np.floor(scaled)
        tie = frac == 0.5
        # on an exact tie of hi, the remainder decides the direction
        up = tie & (l > 0)
        down = tie & (l < 0)
        r = np.where(up, np.floor(scaled) + 1, r)
        r = np.where(down, np.floor(scaled), r)
        val = np.ldexp(r, q)
        over = np.abs(val) > fmt.max_finite
        val = np.where(over, np.copysign(np.inf, h), val)
        val = np.where(val == 0, np.copysign(0.0, h), val)
    out[finite] = val
    return out.astype(fmt.dtype)  # exact: every value is representable


def is_representable(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Whether each float64 value is exactly a value of ``fmt``."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        back = v.astype(fmt.dtype).astype(np.float64)
    return (back == v) | (np.isnan(v) & np.isnan(back))


# --------------------------------------------------------------------------- ulps

def ordinal(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """A monotone integer index of each float: +0 and -0 are both 0, the smallest subnormal is ±1,
    infinity is one past the largest finite value. NaNs map to an arbitrary value: mask them first."""
    arr = np.asarray(values)
    if arr.dtype != fmt.dtype:
        arr = arr.astype(fmt.dtype)
    bits = arr.view(fmt.uint).astype(np.uint64)
    negative = (bits >> np.uint64(fmt.bits - 1)) != 0
    magnitude = (bits & np.uint64((1 << (fmt.bits - 1)) - 1)).astype(np.int64)  # < 2**63: fits
    return np.where(negative, -magnitude, magnitude)


def ulp_distance(a: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Number of representable values of ``fmt`` between ``a`` and ``b`` (float64 array; inf if either is NaN).

    Opposite signs are handled without overflow (numpy.testing's ``nulp_diff``
    overflows for float64 values of opposite sign and knows no bfloat16).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    oa = ordinal(a, fmt)
    ob = ordinal(b, fmt)
    same_sign = (oa >= 0) == (ob >= 0)
    # same sign: |oa - ob| fits int64; opposite: |oa| + |ob| fits uint64
    diff_same = np.abs(np.where(same_sign, oa - ob, 0)).astype(np.uint64)
    diff_opp = np.abs(oa).astype(np.uint64) + np.abs(ob).astype(np.uint64)
    dist = np.where(same_sign, diff_same, diff_opp).astype(np.float64)
    nan = np.isnan(np.asarray(a, dtype=np.float64)) | np.isnan(np.asarray(b, dtype=np.float64))
    return np.where(nan, np.inf, dist)
