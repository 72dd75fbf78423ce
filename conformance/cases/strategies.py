"""Hypothesis strategies for the spec's input regimes (the one place where cases are generated).

Every value is drawn and then rounded into the target dtype, so the oracle and
the backend see the very same numbers.

Who draws what. Hypothesis draws the *structure* of a case: the spike
position, the labels, the ulp offset of a tie, the digits of subnormal numbers;
shrinking moves these towards the simplest (first position, smallest
offset, zero). Continuous samples (``normal``, ``uniform``, the magnitudes of
``signs``) come from a numpy generator seeded by a hypothesis-drawn integer:
hypothesis by design draws "simple" floats far more often than their
distribution would (measured: about 40 % of the entries of "N(0,1)" inputs
were exactly 0 and the first case of every cell was all zeros), which makes
the benign regime mostly trivial arithmetic and hides faults (a relative error
of 1e-10 in dL/dx went unseen on a quarter of the benign cases, because W1 was
0). Shrinking then reduces the seed: the counterexample stays a genuine
sample of the regime. Zeros and subnormal numbers have their own generator.

Minimal counterexamples. Each continuous entry is also multiplied by a
hypothesis-drawn keep/zero flag (kept with probability about 31/32 when
generating), so shrinking, which turns flags to "zero", removes every entry a
failure does not need: a shrunk counterexample shows the few numbers that
matter, the rest exactly 0.

Directions. Tangents and cotangents (inputs with role ``tangent`` or
``cotangent``, the directions of jvp, vjp and hvp identities) take a
``normal``, ``uniform`` or ``constant`` generator like the others, but are
drawn from a numpy generator seeded by the case's other inputs, not by
hypothesis: the network's inputs are then exactly those a spec without
directions draws, so adding forward-mode or second-order identities changes
no first-order case.

Generators (the vocabulary of ``regimes.*.inputs`` in a spec file):

``normal: s``      s * N(0, 1)
``uniform: [a, b]`` uniform in [a, b]
``constant: c``    every entry c
``spike: m``       N(0, 1) everywhere and m at the case's spike position (vectors only)
``signs: m``       +-m * (1 + U/2) in every entry, U uniform in [0, 1), random signs
``tied: m``        N(0, 1), and m at the spike position and m plus 0..4 ulps at another
``subnormal: true`` 0 or a subnormal number of the dtype, random sign
``labels: k``      label vectors along the sample axis: ``onehot``, ``soft`` (multiples of 2**-q,
                   q = min(20, p - 1), summing to exactly 1) or ``unnormalized`` (such multiples
                   whose sum is not 1); ``at: spike`` puts a one-hot label at the spike position
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from conformance.formats import FloatFormat, get_format
from conformance.spec.shapes import concrete, vector_length
from conformance.spec.model import DIRECTION_ROLES, Generator, Layout, Regime, ShapeFamily

__all__ = ["inputs_strategy", "label_quantum_bits", "DIRECTION_ROLES"]

_SEED = st.integers(0, 2**63 - 1)
#: keep (True) or zero (False) one entry; sampled_from shrinks to its first element, so shrinking zeroes
_KEEP = st.sampled_from((False,) + (True,) * 31)
#: inputs with more entries than this (the wide family's) are drawn without hypothesis-drawn per-entry choices:
#: hypothesis's buffer holds a few thousand choices per example, and a counterexample is not shrunk at that width
_HYPOTHESIS_ENTRIES = 256


def _masked(draw: Any, values: list[float], kept: list[int]) -> list[float]:
    """``values`` with each entry zeroed or kept by a hypothesis draw; ``kept`` counts the kept entries.
    Wider inputs are kept whole (see ``_HYPOTHESIS_ENTRIES``)."""
    if len(values) > _HYPOTHESIS_ENTRIES:
        kept.append(len(values))
        return values
    keep = draw(st.lists(_KEEP, min_size=len(values), max_size=len(values)))
    kept.append(sum(keep))
    return [v if k else 0.0 for v, k in zip(values, keep)]


def label_quantum_bits(fmt: FloatFormat) -> int:
    """Labels are multiples of 2**-q, exactly representable in the dtype, so a row can sum to exactly 1."""
    return min(20, fmt.p - 1)


def _sampler(draw: Any, *salt: object) -> np.random.Generator:
    """A numpy generator for one input's continuous samples: the seed is drawn by hypothesis, the salt
    (input name and cell) keeps inputs of one case, and first examples of different cells, independent."""
    key = [zlib.crc32(repr(part).encode()) for part in salt]
    return np.random.default_rng([draw(_SEED)] + key)


def _round(values: Any, shape: tuple[int, int], fmt: FloatFormat) -> np.ndarray:
    arr = np.clip(np.asarray(values, dtype=np.float64).reshape(shape), -fmt.max_finite, fmt.max_finite)
    return arr.astype(fmt.dtype)


def _labels(draw: Any, gen: Generator, shape: tuple[int, int], sample_axis: int, fmt: FloatFormat,
            spike: int | None) -> np.ndarray:
    n_samples = shape[sample_axis]
    k = shape[1 - sample_axis]
    q = label_quantum_bits(fmt)
    total = 1 << q
    rows: list[list[int]] = []
    # wide label arrays: the soft weights come from a seeded numpy generator (see _HYPOTHESIS_ENTRIES)
    rng = _sampler(draw, "labels", shape) if n_samples * k > _HYPOTHESIS_ENTRIES else None
    for _ in range(n_samples):
        if gen.labels == "onehot":
            pos = spike if (gen.at_spike and spike is not None) else draw(st.integers(0, k - 1))
            counts = [0] * k
            counts[pos % k] = total
        elif gen.labels == "soft":
            weights = (draw(st.lists(st.integers(0, 50), min_size=k, max_size=k)) if rng is None
                       else [int(w) for w in rng.integers(0, 51, k)])
            if sum(weights) == 0:
                weights[0] = 1
            w = sum(weights)
            counts = [wi * total // w for wi in weights]
            counts[max(range(k), key=lambda i: weights[i])] += total - sum(counts)
        else:  # unnormalized
            counts = draw(st.lists(st.integers(0, 2 * total), min_size=k, max_size=k))
            if sum(counts) == total:
                counts[0] += 1
        rows.append(counts)
    arr = np.asarray(rows, dtype=np.float64) * 2.0 ** -q  # exact: small integers times a power of two
    if sample_axis == 1:
        arr = arr.T
    return arr.astype(fmt.dtype)


def _ulp(x: float, fmt: FloatFormat) -> float:
    if x == 0:
        return fmt.tiny
    e = math.frexp(abs(x))[1] - 1
    return 2.0 ** (max(e, fmt.emin) - fmt.p + 1)


def inputs_strategy(layout: Layout, input_roles: Mapping[str, Mapping[str, str]], dtype: str,
                    regime: Regime, family: ShapeFamily, magnitude: float | None) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """All inputs of one case, in ``dtype``, drawn per the regime's generators."""

    @st.composite
    def case_inputs(draw: Any) -> dict[str, np.ndarray]:
        return _draw_inputs(draw, layout, input_roles, dtype, regime, family, magnitude)

    return case_inputs()


