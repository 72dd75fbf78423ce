"""A run's cases generated ahead, in a second process, while the run judges the ones it has.

Why: hypothesis's generation is almost half of a cold run (``gradconform bench --sections breakdown``), and it
ran on the run's own core while the machine's second core waited (the backend's worker is idle between its
short replies). The cases of a cell (layout, dtype, regime) depend on the spec, the seed and the cell alone
(:mod:`conformance.cases.generate`: hypothesis seeded per cell, no database, local constants emptied), so a
second process draws the very same cases. They come back as JSON lines (``Case.to_json``: exact hexadecimal
floats), each checked against its id: nothing is pickled.

Nothing depends on it. A cell the helper did not draw (it was not asked for, it failed, the helper died or
is late past :data:`WAIT_SECONDS`) is generated in the run's own process as before; so is everything where no
core is spare (:func:`spare_cores`: one core, a busy machine, an xdist worker), for a spec that is not the text
it was loaded from, or when the helper would import another copy of this package. ``tests/test_prefetch.py`` checks that the cases are identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from conformance.cases.generate import Case, case_id, generate_cases
from conformance.spec.loader import load_spec_text

__all__ = ["CasePrefetcher", "spare_cores", "WAIT_SECONDS"]

#: the longest the run waits for the helper's next cell before generating it itself (a cell takes well under a
#: second to draw at the default widths; a helper this late is stuck)
WAIT_SECONDS = 120.0

#: (layout, dtype, regime, examples): a group's cases (examples None: the regime's own count)
Cell = tuple[str, str, str, "int | None"]


def spare_cores() -> int:
    """The cores this process may run on that nothing else is using: their count, less the 1-minute load
    average (rounded, and at least this process's own 1). Under ``pytest -n N`` and on a busy machine it is 0:
    a helper there would only take a core from work that is already running."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    try:
        busy = max(1, round(os.getloadavg()[0]))
    except OSError:  # pragma: no cover - no load average
        busy = 1
    return max(0, n - busy)


def _package_root() -> str:
    """The directory this copy of the ``conformance`` package is imported from (the helper must import it)."""
    return str(Path(__file__).resolve().parent.parent.parent)


def _same_spec(spec: Any) -> bool:
    """Whether ``spec`` is what its text loads to (a spec built or changed in memory is not: the helper, which
    gets the text, would draw another spec's cases)."""
    if not spec.source:
        return False
    try:
        again = replace(load_spec_text(spec.source, name=spec.path), path=spec.path, sha256=spec.sha256)
    except Exception:  # noqa: BLE001 - whatever the reason, the run generates its own cases
        return False
    return again == spec or again.without_wide() == spec


class CasePrefetcher:
    """The helper process of one run, drawing ``cells`` in order; :meth:`take` hands out one cell's cases."""

    def __init__(self, proc: subprocess.Popen[bytes], cells: Sequence[Cell]) -> None:
        self._proc = proc
        self._planned = set(cells)
        self._results: dict[Cell, list[Case] | None] = {}
        self._done = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="gradconform-prefetch", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, spec: Any, seed: int, cells: Sequence[Cell]) -> "CasePrefetcher | None":
        """The helper for ``cells`` of ``spec``, or None where it cannot help (see the module's docstring)."""
        cells = [c for c in dict.fromkeys(cells) if c[2] in spec.regimes and not spec.is_wide(c[2])]
        if not cells or not _same_spec(spec):
            return None
        request = json.dumps({"package": _package_root(), "spec": spec.source, "path": spec.path, "seed": seed,
                              "cells": [list(c) for c in cells]}).encode()
        env = dict(os.environ)
        env["PYTHONPATH"] = _package_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            # started in the package's own directory: ``-m`` puts the working directory first on the path, and a
            # user's directory may hold another ``conformance``
            proc = subprocess.Popen([sys.executable, "-m", "conformance.cases.prefetch"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=_package_root())
            assert proc.stdin is not None
            proc.stdin.write(request)
            proc.stdin.close()
        except OSError:
            return None
        return cls(proc, cells)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                cell, cases = _parse(line)
                if cell is None or cell not in self._planned:
                    continue
                with self._cond:
                    self._results[cell] = cases
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def take(self, cell: Cell) -> list[Case] | None:
        """The cases of ``cell`` as the helper drew them, or None: the caller generates them itself."""
        if cell not in self._planned:
            return None
        deadline = time.monotonic() + WAIT_SECONDS
        with self._cond:
            while cell not in self._results and not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._planned.discard(cell)
            return self._results.pop(cell, None)

    def close(self) -> None:
        """Stop the helper (it may still be drawing cells nobody will ask for)."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._reader.join(timeout=10)


def _parse(line: bytes) -> tuple[Cell | None, list[Case] | None]:
    """One line of the helper: a cell and its cases, or the cell alone (None) where it failed or a case does
    not match its id or its cell."""
    try:
        data = json.loads(line)
        cell = tuple(data["cell"])
        if len(cell) != 4 or not all(isinstance(p, str) for p in cell[:3]) or not (
                cell[3] is None or type(cell[3]) is int):
            return None, None
    except (ValueError, KeyError, TypeError):
        return None, None
    try:
        cases = [Case.from_json(c) for c in data["cases"]]
        for c in cases:
            if (c.layout, c.dtype, c.regime) != cell[:3] or case_id(c.layout, c.dtype, c.regime, c.family, c.magnitude,
                                                                    c.inputs) != c.id:
                return cell, None  # type: ignore[return-value]
        return cell, cases  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - an error line, or a malformed case: the run draws the cell itself
        return cell, None  # type: ignore[return-value]


def _main() -> int:
    """The helper: reads its request on stdin, writes one JSON line per cell as soon as it is drawn."""
    request = json.loads(sys.stdin.buffer.read())
    if request.get("package") != _package_root():
        return 2  # another copy of the package would draw (perhaps) other cases: the run draws its own
    try:
        os.nice(5)  # the run's own work comes first when the cores are busy
    except OSError:  # pragma: no cover
        pass
    spec = load_spec_text(request["spec"], name=request["path"])
    out = sys.stdout
    for cell in request["cells"]:
        layout, dtype, regime, examples = cell
        try:
            cases = generate_cases(spec, layout, dtype, regime, seed=request["seed"], examples=examples)
            line = json.dumps({"cell": cell, "cases": [c.to_json() for c in cases]})
        except Exception as exc:  # noqa: BLE001 - the run generates this cell itself and meets the error there
            line = json.dumps({"cell": cell, "error": f"{type(exc).__name__}: {exc}"})
        try:
            out.write(line + "\n")
            out.flush()
        except BrokenPipeError:  # the run is gone or no longer listening
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(_main())
