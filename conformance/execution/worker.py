"""Run a backend in its own process, so that a crash or a hang is a verdict, not the end of the run.

One persistent worker process per backend (started with ``spawn``, so no
state or threads leak from the harness): it imports the backend once, then
answers requests over a pipe. The harness waits for each answer at most
``timeout`` seconds. A worker that dies (abort, segfault, ``os._exit``) is
reported as ``crashed`` with its exit status, one that does not answer as
``timed_out``; either way it is restarted for the next request. Exceptions
inside the backend come back as ``error`` with their message and traceback.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from conformance.backend import NotSupported, Request
from conformance.execution.registry import BackendLoadError, BackendRef, load

__all__ = ["BackendInfo", "Reply", "Worker", "InlineWorker", "make_worker"]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str
    source: str
    available: bool
    reason: str = ""
    description: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu",)


@dataclass(frozen=True)
class Reply:
    """``status``: ok | error | not_supported | crashed | timed_out. ``values`` maps quantity ids to
    arrays, or to ``("not_supported" | "error", message)`` for a quantity the backend declined."""

    status: str
    values: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0


def _describe(ref: BackendRef) -> tuple[Any, BackendInfo]:
    try:
        backend = load(ref)
    except BackendLoadError as exc:
        return None, BackendInfo(ref.name, ref.target, ref.source, False, str(exc))
    except Exception as exc:  # a backend module that fails in any other way
        return None, BackendInfo(ref.name, ref.target, ref.source, False,
                                 f"backend {ref.name!r} failed to load: {type(exc).__name__}: {exc}")
    try:
        reason = backend.unavailable_reason() if hasattr(backend, "unavailable_reason") else None
        info = BackendInfo(
            name=str(getattr(backend, "name", ref.name)), target=ref.target, source=ref.source,
            available=reason is None, reason=reason or "",
            description=str(getattr(backend, "description", "")),
            versions=dict(backend.versions()) if hasattr(backend, "versions") else {},
            dtypes=tuple(sorted(backend.dtypes())) if hasattr(backend, "dtypes") else (),
            devices=tuple(backend.devices()) if hasattr(backend, "devices") else ("cpu",),
        )
    except Exception as exc:
        return None, BackendInfo(ref.name, ref.target, ref.source, False,
                                 f"backend {ref.name!r} failed to describe itself: {type(exc).__name__}: {exc}")
    return backend, info


def _convert(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise TypeError(f"evaluate() must return a mapping of quantity ids to arrays, not {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, NotSupported):
            out[str(key)] = ("not_supported", str(value))
        elif isinstance(value, BaseException):
            out[str(key)] = ("error", f"{type(value).__name__}: {value}")
        else:
            try:
                out[str(key)] = np.asarray(value)
            except Exception as exc:
                out[str(key)] = ("error", f"result is not convertible with numpy.asarray: {type(exc).__name__}: {exc}")
    return out


def _call(backend: Any, request: Request) -> Reply:
    start = time.perf_counter()
    try:
        values = _convert(backend.evaluate(request))
        return Reply("ok", values, seconds=time.perf_counter() - start)
    except NotSupported as exc:
        return Reply("not_supported", message=str(exc) or "not supported", seconds=time.perf_counter() - start)
    except Exception as exc:
        tb = traceback.format_exc(limit=8)
        return Reply("error", message=f"{type(exc).__name__}: {exc}\n{tb}", seconds=time.perf_counter() - start)


def _serve(conn: Any, ref: BackendRef, device: str) -> None:  # runs in the child process
    backend, info = _describe(ref)
    conn.send(info)
    if backend is None:
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        if isinstance(request, list):  # a batch: one reply per request, each sent as soon as it is ready
            for r in request:
                conn.send(_call(backend, r))
            continue
        conn.send(_call(backend, request))


def _exit_description(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Worker:
    """A backend in a persistent child process."""

    def __init__(self, ref: BackendRef, *, timeout: float = 60.0, startup_timeout: float = 180.0,
                 device: str = "cpu") -> None:
        self.ref = ref
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.device = device
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self.info: BackendInfo | None = None
        self.restarts = 0

    def start(self) -> BackendInfo:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.ref, self.device), daemon=True,
                                 name=f"gradconform-{self.ref.name}")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        if not parent.poll(self.startup_timeout):
            self._kill()
            self.info = BackendInfo(self.ref.name, self.ref.target, self.ref.source, False,
                                    f"backend {self.ref.name!r} did not start within {self.startup_timeout:.0f} s")
            return self.info
        try:
            info = parent.recv()
        except (EOFError, OSError):
            proc.join(5)
            code = proc.exitcode
            self._kill()
            info = BackendInfo(self.ref.name, self.ref.target, self.ref.source, False,
                               f"backend {self.ref.name!r} crashed while loading ({_exit_description(code)})")
        if not info.available:
            self._kill()
        self.info = info
        return info

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def evaluate(self, request: Request) -> Reply:
        if not self._alive():
            info = self.start()
            self.restarts += 1
            if not info.available:
                return Reply("error", message=f"backend unavailable: {info.reason}")
        start = time.perf_counter()
        try:
            self._conn.send(request)
        except (OSError, EOFError) as exc:
            self._kill()
            return Reply("crashed", message=f"could not send the request: the backend process is gone ({exc})")
        if not self._conn.poll(self.timeout):
            self._kill()
            return Reply("timed_out", message=f"no answer within {self.timeout:g} s; the backend process was killed "
                                              "and will be restarted", seconds=time.perf_counter() - start)
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            self._kill()
            return Reply("crashed", message=f"the backend process died while evaluating ({_exit_description(code)}); "
                                            "it will be restarted", seconds=time.perf_counter() - start)
        return reply

    def evaluate_many(self, requests: list[Request]) -> list[Reply]:
        """Replies to several requests, sent in one message (one round trip instead of one per request).

        The verdicts are those of calling :meth:`evaluate` on each in turn: the
        worker answers each request separately, each answer is awaited for at
        most ``timeout`` seconds, and a request that crashes or hangs the worker
        gets that verdict while the worker restarts for the rest.
        """
        replies: list[Reply] = []
        pending = list(requests)
        while pending:
            if not self._alive():
                info = self.start()
                self.restarts += 1
                if not info.available:
                    replies += [Reply("error", message=f"backend unavailable: {info.reason}") for _ in pending]
                    return replies
            if len(pending) == 1:
                replies.append(self.evaluate(pending.pop()))
                continue
            try:
                self._conn.send(pending)
            except (OSError, EOFError) as exc:
                self._kill()
                replies.append(Reply("crashed", message=f"could not send the request: the backend process is gone "
                                                        f"({exc})"))
                pending.pop(0)
                continue
            while pending:
                start = time.perf_counter()
                if not self._conn.poll(self.timeout):
                    self._kill()
                    replies.append(Reply("timed_out", message=f"no answer within {self.timeout:g} s; the backend "
                                                              "process was killed and will be restarted",
                                         seconds=time.perf_counter() - start))
                    pending.pop(0)
                    break
                try:
                    replies.append(self._conn.recv())
                except (EOFError, OSError):
                    self._proc.join(5)
                    code = self._proc.exitcode
                    self._kill()
                    replies.append(Reply("crashed", message=f"the backend process died while evaluating "
                                                            f"({_exit_description(code)}); it will be restarted",
                                         seconds=time.perf_counter() - start))
                    pending.pop(0)
                    break
                pending.pop(0)
        return replies

    def close(self) -> None:
        if self._alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (OSError, EOFError):
                pass
        self._kill()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineWorker:
    """The same interface, in the harness process (no isolation: for debugging and the oracle's own tests)."""

    def __init__(self, ref: BackendRef, *, device: str = "cpu", **_: Any) -> None:
        self.ref = ref
        self.device = device
        self.backend: Any = None
        self.info: BackendInfo | None = None
        self.restarts = 0

    def start(self) -> BackendInfo:
        self.backend, self.info = _describe(self.ref)
        return self.info

    def evaluate(self, request: Request) -> Reply:
        if self.backend is None:
            info = self.info or self.start()
            if self.backend is None:
                return Reply("error", message=f"backend unavailable: {info.reason}")
        return _call(self.backend, request)

    def evaluate_many(self, requests: list[Request]) -> list[Reply]:
        return [self.evaluate(r) for r in requests]

    def close(self) -> None:
        self.backend = None

    def __enter__(self) -> "InlineWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_worker(ref: BackendRef, *, isolate: bool = True, timeout: float = 60.0, device: str = "cpu") -> Any:
    return Worker(ref, timeout=timeout, device=device) if isolate else InlineWorker(ref, device=device)