def _draw_inputs(draw: Any, layout: Layout, input_roles: Mapping[str, Mapping[str, str]], dtype: str,
                 regime: Regime, family: ShapeFamily, magnitude: float | None) -> dict[str, np.ndarray]:
    fmt = get_format(dtype)
    shapes = {name: concrete(layout.shapes[name], family.sizes) for name in input_roles}
    spike_len = None
    for name in input_roles:
        gen = regime.generator_for(name)
        if gen.kind in ("spike", "tied"):
            length = vector_length(shapes[name])
            if length is None:
                raise ValueError(f"regime {regime.name!r}: a {gen.kind} generator needs a vector input, "
                                 f"{name!r} is {shapes[name][0]} x {shapes[name][1]}")
            spike_len = length if spike_len is None else min(spike_len, length)
    spike = draw(st.integers(0, spike_len - 1)) if spike_len else None

    out: dict[str, np.ndarray] = {}
    kept: list[int] = []  # kept entries per masked input
    directions = [n for n, info in input_roles.items() if info.get("role") in DIRECTION_ROLES]
    for name in input_roles:
        if name in directions:
            continue
        gen = regime.generator_for(name)
        shape = shapes[name]
        size = shape[0] * shape[1]
        scale = gen.resolve(magnitude)
        if gen.kind == "labels":
            out[name] = _labels(draw, gen, shape, layout.sample_axis, fmt, spike)
            continue
        rng = _sampler(draw, name, dtype, regime.name, family.name, magnitude)
        if gen.kind == "normal":
            values = _masked(draw, list(rng.standard_normal(size) * float(scale)), kept)
        elif gen.kind == "uniform":
            values = _masked(draw, list(rng.uniform(gen.low, gen.high, size)), kept)
        elif gen.kind == "constant":
            values = [float(scale)] * size
        elif gen.kind == "spike":
            values = _masked(draw, list(rng.standard_normal(size)), kept)
            values[spike] = float(scale)
        elif gen.kind == "signs":
            mags = rng.random(size)
            signs = rng.random(size) < 0.5
            values = _masked(draw, [(-1.0 if s else 1.0) * float(scale) * (1.0 + m / 2) for m, s in zip(mags, signs)],
                             kept)
        elif gen.kind == "tied":
            if size < 2:
                raise ValueError(f"regime {regime.name!r}: 'tied' needs a vector of length >= 2 ({name!r})")
            values = _masked(draw, list(rng.standard_normal(size)), kept)
            other = (spike + 1 + draw(st.integers(0, size - 2))) % size
            top = float(np.asarray(float(scale)).astype(fmt.dtype))
            values[spike] = top
            values[other] = top + draw(st.integers(0, 4)) * _ulp(top, fmt)
        elif gen.kind == "subnormal":
            ks = draw(st.lists(st.integers(0, (1 << (fmt.p - 1)) - 1), min_size=size, max_size=size))
            signs = draw(st.lists(st.booleans(), min_size=size, max_size=size))
            values = [(-1.0 if s else 1.0) * math.ldexp(k, fmt.emin - fmt.p + 1) for k, s in zip(ks, signs)]
        else:  # pragma: no cover - the loader admits no other kind
            raise ValueError(f"unknown generator {gen.kind!r}")
        out[name] = _round(values, shape, fmt)
    # hypothesis's simplest example zeroes every continuous entry (x = W = 0: W1 and W1.T then coincide, and
    # most mistakes are invisible); such a case is not drawn, and shrinking stops one entry short of it
    assume(not kept or sum(kept) > 0)
    out.update(_directions(out, directions, shapes, fmt, regime, family, magnitude, dtype))
    return out


