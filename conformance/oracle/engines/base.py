"""Oracle engines: the arithmetic the oracle evaluates the spec in, pluggable.

An engine supplies an algebra for :func:`conformance.expr.interpret` whose
values enclose the exact values (intervals or balls), a way to set its working
precision, and the certification of an array of enclosures into
:class:`~conformance.oracle.evaluate.Exact` values under the one acceptance rule of
:mod:`conformance.oracle.certify`. The oracle (``oracle.evaluate``) runs the
precision-doubling loop around it, so every engine returns the same certified
``hi`` (the correctly rounded float64 of the exact value is unique).

Engines:

``mpmath``  mpmath interval arithmetic (``mpmath.iv``) over numpy object arrays;
            the default and the independent reference.
``flint``   Arb ball arithmetic (python-flint ``arb`` / ``arb_mat``) with a
            certified radius on every value; the fast engine, 10-30x faster.

Selection: an explicit name (``--oracle``), else ``$GRADCONFORM_ORACLE``, else
:data:`DEFAULT_ENGINE`.
"""

from __future__ import annotations


from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from conformance.errors import GradconformError

if TYPE_CHECKING:  # pragma: no cover
    from conformance.expr import Ops
    from conformance.oracle.certify import Exact

__all__ = ["Engine", "EngineUnavailable"]

class EngineUnavailable(GradconformError):
    """An oracle engine that is unknown, or whose library is not installed."""


class Engine(ABC):
    """One arithmetic for the oracle. Subclasses are stateless apart from the library's precision setting."""

    #: short name used on the command line (``--oracle NAME``)
    name: str = ""
    #: what the results file records as ``oracle.engine``
    label: str = ""
    #: the library doing the arithmetic
    library: str = ""

    @abstractmethod
    def version(self) -> str:
        """The library's version (part of the cache key: a new version may round differently)."""

    def describe(self) -> dict[str, Any]:
        return {"engine": self.label, "name": self.name, "library": self.library, "version": self.version()}

    @abstractmethod
    def precision(self, bits: int) -> AbstractContextManager[None]:
        """A context in which the engine works with ``bits`` bits of precision."""

    @abstractmethod
    def ops(self) -> "Ops[Any]":
        """A fresh algebra for one evaluation (call inside :meth:`precision`)."""

    @abstractmethod
    def from_floats(self, arr: np.ndarray) -> Any:
        """Exact enclosures (points) of a float array of any binary format."""

    def start(self, inputs: Mapping[str, np.ndarray]) -> "tuple[Ops[Any], dict[str, Any]]":
        """A fresh algebra and the inputs as its values (call inside :meth:`precision`)."""
        return self.ops(), {k: self.from_floats(v) for k, v in inputs.items()}

    @abstractmethod
    def certify_array(self, value: Any, *, waive_ties: bool, bits: int) -> "Exact | None":
        """The certified (hi, lo) of every component, or None if one is not certified at this precision."""

    @abstractmethod
    def approx(self, value: Any) -> np.ndarray:
        """A float64 approximation of each component (for error *bounds*: a relative 2**-52 does not matter)."""

    @abstractmethod
    def first_disjoint(self, a: np.ndarray, b: np.ndarray) -> "tuple[int, ...] | None":
        """The first index (in ``np.ndenumerate`` order) where the enclosures of ``a`` and ``b`` (one shape) are
        disjoint, else None: disjoint enclosures prove the exact values differ (an identity's refutation)."""

    @abstractmethod
    def midpoint(self, value: Any) -> float:
        """The float64 nearest to the midpoint of one enclosure (what a refutation prints)."""

    def certify_all(self, raw: Mapping[str, Any], *, waive_ties: bool, bits: int) -> "dict[str, Exact] | None":
        """:meth:`certify_array` of every value (an engine may do them in one batch); None if one fails."""
        out = {}
        for key, value in raw.items():
            e = self.certify_array(value, waive_ties=waive_ties, bits=bits)
            if e is None:
                return None
            out[key] = e
        return out

    def certify_or_locate(self, raw: Mapping[str, Any], *, waive_ties: bool,
                          bits: int) -> "tuple[dict[str, Exact] | None, str | None]":
        """:meth:`certify_all`, and where it fails, the first key (in ``raw``'s order) whose value is not
        certified: the oracle evaluates that one first at the next precision."""
        out = {}
        for key, value in raw.items():
            e = self.certify_array(value, waive_ties=waive_ties, bits=bits)
            if e is None:
                return None, key
            out[key] = e
        return out, None

    def approx_all(self, values: Mapping[Any, Any], ops: "Ops[Any] | None" = None) -> dict[Any, np.ndarray]:
        """:meth:`approx` of every value, keys and order kept (an engine may do them in one batch, and use
        what its algebra ``ops`` knows about them)."""
        return {k: self.approx(v) for k, v in values.items()}
