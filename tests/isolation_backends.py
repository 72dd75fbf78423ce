"""Deliberately faulty backends, loaded by the isolation tests as ``tests.isolation_backends:<Class>``.

Each one does exactly one thing wrong, on purpose, so that the tests can show
that the harness records it as its own verdict and carries on. Where a
backend must otherwise be right, it delegates to the numpy backend (which
passes the whole suite), so that only the deliberate fault can fail.

A backend may misbehave only on some requests (``only_dtype``): that is how
the tests show the run going on with the other cases, and the persistent
worker being restarted after a crash rather than started for every case.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any, Mapping

import numpy as np

from conformance.backend import QUANTITY_KINDS, Backend, Request
from impls.numpy import NumpyBackend

PID_KEY = "__pid__"  # an extra result the tests read to tell worker processes apart


class _Correct(Backend):
    """Right answers (the numpy backend's), plus the worker's process id; ``fault`` spoils them."""

    name = "faulty"
    description = "a deliberately faulty test backend"
    #: misbehave only on requests of this dtype (None: on every request)
    only_dtype: str | None = None

    def __init__(self) -> None:
        self._numpy = NumpyBackend()

    def quantity_kinds(self) -> frozenset[str]:
        return QUANTITY_KINDS  # the numpy backend's answers: every kind

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        out = dict(self._numpy.evaluate(request))
        if self.only_dtype is None or request.dtype == self.only_dtype:
            out = self.fault(request, out)
        out[PID_KEY] = np.array(os.getpid())
        return out

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return out


class Correct(_Correct):
    name = "correct"


class Raises(_Correct):
    name = "raises"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("deliberate failure inside evaluate()")


class WrongShape(_Correct):
    """Every array with one row too many (as if a batch axis were mishandled)."""

    name = "wrong-shape"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return {k: np.vstack([v, v[:1]]) for k, v in out.items()}


class WrongDtype(_Correct):
    """float32 requests answered in float64 (and every other dtype in float32)."""

    name = "wrong-dtype"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        other = np.float64 if request.dtype == "float32" else np.float32
        return {k: np.asarray(v).astype(other) for k, v in out.items()}


class NaNWhereFinite(_Correct):
    """One NaN in the first component of every gradient; forward values untouched."""

    name = "nan"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        for q in request.quantities:
            if q.kind == "gradient":
                spoiled = np.array(out[q.id], copy=True)
                spoiled.flat[0] = np.nan
                out[q.id] = spoiled
        return out


class Missing(_Correct):
    """Returns no value for the gradients."""

    name = "missing"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return {q.id: out[q.id] for q in request.quantities if q.kind != "gradient"}


class Aborts(_Correct):
    name = "aborts"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        os.abort()


class Segfaults(_Correct):
    """A real segmentation fault: reading address 0."""

    name = "segfaults"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        ctypes.string_at(0)
        return out  # never reached


class Hangs(_Correct):
    name = "hangs"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        time.sleep(3600)
        return out


class SegfaultsOnFloat16(Segfaults):
    name = "segfaults-on-float16"
    only_dtype = "float16"


class AbortsOnFloat16(Aborts):
    name = "aborts-on-float16"
    only_dtype = "float16"


class HangsOnBfloat16(Hangs):
    name = "hangs-on-bfloat16"
    only_dtype = "bfloat16"


class Float32Inside(_Correct):
    """float64 requests computed in float32 and widened back: the silent precision loss a bound must catch."""

    name = "float32-inside"
    only_dtype = "float64"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        narrow = Request(request.model, "float32", {k: v.astype(np.float32) for k, v in request.inputs.items()},
                         request.quantities, request.device)
        return {k: np.asarray(v).astype(np.float64) for k, v in self._numpy.evaluate(narrow).items()}


def crash_on_load() -> Backend:
    """A factory that segfaults while the backend is being loaded (the registry calls it in the worker)."""
    ctypes.string_at(0)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- hostile results (tests/test_hostile.py)

MARKER_ENV = "GRADCONFORM_TEST_MARKER"  # a path the hostile backends below write to (a file, or a pid)


class _RunsOnUnpickle:
    """An object that runs ``os.system`` (touching the marker file) in whatever process unpickles it."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ[MARKER_ENV]}",))


class _AbortsOnUnpickle:
    def __reduce__(self):
        return (os.abort, ())


def _gradients(request: Request, out: dict[str, Any], value: Any) -> dict[str, Any]:
    return {**out, **{q.id: value for q in request.quantities if q.kind == "gradient"}}


class ReturnsCodeOnUnpickle(_Correct):
    """Each gradient is an object whose unpickling runs a shell command."""

    name = "returns-code"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return _gradients(request, out, _RunsOnUnpickle())


class ReturnsAbortOnUnpickle(_Correct):
    """Each gradient is an object whose unpickling aborts the process."""

    name = "returns-abort"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return _gradients(request, out, _AbortsOnUnpickle())


class ReturnsWorkerOnlyObject(_Correct):
    """Each gradient is an instance of a class from a module that exists only in the worker process."""

    name = "worker-only-object"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        import sys
        import types

        module = sys.modules.setdefault("gradconform_worker_only", types.ModuleType("gradconform_worker_only"))
        ghost = type("Ghost", (), {"__module__": module.__name__})
        module.Ghost = ghost  # type: ignore[attr-defined]
        return _gradients(request, out, ghost())


class WritesGarbageOnFloat16(_Correct):
    """Writes junk into every socket of its process (the worker's connection) before answering float16."""

    name = "garbage-on-float16"
    only_dtype = "float16"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        import stat

        for fd in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
                    os.write(int(fd), b"\x00\x00\x00\x08garbage!")
            except OSError:
                pass
        return out


def _fork_sleeper() -> None:
    """Fork a child that sleeps for a minute, holding the worker's sockets; its pid goes to the marker file."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    with open(os.environ[MARKER_ENV], "w") as fh:
        fh.write(str(pid))


class ForksThenAborts(_Correct):
    name = "forks-then-aborts"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        _fork_sleeper()
        os.abort()


class ForksAndAnswers(_Correct):
    """Right answers, leaving a forked child behind."""

    name = "forks-and-answers"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        _fork_sleeper()
        return out


class ForksThenHangs(Hangs):
    name = "forks-then-hangs"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        _fork_sleeper()
        return super().fault(request, out)


class HugeMessages(_Correct):
    """A 1 MB exception message on float32, a 1 MB NotSupported reason for each gradient on float64."""

    name = "huge-messages"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        from conformance.backend import NotSupported

        if request.dtype == "float32":
            raise RuntimeError("x" * 1_000_000)
        return _gradients(request, out, NotSupported("y" * 1_000_000))


class ZeroesInputs(_Correct):
    """Zeroes its input arrays in place, then answers for the zeros."""

    name = "zeroes-inputs"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        for v in request.inputs.values():
            v[...] = 0
        return super().evaluate(request)


class SkewedGradients(_Correct):
    """Every gradient off by a relative 2**-8: far beyond any float64 bound."""

    name = "skewed-gradients"

    def fault(self, request: Request, out: dict[str, Any]) -> dict[str, Any]:
        return {k: (np.asarray(v) * (1 + 2.0 ** -8)).astype(np.asarray(v).dtype)
                if any(q.id == k and q.kind == "gradient" for q in request.quantities) else v
                for k, v in out.items()}
