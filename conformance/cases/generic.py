"""Generic inputs: random numbers with no special structure, for questions of the form "are these two
formulas the same function?".

Two formulas that are different functions differ on almost every input (the
inputs where they agree have measure zero), so one draw of N(0, 1) numbers per
shape family answers the question; more draws only guard against an
accident of probability zero. The draws are seeded from
the spec, layout and family, so answers are reproducible. Labels are soft
probability vectors along the layout's class axis whose entries are multiples
of 2**-20 summing to exactly 1, so preconditions like ``labels_sum_to_one``
hold exactly; ``labels="unnormalized"`` draws rows that do not sum to 1.

These are not test cases of a backend (those come from the spec's regimes,
:mod:`conformance.cases.strategies`); the structured regimes, whose first draw is
deliberately the simplest one (zeros), are the wrong tool here.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

from conformance.spec.shapes import concrete
from conformance.spec.model import Layout, ShapeFamily, Spec

__all__ = ["generic_inputs", "LABEL_QUANTUM_BITS"]

LABEL_QUANTUM_BITS = 20


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def generic_inputs(spec: Spec, layout: Layout, family: ShapeFamily, *, seed: int = 0, labels: str = "soft",
                   sizes: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """One draw of every input of ``layout`` in ``family`` (float64); ``sizes`` overrides the family's sizes."""
    rng = _rng("generic", spec.name, layout.name, family.name, seed, labels)
    dims = dict(family.sizes) if sizes is None else dict(sizes)
    total = 1 << LABEL_QUANTUM_BITS
    out: dict[str, np.ndarray] = {}
    for name, info in spec.inputs.items():
        shape = concrete(layout.shapes[name], dims)
        if info.get("role") != "label":
            out[name] = rng.standard_normal(shape)
            continue
        samples = shape[layout.sample_axis]
        k = shape[1 - layout.sample_axis]
        rows = []
        for _ in range(samples):
            weights = rng.integers(1, 51, size=k)
            counts = weights * total // int(weights.sum())
            counts[int(np.argmax(weights))] += total - int(counts.sum())
            if labels == "unnormalized":
                counts = counts + rng.integers(1, total // 2, size=k)
            rows.append(counts)
        arr = np.asarray(rows, dtype=np.float64) * 2.0 ** -LABEL_QUANTUM_BITS
        out[name] = arr.T.copy() if layout.sample_axis == 1 else arr
    return out
