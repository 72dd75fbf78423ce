"""Run a backend in its own process, so that a crash or a hang is a verdict, not the end of the run.

One persistent worker process per backend (started with ``spawn``, so no
state or threads leak from the harness): it imports the backend once, then
answers requests over a socket in plain data (:mod:`conformance.execution.wire`:
never pickle, so a hostile result cannot run code in the harness). The harness
waits for each answer at most ``timeout`` seconds. A worker that dies (abort,
segfault, ``os._exit``) is reported as ``crashed`` with its exit status, one
that does not answer as ``timed_out``, one whose answer does not parse as
``error``; each time it is killed and restarted for the next request.
Exceptions inside the backend come back as ``error`` with their (capped)
message and traceback.

The worker leads its own session (``os.setsid``), and the harness kills the
whole process group on a crash, a timeout and at close: a backend that forks
cannot leave processes behind, nor hold the socket open after its worker
died. Death is noticed by polling the process, not only the socket (which a
forked grandchild keeps open).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import socket
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from conformance.backend import FIRST_ORDER_KINDS, NotSupported, Request
from conformance.execution.registry import BackendLoadError, BackendRef, load
from conformance.execution.wire import (FRAME, MAX_FRAME_BYTES, BackendInfo, ProtocolError, Reply, cap_message,
                                        versions_dict,
                                        decode_info, decode_reply, decode_requests, encode_close, encode_info,
                                        encode_reply, encode_requests, unpack)

__all__ = ["BackendInfo", "Reply", "ReplyStream", "Worker", "InlineWorker", "make_worker"]

_POLL_S = 0.05  # how often a wait checks whether the worker is still alive
_CHUNK = 1 << 20


def _describe(ref: BackendRef) -> tuple[Any, BackendInfo]:
    def unavailable(reason: str) -> tuple[Any, BackendInfo]:
        return None, BackendInfo(ref.name, ref.target, ref.source, False, cap_message(reason))

    try:
        backend = load(ref)
    except BackendLoadError as exc:
        return unavailable(str(exc))
    except Exception as exc:  # a backend module that fails in any other way
        return unavailable(f"backend {ref.name!r} failed to load: {type(exc).__name__}: {exc}")
    try:
        reason = backend.unavailable_reason() if hasattr(backend, "unavailable_reason") else None
        versions = backend.versions() if hasattr(backend, "versions") else {}
        info = BackendInfo(
            name=str(getattr(backend, "name", ref.name)), target=ref.target, source=ref.source,
            available=reason is None, reason=cap_message(str(reason or "")),
            description=cap_message(str(getattr(backend, "description", ""))),
            versions=versions_dict(versions),
            dtypes=tuple(sorted(str(d) for d in backend.dtypes())) if hasattr(backend, "dtypes") else (),
            devices=tuple(str(d) for d in backend.devices()) if hasattr(backend, "devices") else ("cpu",),
            kinds=tuple(sorted(str(k) for k in backend.quantity_kinds())) if hasattr(backend, "quantity_kinds")
            else tuple(sorted(FIRST_ORDER_KINDS)),
        )
    except Exception as exc:
        return unavailable(f"backend {ref.name!r} failed to describe itself: {type(exc).__name__}: {exc}")
    return backend, info


def _call(backend: Any, request: Request) -> Reply:
    start = time.perf_counter()
    try:
        raw = backend.evaluate(request)
        if not isinstance(raw, Mapping):
            raise TypeError(f"evaluate() must return a mapping of quantity ids to arrays, not {type(raw).__name__}")
        return Reply("ok", _scalars_as_1x1(dict(raw), request), seconds=time.perf_counter() - start)
    except NotSupported as exc:
        return Reply("not_supported", message=cap_message(str(exc) or "not supported"),
                     seconds=time.perf_counter() - start)
    except Exception as exc:
        tb = traceback.format_exc(limit=8)
        return Reply("error", message=cap_message(f"{type(exc).__name__}: {exc}\n{tb}"),
                     seconds=time.perf_counter() - start)


def _scalars_as_1x1(values: dict[Any, Any], request: Request) -> dict[Any, Any]:
    """``values`` with a 0-d array or scalar (numpy, torch, jax, a float) for a 1 x 1 quantity made 1 x 1.

    Why: the contract's scalar is 1 x 1 (every value is 2-D), but a 0-d loss is
    what ``x.sum()`` gives in every framework, and it is the same number; it is
    read as its 1 x 1 form here, once, so that the oracle tests, the metamorphic
    checks and the diagnosis all see the same array. Any other shape stays as it is
    (a wrong shape is the backend's to fix)."""
    for q in request.quantities:
        v = values.get(q.id)
        if tuple(q.shape) == (1, 1) and (getattr(v, "ndim", None) == 0 or isinstance(v, float)):
            try:
                values[q.id] = np.asarray(v).reshape(1, 1)
            except Exception:  # not convertible: left to the wire, which records why
                pass
    return values


def _encoded(reply: Reply) -> bytes:
    """The reply's frame; a reply too large to send is the backend's error, not the worker's end."""
    try:
        return encode_reply(reply)
    except (ProtocolError, ValueError, TypeError) as exc:
        return encode_reply(Reply("error", message=cap_message(f"the reply cannot be sent: {exc}"),
                                  seconds=reply.seconds))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(_CHUNK, n - len(buf)))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _serve(sock: socket.socket, name: str, target: str, source: str) -> None:  # runs in the child process
    if hasattr(os, "setsid"):
        os.setsid()  # a process group of its own, which the harness kills whole (with anything the backend forks)
    backend, info = _describe(BackendRef(name, target, source))
    sock.sendall(encode_info(info))
    if backend is None:
        return
    while True:
        try:
            (n,) = FRAME.unpack(_read_exact(sock, FRAME.size))
            header, payload = unpack(_read_exact(sock, n))
        except (EOFError, OSError):
            return
        if header.get("op") != "evaluate":
            return
        for request in decode_requests(header, payload):  # one reply per request, each sent as soon as it is ready
            sock.sendall(_encoded(_call(backend, request)))


