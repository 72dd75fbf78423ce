"""Minimal counterexamples by zeroing: every entry a failure does not need is set to 0.

Why not hypothesis's shrinking here: a case that fails is already in hand (a
case of the run's own supply), and what a reader needs from it is the few
numbers that matter. Hypothesis would first search its cell again for a failing
draw and then shrink through the draws that made it (the seeds of the continuous
samples, the keep/zero flags, the positions), hundreds of evaluations that
mostly regenerate cases; zeroing the entries of the found case one at a time,
first positions first, costs one evaluation per entry and leaves a case where
removing any further entry makes the failure go away (after the last pass).
The values that stay are the regime's own samples.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["zero_unneeded"]


def zero_unneeded(inputs: Mapping[str, np.ndarray], fails: Callable[[Mapping[str, np.ndarray]], bool],
                  names: Sequence[str], *, passes: int = 2) -> dict[str, np.ndarray]:
    """``inputs`` with each nonzero entry of the inputs ``names`` set to 0 where ``fails`` still holds without it.

    ``fails(inputs)`` must hold for ``inputs``; it is called once per nonzero entry and pass. One nonzero entry of ``names`` always stays: the case where
    they are all 0 is the degenerate one the generator leaves out (W1 = 0 makes W1 and W1.T the same). A pass
    that zeroes nothing ends the search; ``passes`` bounds it (a zero can make an earlier entry unneeded)."""
    current = {k: np.array(v, copy=True) for k, v in inputs.items()}
    for _ in range(passes):
        changed = False
        for name in names:
            arr = current[name]
            for idx in zip(*np.nonzero(arr)):
                if sum(int(np.count_nonzero(current[n])) for n in names) <= 1:
                    return current
                trial = dict(current)
                trial[name] = arr.copy()
                trial[name][idx] = 0
                if fails(trial):
                    current, arr, changed = trial, trial[name], True
        if not changed:
            break
    return current
