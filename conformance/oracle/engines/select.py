"""Choosing an oracle engine by name: ``--gc-oracle NAME``, else ``$GRADCONFORM_ORACLE``, else flint where
python-flint is installed (the ``fast`` extra), else mpmath.

flint is the default where it is there because it is 6x (seed shape) to 40x (width 256) faster under the same
certification rule, and gives the same statuses and grades as mpmath on the whole default suite
(docs/performance.md); mpmath stays the reference, and the engine that needs nothing beyond the core install.

Apart from :mod:`conformance.oracle.engines.base` (the abstract :class:`Engine`) so that the engines import the
base class and this module imports the engines, never the other way round.
"""

from __future__ import annotations

import importlib.util
import os

from conformance.oracle.engines.base import Engine, EngineUnavailable
from conformance.oracle.engines.mpmath_engine import MpmathEngine

__all__ = ["ENGINES", "DEFAULT_ENGINE", "ENV_ORACLE", "get_engine", "engine_names"]



def _default_engine() -> str:
    """flint where python-flint can be found (located, not imported: entry points stay light), else mpmath."""
    try:
        return "flint" if importlib.util.find_spec("flint") is not None else "mpmath"
    except (ImportError, ValueError):
        return "mpmath"


DEFAULT_ENGINE = _default_engine()
ENV_ORACLE = "GRADCONFORM_ORACLE"
ENGINES: tuple[str, ...] = ("mpmath", "flint")
_instances: dict[str, Engine] = {}


def _load(name: str) -> Engine:
    if name == "mpmath":
        return MpmathEngine()
    if name == "flint":
        try:
            from conformance.oracle.engines.flint_engine import FlintEngine  # lazy: python-flint is optional
        except ImportError as exc:
            raise EngineUnavailable(
                f"oracle engine 'flint' needs python-flint (pip install python-flint): {exc}") from None
        return FlintEngine()
    raise EngineUnavailable(f"unknown oracle engine {name!r}; known: {', '.join(ENGINES)}")


def engine_names() -> tuple[str, ...]:
    return ENGINES


def get_engine(engine: "str | Engine | None" = None) -> Engine:
    """The engine named (or given), else ``$GRADCONFORM_ORACLE``, else the default."""
    if isinstance(engine, Engine):
        return engine
    name = engine or os.environ.get(ENV_ORACLE) or DEFAULT_ENGINE
    if name not in _instances:
        _instances[name] = _load(name)
    return _instances[name]

