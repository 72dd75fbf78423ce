"""Matrix axes counted from the end, so that one bound rule serves one case (a 2-D array) and a stack of cases.

Why: the error bounds of a group's cases of one shape are computed at once, on arrays of shape
(cases, rows, columns) (:mod:`conformance.judge.stacked_bounds`), with the same code that bounds one case
(rows, columns): Python's cost per expression node is then paid once per group instead of once per case. A
spec's ``axis=0|1`` names a matrix axis; here it becomes -2 or -1, a transpose swaps the last two axes, and a
whole-matrix reduction or flattening keeps the leading (stack) axes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["matrix_axis", "swap", "flat", "diag", "terms"]


def matrix_axis(axis: int | None) -> int:
    """The spec's matrix axis (0 or 1) counted from the end; None (the whole matrix, flattened) is the last."""
    return -1 if axis is None else axis - 2


def swap(a: np.ndarray) -> np.ndarray:
    """The transpose of each matrix."""
    return np.swapaxes(a, -1, -2)


def flat(a: np.ndarray) -> np.ndarray:
    """Each matrix as one row (shape (..., 1, rows * columns)), as ``reshape(1, -1)`` does to one matrix."""
    return a.reshape(a.shape[:-2] + (1, -1))


def diag(a: np.ndarray) -> np.ndarray:
    """Diag of each matrix's entries, in order (``np.diag(a.reshape(-1))``); off the diagonal exactly 0,
    whatever the entries (an infinite bound stays on the diagonal)."""
    v = a.reshape(a.shape[:-2] + (-1,))
    k = v.shape[-1]
    return np.where(np.eye(k, dtype=bool), v[..., :, None], 0.0)


def terms(a: np.ndarray, axis: int | None) -> int:
    """How many terms a reduction of each matrix of ``a`` along the spec's ``axis`` adds (None: all)."""
    return a.shape[-2] * a.shape[-1] if axis is None else a.shape[matrix_axis(axis)]
