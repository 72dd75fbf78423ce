"""The cases of a run: generated once per process and spec, kept in memory and in the on-disk case cache."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from conformance.cache.case_cache import CaseCache
from conformance.cases.generate import Case, generate_cases
from conformance.cases.prefetch import CasePrefetcher, spare_cores
from conformance.run.phases import PhaseTimer
from conformance.spec.model import Spec

__all__ = ["RunCache", "CaseSupply"]


@dataclass
class RunCache:
    """Work that depends on the spec, the seed and the cases only, not on the backend: the generated
    cases of each group and the oracle's evaluation of each case. Runs of several backends over the
    same spec and seed (the harness's own accuracy tests, checker comparisons) share one, so the oracle
    runs once per case. Never share one between different specs."""

    cases: dict[tuple[Any, ...], list[Case]] = field(default_factory=dict)
    oracle: dict[tuple[str, tuple[str, ...], str], Any] = field(default_factory=dict)


def _helper_wanted() -> bool:
    """A helper only where a core is spare, and not in an xdist worker (its siblings use the other cores)."""
    return "PYTEST_XDIST_WORKER" not in os.environ and spare_cores() >= 1


class CaseSupply:
    """Hands out the cases of (layout, dtype, regime) for one spec and seed: from memory (shared with
    other runs through a :class:`RunCache`), else the case cache, else hypothesis (then cached): drawn ahead in a
    second process for the cells :meth:`prefetch` was told of (conformance.cases.prefetch), else here."""

    #: fewer cells to draw than this are drawn here: the helper's start (an interpreter, hypothesis and numpy
    #: imported, about a second) would cost more than it saves
    PREFETCH_MIN_CELLS = 4

    def __init__(self, spec: Spec, seed: int, examples: int | None, shared: RunCache,
                 case_cache: CaseCache | None, timer: PhaseTimer) -> None:
        self.spec = spec
        self.seed = seed
        self.examples = examples
        self.shared = shared
        self.case_cache = case_cache
        self.timer = timer
        self._prefetcher: CasePrefetcher | None = None

    def prefetch(self, cells: Sequence[tuple[str, str, str, int | None]]) -> None:
        """The (layout, dtype, regime, examples) cells the run will ask for, in the order it will: those in the
        case cache are read now; those to be drawn, but the first (which this process draws while the helper
        starts), are drawn ahead in a second process where the machine has a spare core."""
        missing = []
        for layout, dtype, regime, n in dict.fromkeys(cells):
            key = (self.spec.sha256, layout, dtype, regime, self.seed, n)
            if key in self.shared.cases:
                continue
            if self.case_cache is not None:
                with self.timer.phase("case cache"):
                    hit = self.case_cache.get(*key)  # type: ignore[arg-type]
                if hit is not None:
                    self.shared.cases[key] = hit
                    continue
            missing.append((layout, dtype, regime, n))
        if len(missing) >= self.PREFETCH_MIN_CELLS and self._prefetcher is None and _helper_wanted():
            self._prefetcher = CasePrefetcher.start(self.spec, self.seed, missing[1:])

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def cases(self, layout: str, dtype: str, regime: str, *, examples: int | None | str = "run") -> list[Case]:
        """The cases of (layout, dtype, regime) with this run's seed (``examples``: the run's setting unless
        given): generated once per process, and kept in the case cache when there is one."""
        n = self.examples if examples == "run" else examples
        key = (self.spec.sha256, layout, dtype, regime, self.seed, n)
        if key in self.shared.cases:
            return self.shared.cases[key]
        hit = None
        if self.case_cache is not None:
            with self.timer.phase("case cache"):
                hit = self.case_cache.get(*key)  # type: ignore[arg-type]
        if hit is None:
            if self._prefetcher is not None:
                with self.timer.phase("generation"):  # waiting for the helper: its generation, as the run sees it
                    hit = self._prefetcher.take((layout, dtype, regime, n))
            if hit is None:
                with self.timer.phase("generation"):
                    hit = generate_cases(self.spec, layout, dtype, regime, seed=self.seed, examples=n)  # type: ignore[arg-type]
            if self.case_cache is not None:
                with self.timer.phase("case cache"):
                    self.case_cache.put(*key, hit)  # type: ignore[arg-type]
        self.shared.cases[key] = hit
        return hit