def _exit_description(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(frozen=True)
class _Failure:
    """Why no readable answer came: ``timed_out``, ``crashed`` (with the exit status) or ``unreadable``."""

    kind: str
    detail: str = ""


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
        self._sock: socket.socket | None = None
        self.info: BackendInfo | None = None
        self.restarts = 0
        self._stream: ReplyStream | None = None

    # ------------------------------------------------------------------ the process
    def start(self) -> BackendInfo:
        self._kill()
        parent, child = socket.socketpair()
        proc = self._ctx.Process(target=_serve, args=(child, self.ref.name, self.ref.target, self.ref.source),
                                 daemon=True, name=f"gradconform-{self.ref.name}")
        proc.start()
        child.close()
        self._proc, self._sock = proc, parent
        got = self._receive(self.startup_timeout)
        if isinstance(got, _Failure):
            why = {"timed_out": f"did not start within {self.startup_timeout:.0f} s",
                   "crashed": f"crashed while loading ({got.detail})",
                   "unreadable": f"sent an unreadable description ({got.detail})"}[got.kind]
            info = BackendInfo(self.ref.name, self.ref.target, self.ref.source, False, f"backend {self.ref.name!r} "
                               f"{why}")
        else:
            try:
                info = decode_info(got[0], self.ref.target, self.ref.source)
            except ProtocolError as exc:
                info = BackendInfo(self.ref.name, self.ref.target, self.ref.source, False,
                                   f"backend {self.ref.name!r} sent an unreadable description ({exc})")
        if not info.available:
            self._kill()
        self.info = info
        return info

    def _exited(self) -> bool:
        """Whether the worker has ended, without reaping it where the platform allows (so that its process
        group id cannot be reused before the group is killed)."""
        if self._proc is None:
            return True
        if hasattr(os, "waitid") and self._proc.pid is not None:
            try:
                return os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                pass  # already reaped
        return not self._proc.is_alive()

    def _kill(self) -> None:
        """SIGKILL the worker's whole process group (its forks included), reap it, and drop the socket."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError):
                pass  # not (yet) a group leader, or no such group left
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._sock is not None:
            self._sock.close()
        self._proc = self._sock = None

    def _exit_code(self) -> int | None:
        self._proc.join(5)
        return self._proc.exitcode

    # ------------------------------------------------------------------ one answer
    def _receive(self, timeout: float) -> tuple[dict[str, Any], memoryview] | _Failure:
        """The next frame from the worker, or why none came within ``timeout``: the one place where a crash,
        a hang and a garbled answer are told apart."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout
        buf = bytearray()
        need = FRAME.size
        header_read = False
        while True:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, min(_POLL_S, deadline - time.monotonic())))
            if ready:
                try:
                    chunk = self._sock.recv(min(_CHUNK, need - len(buf)))
                except OSError:
                    chunk = b""
                if not chunk:  # the worker's end closed: it is gone
                    return _Failure("crashed", _exit_description(self._exit_code()))
                buf += chunk
                if len(buf) == need and not header_read:
                    (n,) = FRAME.unpack(buf)
                    if n > MAX_FRAME_BYTES:
                        return _Failure("unreadable", f"a message of {n} bytes announced, over the limit of "
                                                      f"{MAX_FRAME_BYTES}")
                    header_read, buf, need = True, bytearray(), n
                if header_read and len(buf) == need:
                    try:
                        return unpack(bytes(buf))
                    except ProtocolError as exc:
                        return _Failure("unreadable", str(exc))
                continue
            if self._exited():  # dead, though a forked child may hold the socket open
                if select.select([self._sock], [], [], 0)[0]:
                    continue  # what it sent before it died is still to be read
                return _Failure("crashed", _exit_description(self._exit_code()))
            if time.monotonic() >= deadline:
                return _Failure("timed_out")

    def _failed(self, failure: _Failure, start: float) -> Reply:
        self._kill()
        seconds = time.perf_counter() - start
        if failure.kind == "timed_out":
            return Reply("timed_out", message=f"no answer within {self.timeout:g} s; the backend process was "
                                              "killed and will be restarted", seconds=seconds)
        if failure.kind == "crashed":
            return Reply("crashed", message=f"the backend process died while evaluating ({failure.detail}); "
                                            "it will be restarted", seconds=seconds)
        return Reply("error", message=f"the backend process sent an unreadable reply ({failure.detail}); it was "
                                      "killed and will be restarted", seconds=seconds)

    # ------------------------------------------------------------------ requests
    def evaluate(self, request: Request) -> Reply:
        return self.evaluate_many([request])[0]

    def evaluate_many(self, requests: list[Request]) -> list[Reply]:
        """Replies to several requests, sent in one message (one round trip instead of one per request).

        The verdicts are those of calling :meth:`evaluate` on each in turn: the
        worker answers each request separately, each answer is awaited for at
        most ``timeout`` seconds, and a request that crashes or hangs the worker
        gets that verdict while the worker restarts for the rest.
        """
        stream = self.stream(requests)
        return [stream.next() for _ in range(stream.remaining)]

    def stream(self, requests: list[Request]) -> "ReplyStream":
        """Send ``requests`` now, in one message, and read their replies later, in order, one at a time
        (:meth:`ReplyStream.next`): the backend computes the next requests while the harness judges the
        replies it has. Verdicts as in :meth:`evaluate_many`. A stream still open is read to its end before
        anything else is sent, so that replies never mix."""
        if self._stream is not None:
            self._stream.drain()
        self._stream = ReplyStream(self, list(requests))
        return self._stream

    def abandon(self) -> None:
        """Drop an open stream's unread replies by killing the worker (it restarts on the next request): the
        answers nobody waits for are not waited for, however long the backend would take."""
        if self._stream is not None and self._stream.remaining:
            self._kill()
        self._stream = None

    def close(self) -> None:
        self.abandon()
        if self._sock is not None and not self._exited():
            try:
                self._sock.settimeout(1.0)
                self._sock.sendall(encode_close())
                deadline = time.monotonic() + 5
                while not self._exited() and time.monotonic() < deadline:
                    time.sleep(_POLL_S)
            except OSError:
                pass
        self._kill()  # the whole group: whatever the backend forked goes with it

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplyStream:
    """The replies to requests sent to a :class:`Worker` in one message, read in order as they are needed.

    A reply that does not come (a crash, a hang, an unreadable frame) is that
    request's verdict; the worker is then restarted and the requests not yet
    answered are sent again, so each request is answered exactly once.
    """

    def __init__(self, worker: Worker, requests: list[Request]) -> None:
        self._w = worker
        self._pending = requests  # sent (or to send), not yet answered
        self._ready: list[Reply] = []  # answers decided without the worker (it could not be started or written to)
        self._sent = False
        self._send()

    @property
    def remaining(self) -> int:
        """How many replies are still to be read."""
        return len(self._ready) + len(self._pending)

    def _send(self) -> None:
        w = self._w
        while self._pending and not self._sent:
            if w._proc is None or w._exited():
                info = w.start()
                w.restarts += 1
                if not info.available:
                    self._ready += [Reply("error", message=f"backend unavailable: {info.reason}") for _ in self._pending]
                    self._pending = []
                    return
            assert w._sock is not None
            try:
                w._sock.settimeout(w.timeout)
                w._sock.sendall(encode_requests(self._pending))
                self._sent = True
            except OSError as exc:
                w._kill()
                self._ready.append(Reply("crashed", message=f"could not send the request: the backend process is "
                                                            f"gone ({exc})"))
                self._pending.pop(0)

    def next(self) -> Reply:
        """The reply to the oldest request not yet answered (waiting at most the worker's timeout for it)."""
        if self._ready:
            return self._ready.pop(0)
        if not self._pending:
            raise IndexError("no reply left in this stream")
        w = self._w
        start = time.perf_counter()
        got = w._receive(w.timeout)
        self._pending.pop(0)
        if isinstance(got, _Failure):
            reply = w._failed(got, start)
        else:
            try:
                reply = decode_reply(*got)
            except ProtocolError as exc:
                reply = w._failed(_Failure("unreadable", str(exc)), start)
        if w._sock is None:  # the worker was killed: the requests not yet answered go to a new one
            self._sent = False
            self._send()
        return reply

    def drain(self) -> None:
        """Read (and drop) every reply still to come."""
        while self.remaining:
            self.next()


