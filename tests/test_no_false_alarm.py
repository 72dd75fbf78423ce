"""No false alarm: correct implementations that differ from the spec's evaluation pass everywhere.

Each implementation in :data:`tests.accuracy_backends.CORRECT` is a way people
really write this network: another summation order (reversed, pairwise,
BLAS-blocked), another association of the matrix chains, float64 accumulation,
the bias added inside the accumulator, sigmoid as 1 / (1 + exp(-a)),
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
