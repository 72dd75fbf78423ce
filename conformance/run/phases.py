"""Timing hooks of a run: the phases it goes through, reported to a timer the caller gives.

The benchmark (``gradconform bench``) shows where a run's time goes. Rather
than patching the runner's functions, it hands the run a :class:`PhaseTimer`,
and the parts of the run say when they enter and leave each phase. Without a
timer the run uses :data:`NO_TIMING`, which costs a context manager per phase.
"""

from __future__ import annotations

import contextlib
import time
from typing import ContextManager, Iterator, Protocol

__all__ = ["PHASES", "PhaseTimer", "NoTiming", "NO_TIMING", "PhaseClock"]

#: the phases a run reports (what each part of the run spends its time on)
PHASES = ("generation", "case cache", "oracle", "verification", "backend", "bounds", "compare", "records")


class PhaseTimer(Protocol):
    """Receives the phases of a run: ``with timer.phase("oracle"): ...`` around the work of one phase."""

    def phase(self, name: str) -> ContextManager[None]: ...


class NoTiming:
    """The timer of a run that nobody times: every phase is a no-op context."""

    def phase(self, name: str) -> ContextManager[None]:
        return contextlib.nullcontext()


NO_TIMING = NoTiming()


class PhaseClock:
    """A timer that adds up the wall-clock seconds of each phase. A phase entered again while it is
    already open (the bounds of an expression computed while bounding another) counts once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: set[str] = set()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name in self._open:
            yield
            return
        self._open.add(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._open.discard(name)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
