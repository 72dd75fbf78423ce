"""The backend contract: everything a backend author needs, and nothing else of the harness.

A backend is a subclass of :class:`Backend` (or any object with the same
attributes) whose :meth:`Backend.evaluate` receives a :class:`Request` and
returns, for each requested :class:`Quantity`, an array convertible with
``numpy.asarray`` to the requested dtype and shape. The model arrives as the
spec's expression trees (:mod:`conformance.expr`), so a framework backend can
interpret the forward definitions with its own operations and differentiate
them with its own autodiff.

Conventions:

* every value is a 2-D array; inputs arrive as numpy arrays of the requested
  dtype (``bfloat16`` is ``ml_dtypes.bfloat16``);
* a ``gradient`` of the scalar ``of`` has the shape of ``wrt``;
* a ``jacobian`` relates two vectors (1 x k or k x 1): in ``numerator``
  layout entry (i, j) is d of_i / d wrt_j; in ``denominator`` layout it is
  the transpose;
* higher order and forward mode (contract 1.1): a ``jvp`` is J v, the
  derivative of ``of`` along the tangent ``v = inputs[direction]`` of ``wrt``
  (shape of ``of``); a ``vjp`` is u^T J, the pullback of the cotangent
  ``u = inputs[direction]`` of ``of`` (shape of ``wrt``); a ``hessian`` is the
  k x k matrix d^2 of / d wrt_i d wrt_j of a scalar ``of`` with respect to a
  vector ``wrt``; an ``hvp`` is the Hessian times the tangent
  ``inputs[direction]`` (shape of ``wrt``). A backend lists the kinds it
  computes in :meth:`Backend.quantity_kinds`; the harness never asks a backend
  for a kind it does not list, and records those quantities as not supported;
* raise :class:`NotSupported` for what the backend does not do at all (a
  dtype, a device), or put a ``NotSupported`` instance in place of one
  quantity's array (a primitive or a kind of quantity it lacks): either is
  recorded as "not supported", which never counts as a pass. Any other
  exception is recorded as an error with its message.

Backends are found by name (built-in), through the ``gradconform.backends``
entry-point group, or as ``package.module:attr``. See docs/backends.md, "Writing a backend".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from conformance.expr import (  # re-exported: the tree is part of the contract
    AXIS_FUNCTIONS,
    FUNCTIONS,
    BinOp,
    Call,
    Const,
    Expr,
    Name,
    Neg,
    Ops,
    Pow,
    Transpose,
    UnsupportedPrimitive,
    fuse_log_softmax,
    inline,
    interpret,
    map_tree,
    to_text,
)
from conformance.formats import DTYPES  # re-exported: the dtypes a request can name

__all__ = [
    "Backend",
    "Model",
    "Quantity",
    "Request",
    "NotSupported",
    "CONTRACT_VERSION",
    "FIRST_ORDER_KINDS",
    "QUANTITY_KINDS",
    "DTYPES",
    "numpy_dtype",
    "Expr", "Name", "Const", "Neg", "BinOp", "Pow", "Transpose", "Call", "FUNCTIONS", "AXIS_FUNCTIONS",
    "Ops", "UnsupportedPrimitive", "interpret", "inline", "fuse_log_softmax", "map_tree", "to_text",
]

#: The version of this contract, (major, minor). A minor step adds to the contract (a new quantity kind, a new
#: optional attribute) and keeps every backend written for an earlier minor working; a major step would not.
#: ``conformance.backend`` and ``conformance.expr`` stay importable at these paths across minor versions.
CONTRACT_VERSION: tuple[int, int] = (1, 1)

#: The quantity kinds of contract 1.0: what a backend that does not say otherwise is asked for.
FIRST_ORDER_KINDS: frozenset[str] = frozenset({"value", "gradient", "jacobian"})
#: Every quantity kind of this contract; 1.1 added forward mode and second order (``jvp``, ``vjp``, ``hessian``,
#: ``hvp``). A backend written for 1.0 keeps working: it is asked only for :data:`FIRST_ORDER_KINDS`.
QUANTITY_KINDS: frozenset[str] = FIRST_ORDER_KINDS | {"jvp", "vjp", "hessian", "hvp"}


class NotSupported(Exception):
    """Raise from a backend for a dtype, primitive or quantity it does not provide."""


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a dtype name (``bfloat16`` through ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return np.dtype(name)


@dataclass(frozen=True)
class Quantity:
    """One thing the harness wants back.

    ``kind`` is ``value`` (a forward value, ``of``), ``gradient`` (of the
    scalar ``of`` with respect to ``wrt``), ``jacobian`` (of vector ``of``
    with respect to vector ``wrt``, in ``convention`` layout), or one of the
    kinds of contract 1.1: ``jvp``, ``vjp``, ``hessian``, ``hvp`` (the module
    docstring; ``direction`` names the input holding the tangent or
    cotangent, None for the other kinds). ``expr`` is the
    spec's closed form (for an identity) or definition (for a value): a
    backend that evaluates formulas uses it; an autodiff backend ignores it
    for derivatives. ``id`` names the result in the response.
    """

    id: str
    kind: str
    of: str
    wrt: str | None = None
    convention: str | None = None
    expr: Expr | None = None
    shape: tuple[int, int] = (1, 1)
    direction: str | None = None  # contract 1.1: the tangent (jvp, hvp) or cotangent (vjp) input


@dataclass(frozen=True)
class Model:
    """The forward computation: inputs, ordered definitions, and the scalar loss."""

    name: str
    layout: str
    inputs: tuple[str, ...]
    forward: tuple[tuple[str, Expr], ...]
    loss: str

    @property
    def definitions(self) -> dict[str, Expr]:
        return dict(self.forward)


@dataclass(frozen=True)
class Request:
    model: Model
    dtype: str
    inputs: Mapping[str, np.ndarray]
    quantities: tuple[Quantity, ...]
    device: str = "cpu"


class Backend(ABC):
    """Subclass this. Class attributes describe the backend; :meth:`evaluate` does the work.

    ``name`` identifies it in results and reports; ``description`` says in
    one line what it computes and how (e.g. "torch autograd, composed loss").
    """

    name: ClassVar[str] = "unnamed"
    description: ClassVar[str] = ""

    def dtypes(self) -> frozenset[str]:
        """The dtypes this backend claims to support (others are recorded as not supported)."""
        return frozenset(DTYPES)

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def quantity_kinds(self) -> frozenset[str]:
        """The quantity kinds this backend computes (contract 1.1). The default is those of contract 1.0, so a
        backend written before forward mode and second order existed is never asked for them: its ``jvp``,
        ``vjp``, ``hessian`` and ``hvp`` quantities are recorded as not supported."""
        return FIRST_ORDER_KINDS

    def versions(self) -> Mapping[str, str]:
        """Library versions worth recording in results (e.g. {"torch": "2.13.0"})."""
        return {}

    def unavailable_reason(self) -> str | None:
        """Why the backend cannot run here (library not installed...), or None when it can."""
        return None

    @abstractmethod
    def evaluate(self, request: Request) -> Mapping[str, Any]:
        """Return ``{quantity.id: array}`` for every quantity of the request."""
