"""A deliberately wrong backend is reported failing for exactly the identities it breaks;
the numpy backend is flagged nowhere it claims to work."""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from dataclasses import replace

from conformance.backend import BinOp, Name, Request, Transpose, map_tree
from conformance.statuses import PASS
from conformance.formats import DTYPES
from conformance.run.run import Run
from impls.numpy import NumpyBackend

REGIME = "benign"


def _rewrite(request: Request, fn) -> Request:
    """The same request with every closed form (not the forward definitions) rewritten by ``fn``."""
    qs = tuple(q if q.kind == "value" or q.expr is None else replace(q, expr=map_tree(q.expr, fn))
               for q in request.quantities)
    return replace(request, quantities=qs)


class SigmoidPrimeWrong(NumpyBackend):
    """sigmoid' computed as h*(1+h) instead of h*(1-h) in every closed form."""

    name = "sigmoid-prime-wrong"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        def fn(e):
            if isinstance(e, BinOp) and e.op == "-" and isinstance(e.right, BinOp) and e.right.op == "*" \
                    and e.left == Name("h") and e.right.left == Name("h") and e.right.right == Name("h"):
                return BinOp("+", e.left, e.right)
            return None

        return super().evaluate(_rewrite(request, fn))


class MissingTranspose(NumpyBackend):
    """W1 used where W1.T is needed (the common write-up of the question)."""

    name = "missing-transpose"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        return super().evaluate(_rewrite(request, lambda e: Name("W1") if e == Transpose(Name("W1")) else None))


def failing_quantities(spec, backend: str, dtypes=("float64", "float32")) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with Run(spec, backend, isolate=False, examples=1) as run:
        for layout in spec.layouts:
            for dtype in dtypes:
                for r in run.group(layout, dtype, REGIME).records:
                    if r.status != PASS:
                        out.setdefault(layout, set()).add(r.quantity)
    return out


def test_wrong_sigmoid_derivative_breaks_exactly_the_identities_that_use_it(seed_spec):
    failing = failing_quantities(seed_spec, "tests.test_fault_injection:SigmoidPrimeWrong")
    below = {"dL/da", "dL/dx", "dL/dW1", "dL/db1"}  # and their label-sum-free forms
    uses_sigmoid_prime = below | {f"{q}.general" for q in below} | {"dL/dx.chain", "dh/da"}
    # forward mode and second order: each pushes a direction through sigma'(a)
    uses_sigmoid_prime |= {"dyhat/dx.jvp", "dh/da.vjp", "dyhat/dx.vjp", "d2L/da2.hvp", "d2L/dx2.hvp"}
    assert failing == {"row": uses_sigmoid_prime, "column": uses_sigmoid_prime - {"dL/dx.chain"}}


def test_missing_transpose_breaks_exactly_the_identities_with_W1_T(seed_spec):
    failing = failing_quantities(seed_spec, "tests.test_fault_injection:MissingTranspose")
    # first order: only the row layout writes W1.T; the column layout's tangents enter as W1.T @ v_x
    assert failing == {"row": {"dL/dx", "dL/dx.general", "dL/dx.chain", "da/dx", "dyhat/dx.vjp", "d2L/dx2.hvp"},
                       "column": {"dyhat/dx.jvp", "d2L/dx2.hvp"}}


def test_missing_transpose_is_a_value_failure_in_the_square_family(seed_spec):
    with Run(seed_spec, "tests.test_fault_injection:MissingTranspose", isolate=False, examples=1) as run:
        records = [r for r in run.group("row", "float64", REGIME).records if r.family == "square"
                   and r.quantity == "dL/dx"]
    assert records and all(r.status == "fail" and r.detail == "out_of_bound" for r in records)


@pytest.mark.parametrize("backend", ["numpy", "numpy-composed"])
def test_numpy_backends_pass_the_benign_regime_everywhere(seed_spec, backend):
    failing = failing_quantities(seed_spec, backend, dtypes=DTYPES)
    assert failing == {}