class _InlineStream:
    """An :class:`InlineWorker`'s stream: each request is evaluated when its reply is read."""

    def __init__(self, worker: "InlineWorker", requests: list[Request]) -> None:
        self._w = worker
        self._pending = requests

    @property
    def remaining(self) -> int:
        return len(self._pending)

    def next(self) -> Reply:
        return self._w.evaluate(self._pending.pop(0))


def _own_copy(request: Request) -> Request:
    """The request with its own read-only copies of the inputs: a backend in the harness's process must not
    change the case it is judged on (one that writes to an input gets that case's error verdict)."""
    inputs = {}
    for name, v in request.inputs.items():
        a = np.array(v, copy=True)
        a.flags.writeable = False
        inputs[name] = a
    return replace(request, inputs=inputs)


class InlineWorker:
    """The same interface, in the harness process (no isolation: for debugging and the oracle's own tests).

    Replies go through the same encoding as the worker process's, so their
    values are checked, capped and copied exactly as an isolated backend's.
    """

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
        data = _encoded(_call(self.backend, _own_copy(request)))
        return decode_reply(*unpack(data[FRAME.size:]))

    def evaluate_many(self, requests: list[Request]) -> list[Reply]:
        return [self.evaluate(r) for r in requests]

    def stream(self, requests: list[Request]) -> _InlineStream:
        return _InlineStream(self, list(requests))

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        self.backend = None

    def __enter__(self) -> "InlineWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_worker(ref: BackendRef, *, isolate: bool = True, timeout: float = 60.0, device: str = "cpu") -> Any:
    return Worker(ref, timeout=timeout, device=device) if isolate else InlineWorker(ref, device=device)
