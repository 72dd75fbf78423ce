"""Executing a run's requests on the backend, through its worker process, one round trip per group.

The executor turns a case into the request the backend answers (every
quantity it needs at once), sends a whole group's requests in one message
(:meth:`Executor.batch`), and hands each case its reply; a request that was
not prefetched, or differs from the prefetched one, goes to the worker alone.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from conformance.backend import Model, Quantity, Request
from conformance.cases.generate import Case
from conformance.execution.registry import BackendRef
from conformance.execution.worker import BackendInfo, Reply, ReplyStream, make_worker
from conformance.oracle import evaluate as oracle
from conformance.run.phases import PhaseTimer
from conformance.spec.model import DIRECTION_ROLES, Identity, Spec
from conformance.spec.shapes import concrete

__all__ = ["Executor", "DIRECTION_ROLES"]


def _same_request(a: Request, b: Request) -> bool:
    """Whether a prefetched request is the one asked for (same case inputs, dtype and quantities)."""
    return (a.dtype == b.dtype and tuple(q.id for q in a.quantities) == tuple(q.id for q in b.quantities)
            and a.inputs.keys() == b.inputs.keys()
            and all(a.inputs[k] is b.inputs[k] or (a.inputs[k].tobytes() == b.inputs[k].tobytes()) for k in a.inputs))


class Executor:
    """The backend side of a run: its worker (started on first use), what it supports, its replies."""

    def __init__(self, spec: Spec, ref: BackendRef, *, isolate: bool, timeout: float, device: str,
                 timer: PhaseTimer) -> None:
        self.spec = spec
        self.device = device
        self.timer = timer
        self.worker = make_worker(ref, isolate=isolate, timeout=timeout, device=device)
        self._info: BackendInfo | None = None
        self._prefetched: dict[str, tuple[Request, Reply]] = {}
        self._order: list[tuple[str, Request]] = []  # the batch's requests whose replies are not read yet
        self._stream: ReplyStream | None = None

    @property
    def info(self) -> BackendInfo:
        """What the backend says about itself; starts the worker the first time."""
        if self._info is None:
            self._info = self.worker.start()
        return self._info

    @property
    def started_info(self) -> BackendInfo | None:
        """The backend's info if some work has started the worker, else None (without starting it)."""
        return self._info

    def supports(self, dtype: str) -> bool:
        return self.info.available and (not self.info.dtypes or dtype in self.info.dtypes)

    def provides(self, kind: str) -> bool:
        """Whether the backend computes quantities of ``kind`` (``Backend.quantity_kinds``; a backend written
        for contract 1.0 provides value, gradient and jacobian). Values are always asked for."""
        return kind == "value" or kind in self.info.kinds

    def split_kinds(self, identities: Sequence[Identity]) -> tuple[list[Identity], list[Identity]]:
        """The identities whose kind the backend provides, and those it declines by not listing the kind."""
        asked = [i for i in identities if self.provides(i.kind)]
        return asked, [i for i in identities if not self.provides(i.kind)]

    def close(self) -> None:
        self.worker.close()

    def request_for(self, case: Case, identities: Sequence[Identity]) -> Request:
        """The request for every forward value of the case's layout and the given identities on ``case``."""
        lay = self.spec.layouts[case.layout]
        sizes = case.sizes
        quantities = [Quantity(d.name, "value", d.name, expr=d.expr, shape=concrete(d.shape, sizes)) for d in lay.forward]
        for ident in identities:
            if not self.provides(ident.kind):  # never ask a backend for a kind it does not list
                continue
            quantities.append(Quantity(ident.id, ident.kind, ident.of, ident.wrt, ident.convention, ident.expr,
                                       concrete(ident.shape, sizes), ident.direction))
        # tangents and cotangents go only to a request that uses them: a backend written for contract 1.0 (which
        # may take the inputs by name) sees exactly the inputs it always saw
        used = {q.direction for q in quantities if q.direction is not None}
        names = tuple(n for n, info in self.spec.inputs.items() if info.get("role") not in DIRECTION_ROLES or n in used)
        model = Model(self.spec.name, lay.name, names, tuple((d.name, d.expr) for d in lay.forward), lay.loss)
        return Request(model, case.dtype, {n: case.inputs[n] for n in names if n in case.inputs}, tuple(quantities),
                       self.device)

    @contextlib.contextmanager
    def batch(self, cases: Sequence[Case]) -> Iterator[None]:
        """Within the block, :meth:`reply` answers the cases from one message sent to the backend when the
        block starts (one round trip to the worker process instead of one per case). The backend computes
        while the harness judges: the replies are read in order, each when its case asks for it. The requests
        are the ones the run sends (the applicable identities need only the exact preconditions).

        Replies still unread when the block ends (a case the oracle could not certify is never asked for)
        are read then, as if each case had been sent alone; a check that stops early (at a crash) calls
        :meth:`abandon` instead, and so does an exception leaving the block. Inside a batch, another batch
        adds nothing (its cases' requests go one by one)."""
        if self._order:
            yield
            return
        self._prefetch(cases)
        try:
            yield
        except BaseException:
            self.abandon()
            raise
        else:
            self._read_until(None)
        finally:
            self._prefetched.clear()
            self._order = []
            self._stream = None

    def abandon(self) -> None:
        """Drop the batch's unread replies without waiting for them: the worker is killed (it restarts on the
        next request), so that a backend that hangs costs one timeout, not one per request left."""
        if self._stream is not None and self._order:
            self.worker.abandon()
        self._order = []
        self._stream = None

    def _prefetch(self, cases: Sequence[Case]) -> None:
        batch: list[tuple[str, Request]] = []
        for case in cases:
            if not self.supports(case.dtype):
                continue
            lay = self.spec.layouts[case.layout]
            pre = oracle.preconditions_hold(lay, case.inputs)
            idents = [i for i in lay.identities if oracle.applicable(i, case.sizes, pre)]
            batch.append((case.id, self.request_for(case, idents)))
        if not batch:
            return
        with self.timer.phase("backend"):
            self._stream = self.worker.stream([r for _, r in batch])
        self._order = batch

    def _read_until(self, cid: str | None) -> None:
        """Read the stream's replies in order until the one of case ``cid`` is in (None: to the end)."""
        while self._order and self._stream is not None and cid not in self._prefetched:
            other, req = self._order.pop(0)
            with self.timer.phase("backend"):
                self._prefetched[other] = (req, self._stream.next())

    def reply(self, case: Case, request: Request) -> Reply:
        """The backend's reply to ``request`` on ``case``: the prefetched one if it is the same request."""
        if any(cid == case.id for cid, _ in self._order):
            self._read_until(case.id)
        hit = self._prefetched.pop(case.id, None)
        if hit is not None and _same_request(hit[0], request):
            return hit[1]
        return self.evaluate(request)

    def evaluate(self, request: Request) -> Reply:
        """One request sent to the backend on its own (after the replies still coming from a batch, which are
        read first and kept: replies never mix)."""
        self._read_until(None)
        with self.timer.phase("backend"):
            return self.worker.evaluate(request)
