"""Test cases: generated from the spec's regimes by hypothesis, identified by a hash, stored exactly.

A case is one set of inputs for one layout, dtype, regime, shape family and
magnitude. Generation is deterministic: each (layout, dtype, regime, family,
magnitude) cell has its own seed derived from the run's seed, hypothesis
runs with that seed and no example database, and the first ``examples``
distinct draws are kept. Inputs are stored in results as exact hexadecimal
floats, so any case can be rerun bit for bit.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hyp_seed

from conformance.formats import get_format
from conformance.spec.model import DIRECTION_ROLES, Spec
from conformance.cases.strategies import inputs_strategy

__all__ = ["Case", "generate_cases", "cell_seed", "case_id", "case_strategy", "deterministic_generation",
           "DEFAULT_SEED"]

DEFAULT_SEED = 20161104


@dataclass(frozen=True)
class Case:
    id: str
    layout: str
    dtype: str
    regime: str
    family: str
    sizes: Mapping[str, int]
    magnitude: float | None
    inputs: Mapping[str, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "layout": self.layout, "dtype": self.dtype, "regime": self.regime, "family": self.family,
            "sizes": dict(self.sizes), "magnitude": self.magnitude,
            "inputs": {k: {"shape": list(v.shape), "hex": [float(x).hex() for x in v.astype(np.float64).reshape(-1)]}
                       for k, v in self.inputs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Case":
        fmt = get_format(data["dtype"])
        inputs = {}
        for k, v in data["inputs"].items():
            arr = np.array([float.fromhex(h) for h in v["hex"]], dtype=np.float64).reshape(v["shape"])
            inputs[k] = arr.astype(fmt.dtype)
        return cls(id=data["id"], layout=data["layout"], dtype=data["dtype"], regime=data["regime"],
                   family=data["family"], sizes=dict(data["sizes"]), magnitude=data.get("magnitude"), inputs=inputs)


def case_id(layout: str, dtype: str, regime: str, family: str, magnitude: float | None,
            inputs: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(f"{layout}|{dtype}|{regime}|{family}|{magnitude!r}".encode())
    for name in sorted(inputs):
        arr = np.asarray(inputs[name])
        h.update(name.encode())
        h.update(np.ascontiguousarray(np.where(arr == 0, np.zeros_like(arr), arr)).tobytes())  # -0 is 0 here
    return h.hexdigest()[:12]


def cell_seed(base: int, *parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, (base,) + parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def case_strategy(spec: Spec, layout: str, dtype: str, regime: str, family: str, magnitude: float | None) -> Any:
    """The hypothesis strategy of one cell, mapped to :class:`Case` objects."""
    lay = spec.layouts[layout]
    reg = spec.regimes[regime]
    fam = spec.families[family]

    def to_case(inputs: dict[str, np.ndarray]) -> Case:
        return Case(case_id(layout, dtype, regime, family, magnitude, inputs), layout, dtype, regime, family,
                    dict(fam.sizes), magnitude, inputs)

    return inputs_strategy(lay, spec.inputs, dtype, reg, fam, magnitude).map(to_case)


def _degenerate(case: Case, labels: set[str]) -> bool:
    """Every input but the labels (and the tangents and cotangents, which the network does not see) is zero:
    hypothesis's simplest example, which hides most mistakes (W1 = 0 makes W1 and W1.T equal); it is left out
    of the sweep."""
    return all(not np.any(v) for k, v in case.inputs.items() if k not in labels)


@contextmanager
def deterministic_generation() -> Iterator[None]:
    """Make hypothesis's draws depend on the seed alone.

    Hypothesis (6.13x on) sometimes draws a "constant" collected from the
    source of every *local* module loaded at the time (any module outside
    site-packages: this package when installed editable, a user's backend, a
    conftest...). Generated cases then change whenever a module is added, or
    imported in another order, or by another xdist worker. Inside this context
    that pool of local constants is empty (hypothesis's built-in constants
    stay), so a seed gives the same cases in every process. The hook is
    hypothesis-internal; where it is missing this context does nothing.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another hypothesis layout
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if original is None or not hasattr(cache, "clear"):  # pragma: no cover
        yield
        return
    empty = Constants()
    cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


class _Enough(BaseException):
    """Ends a harvest once it has its cases. A BaseException, so that hypothesis lets it through at once
    (as it does KeyboardInterrupt) instead of treating it as a failing example to replay and report."""


def _harvest(strategy: Any, n: int, seed: int, labels: set[str]) -> list[Any]:
    """The first ``n`` distinct, non-degenerate draws of ``strategy`` under ``seed``.

    Generation stops as soon as ``n`` cases are in hand. The draws before that
    point do not depend on what comes after, so the cases are those of a full
    run of ``max_examples`` draws, at a fraction of the cost.
    """
    found: list[Any] = []
    if n <= 0:
        return found

    @settings(max_examples=max(n * 3, n + 2), phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False, print_blob=False)
    @hyp_seed(seed)
    @given(strategy)
    def collect(case: Any) -> None:
        if len(found) < n and not _degenerate(case, labels) and all(c.id != case.id for c in found):
            found.append(case)
        if len(found) >= n:
            raise _Enough

    try:
        with deterministic_generation():
            collect()
    except _Enough:
        pass
    return found


def generate_cases(spec: Spec, layout: str, dtype: str, regime: str, *, seed: int = DEFAULT_SEED,
                   examples: int | None = None) -> list[Case]:
    """The cases of one (layout, dtype, regime) group: every shape family and magnitude of the regime."""
    reg = spec.regimes[regime]
    n = examples if examples is not None else reg.examples
    cases: list[Case] = []
    for fam in spec.families_for(reg):
        for mag in reg.magnitudes:
            strategy = case_strategy(spec, layout, dtype, regime, fam.name, mag)
            labels = {k for k, d in spec.inputs.items() if d.get("role") in {"label", *DIRECTION_ROLES}}
            cases.extend(_harvest(strategy, n, cell_seed(seed, spec.name, layout, dtype, regime, fam.name, mag), labels))
    return cases
