"""Choosing an oracle engine by name: ``--gc-oracle NAME``, else ``$GRADCONFORM_ORACLE``, else mpmath.

Apart from :mod:`conformance.oracle.engines.base` (the abstract :class:`Engine`) so that the engines import the
base class and this module imports the engines, never the other way round.
"""

from __future__ import annotations

import os
from conformance.oracle.engines.base import Engine, EngineUnavailable
from conformance.oracle.engines.mpmath_engine import MpmathEngine

__all__ = ["ENGINES", "DEFAULT_ENGINE", "ENV_ORACLE", "get_engine", "engine_names"]

DEFAULT_ENGINE = "mpmath"
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

