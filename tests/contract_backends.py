"""Backends that use the latitude the backend contract gives (test-only), loaded as
``tests.contract_backends:<Class>``.

Each is the numpy backend (which passes the whole suite) answering in one of the ways
docs/backends.md allows: an exception instance in place of one quantity's array (that
quantity fails, not the case), a 0-d array or a numpy scalar for the scalar loss (read
as 1 x 1). A 0-d array for a quantity that is not 1 x 1 stays a wrong shape.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from conformance.backend import Request
from impls.numpy import NumpyBackend

MESSAGE = "the gradient of W1 is not implemented for this layer type"


class OneQuantityRaises(NumpyBackend):
    """Every gradient with respect to W1 is an exception instance; everything else is right."""

    name = "contract-one-quantity-raises"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        for q in request.quantities:
            if q.kind == "gradient" and q.wrt == "W1":
                out[q.id] = NotImplementedError(MESSAGE)
        return out


class ZeroDimLoss(NumpyBackend):
    """The loss as a 0-d array (what ``x.sum()`` gives in every framework)."""

    name = "contract-0d-loss"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        out["L"] = np.asarray(out["L"]).reshape(())
        return out


class ScalarLoss(NumpyBackend):
    """The loss as a numpy scalar of the dtype (``np.float32(...)``), not an array."""

    name = "contract-scalar-loss"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        out["L"] = out["L"].reshape(-1)[0]
        return out


class ZeroDimBiasGradient(NumpyBackend):
    """dL/db2 collapsed to a 0-d array (its sum): a 0-d answer where a 1 x d_out one is expected."""

    name = "contract-0d-bias-gradient"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(super().evaluate(request))
        out["dL/db2"] = np.asarray(np.sum(out["dL/db2"]), dtype=out["dL/db2"].dtype).reshape(())
        return out
