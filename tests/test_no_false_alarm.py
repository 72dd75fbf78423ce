"""No false alarm: correct implementations that differ from the spec's evaluation pass everywhere.

Each implementation in :data:`tests.accuracy_backends.CORRECT` is a way people
really write this network: another summation order (reversed, pairwise,
BLAS-blocked), another association of the matrix chains, float64 accumulation,
the bias added inside the accumulator, last or first (gemm with beta = 1,
sequentially or by fused multiply-add), sigmoid as 1 / (1 + exp(-a)),
sigmoid' as h (1 - h) or sigmoid(a) sigmoid(-a), softmax through a
reciprocal or as exp(log_softmax), the reverse-mode graph of the fused or of
the composed loss, everything computed in a wider type and rounded at the end.
Every one is judged on every layout, dtype and regime of the seed spec; the
only tolerated failures are non-finite results of the composed formulas where
a probability underflows (log(0), y / 0), which are genuine (the exact value is
finite) and are reported as such, never hidden.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest

from conformance.statuses import PASS
from conformance.formats import DTYPES

from .accuracy_backends import CORRECT
from .accuracy_support import EXAMPLES, sweep

#: The composed forms break (non-finite) exactly where a probability underflows: these regimes.
UNDERFLOW_REGIMES = {"large_logits", "unlikely_class", "near_tied_logits"}
COMPOSED = {"composed-loss": {"L"}, "autodiff-composed": None, "autodiff-composed-sw": None}  # None: any quantity downstream of y / yhat


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_implementation_is_never_flagged(seed_spec, name):
    records = sweep(seed_spec, name)
    components: dict[str, int] = defaultdict(int)
    worst: dict[str, float] = defaultdict(float)
    bad = []
    for r in records:
        components[r.dtype] += r.components
        if r.status == PASS:
            worst[r.dtype] = max(worst[r.dtype], r.max_ratio or 0.0)
            continue
        genuine_nonfinite = (name in COMPOSED and r.detail == "nonfinite" and r.regime in UNDERFLOW_REGIMES
                             and (COMPOSED[name] is None or r.quantity in COMPOSED[name]))
        if not genuine_nonfinite:
            bad.append(r)
    assert not bad, "\n".join(f"{r.quantity} [{r.layout}, {r.dtype}, {r.regime}, {r.magnitude}] {r.status} "
                              f"{r.detail}: {r.message}" for r in bad[:10])
    # a large sample: every dtype judged on thousands of components
    assert all(components[d] >= 5_000 * EXAMPLES for d in DTYPES), components
    print(f"\n{name}: components {dict(components)}; worst error/allowed among passes {dict(worst)}")


def test_the_composed_forms_do_break_where_probabilities_underflow(seed_spec):
    """The tolerated failures above are real and located: the composed loss is non-finite exactly in the
    regimes where the labelled probability underflows, in every dtype, and only for L."""
    records = sweep(seed_spec, "composed-loss")
    failing = {(r.quantity, r.regime) for r in records if r.status != PASS}
    assert failing and {q for q, _ in failing} == {"L"}
    assert {reg for _, reg in failing} <= UNDERFLOW_REGIMES
    for dtype in DTYPES:
        assert any(r.dtype == dtype and r.status != PASS and r.regime == "unlikely_class" for r in records)


@pytest.mark.parametrize("name", ["bias-first", "bias-first-fma"])
def test_bias_first_accumulation_is_not_flagged_where_the_bias_dominates(seed_spec, name):
    """gemm with beta = 1 (torch.addmm, nn.Linear) starts the accumulator at the bias, sequentially or with FMA:
    with |b1| ~ 1000 in float64 each of the k additions rounds at the bias's magnitude, up to k u |b1| in all,
    beyond the spec order's gamma_k |x||W1| + u |a| (flagged there at a ratio of 1.02 before the bound of
    x W1 + b1 counted the bias as one more term of the sum: gamma_{k+1} (|x||W1| + |b1|))."""
    regime = replace(seed_spec.regimes["saturated_sigmoid"], magnitudes=(1000.0,))
    spec = replace(seed_spec, regimes={"saturated_sigmoid": regime})
    records = sweep(spec, name, examples=4, dtypes=("float64",))
    bad = [r for r in records if r.status != PASS]
    assert not bad, "\n".join(f"{r.quantity} [{r.layout}] {r.status} {r.detail}: {r.message}" for r in bad[:10])
    # not vacuous: the bias-first order's error on a is a sizable part of the bound (the bound is not slack)
    worst = max(r.max_ratio or 0.0 for r in records if r.quantity == "a")
    assert worst > 0.1, worst
    print(f"\n{name}, float64 saturated_sigmoid at 1000: {len(records)} results pass; worst ratio on a {worst:.3g}")