def _directions(network: Mapping[str, np.ndarray], names: list[str], shapes: Mapping[str, tuple[int, int]],
                fmt: FloatFormat, regime: Regime, family: ShapeFamily, magnitude: float | None,
                dtype: str) -> dict[str, np.ndarray]:
    """The tangents and cotangents of a case, drawn outside hypothesis from a generator seeded by the network's
    inputs: hypothesis draws exactly what it drew before they existed, so the network's inputs, and with them
    every first-order result, are those of a spec without directions; and a shrunk network still comes with
    a generic (nonzero) direction."""
    digest = zlib.crc32(b"".join(np.ascontiguousarray(network[k]).tobytes() for k in sorted(network)))
    out: dict[str, np.ndarray] = {}
    for name in names:
        gen = regime.generator_for(name)
        shape = shapes[name]
        size = shape[0] * shape[1]
        salt = [zlib.crc32(repr(part).encode()) for part in (name, dtype, regime.name, family.name, magnitude)]
        rng = np.random.default_rng([digest] + salt)
        if gen.kind == "normal":
            scale = gen.resolve(magnitude)  # a scale of 0 is a zero direction, as the spec says; none is 1
            values = rng.standard_normal(size) * (1.0 if scale is None else float(scale))
        elif gen.kind == "uniform":
            values = rng.uniform(gen.low, gen.high, size)
        elif gen.kind == "constant":
            values = np.full(size, float(gen.resolve(magnitude) or 0.0))
        else:
            raise ValueError(f"regime {regime.name!r}: the direction {name!r} takes a normal, uniform or constant "
                             f"generator, not {gen.kind!r}")
        out[name] = _round(values, shape, fmt)
    return out
