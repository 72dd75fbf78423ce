"""An on-disk cache of generated cases, beside the oracle's results (the oracle's inputs).

Generating a group's cases runs hypothesis (about 4 ms a case); a rerun of
the same spec and seed draws the very same cases, so they are stored once.
The key holds everything generation depends on: the spec file's hash, the
group (layout, dtype, regime), the seed and the examples setting, the
versions of hypothesis, numpy and ml_dtypes, and a hash of the source of the
generating modules (cases, strategies, formats, spec, shapes). On reading,
every case's id is recomputed from its inputs (the id is a hash of them), so a
stored case that does not match its id is rejected and the group regenerated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conformance.cache.store import BlobStore
from conformance.cases.generate import Case, case_id
from conformance.formats import get_format
from conformance import expr, formats, primitives
from conformance.cache.keys import code_hash
from conformance.cases import generate, strategies
from conformance.spec import model, parse, shapes

__all__ = ["CaseCache"]

_SOURCES = (generate, strategies, formats, model, shapes, parse, expr, primitives)  # the code a generated case depends on


def _versions() -> dict[str, str]:
    import hypothesis

    out = {"hypothesis": hypothesis.__version__, "numpy": np.__version__}
    try:
        import ml_dtypes

        out["ml_dtypes"] = ml_dtypes.__version__
    except ImportError:  # pragma: no cover
        out["ml_dtypes"] = ""
    return out


class CaseCache:
    """Generated cases under ``root/cases/``, one entry per (spec, group, seed, examples)."""

    def __init__(self, root: str | Path) -> None:
        self.store = BlobStore(root, "cases")

    @property
    def stats(self) -> dict[str, Any]:
        return self.store.stats.as_dict()

    def key(self, spec_sha256: str, layout: str, dtype: str, regime: str, seed: int,
            examples: int | None) -> dict[str, Any]:
        return {"kind": "cases", "spec": spec_sha256, "group": [layout, dtype, regime], "seed": seed,
                "examples": examples, "versions": _versions(), "code": code_hash(*_SOURCES)}

    def get(self, spec_sha256: str, layout: str, dtype: str, regime: str, seed: int,
            examples: int | None) -> list[Case] | None:
        entry = self.store.get(self.key(spec_sha256, layout, dtype, regime, seed, examples))
        if entry is None:
            return None
        try:
            fmt = get_format(dtype)
            cases = []
            for i, c in enumerate(entry.meta["cases"]):
                inputs = {name: entry.arrays[f"{i}:{name}"].astype(fmt.dtype) for name in c["inputs"]}
                mag = c["magnitude"]
                case = Case(c["id"], layout, dtype, regime, c["family"], dict(c["sizes"]), mag, inputs)
                if case_id(layout, dtype, regime, c["family"], mag, inputs) != c["id"]:
                    raise ValueError("a stored case does not match its id")
                cases.append(case)
            return cases
        except (KeyError, TypeError, ValueError):
            self.store.unhit("contents")
            return None

    def put(self, spec_sha256: str, layout: str, dtype: str, regime: str, seed: int, examples: int | None,
            cases: list[Case]) -> bool:
        arrays: dict[str, np.ndarray] = {}
        meta: list[dict[str, Any]] = []
        for i, c in enumerate(cases):
            for name, v in c.inputs.items():
                arrays[f"{i}:{name}"] = np.asarray(v).astype(np.float64)  # exact: every format widens to float64
            meta.append({"id": c.id, "family": c.family, "sizes": dict(c.sizes), "magnitude": c.magnitude,
                         "inputs": list(c.inputs)})
        return self.store.put(self.key(spec_sha256, layout, dtype, regime, seed, examples), arrays, {"cases": meta})
