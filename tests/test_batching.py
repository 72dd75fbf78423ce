"""A group's requests go to the backend worker in one message; the verdicts are those of one call per case."""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numpy as np

from conformance.backend import Request
from conformance.execution.registry import find
from conformance.execution.worker import Worker
from impls.numpy import NumpyBackend


class Fragile(NumpyBackend):
    """Crashes the process when x[0, 0] is 2, hangs when it is 3, raises when it is 4; else numpy."""

    name = "fragile"

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        marker = float(np.asarray(request.inputs["x"]).reshape(-1)[0])
        if marker == 2.0:
            os._exit(3)
        if marker == 3.0:
            time.sleep(60)
        if marker == 4.0:
            raise RuntimeError("deliberate")
        return super().evaluate(request)


def _requests(seed_spec, markers):
    from conformance.run.run import Run

    run = Run(seed_spec, "numpy", isolate=False)
    lay = seed_spec.layouts["row"]
    rng = np.random.default_rng(0)
    out = []
    for m in markers:
        x = rng.standard_normal((1, 5))
        x[0, 0] = m
        inputs = {"x": x, "W1": rng.standard_normal((5, 3)), "b1": rng.standard_normal((1, 3)),
                  "W2": rng.standard_normal((3, 5)), "b2": rng.standard_normal((1, 5)), "y": np.eye(5)[[1]]}
        from conformance.cases.generate import Case

        case = Case(f"c{len(out)}", "row", "float64", "benign", "seed", {"n": 1, "d_in": 5, "hidden": 3, "d_out": 5},
                    None, inputs)
        out.append(run.request_for(case, [i for i in lay.identities if i.kind == "gradient"]))
    return out


def test_batch_gives_the_verdicts_of_single_calls(seed_spec):
    markers = [0.5, 2.0, 0.25, 4.0, 3.0, 0.75]
    reqs = _requests(seed_spec, markers)
    ref = find("tests.test_batching:Fragile")
    with Worker(ref, timeout=3.0) as w:
        w.start()
        batch = w.evaluate_many(reqs)
    with Worker(ref, timeout=3.0) as w:
        w.start()
        single = [w.evaluate(r) for r in reqs]
    assert [r.status for r in batch] == ["ok", "crashed", "ok", "error", "timed_out", "ok"]
    assert [r.status for r in batch] == [r.status for r in single]
    for b, s in zip(batch, single):
        if b.status == "ok":
            assert b.values.keys() == s.values.keys()
            for k in b.values:
                assert np.array_equal(b.values[k], s.values[k])


def test_a_run_sends_one_message_per_group(seed_spec, monkeypatch):
    from conformance.run.run import Run

    with Run(seed_spec, "numpy", examples=1) as run:
        run.info
        sent: list[int] = []
        orig_stream, orig_one = run.worker.stream, run.worker.evaluate
        monkeypatch.setattr(run.worker, "stream", lambda reqs: sent.append(len(reqs)) or orig_stream(reqs))
        monkeypatch.setattr(run.worker, "evaluate", lambda req: sent.append(-1) or orig_one(req))
        g = run.group("row", "float32", "large_logits")
    assert sent == [len(g.cases)] and len(g.cases) > 1
    assert all(r.status == "pass" for r in g.records)


def test_a_stream_read_between_other_work_gives_the_verdicts_of_a_batch(seed_spec):
    """Replies read one at a time, later, while the harness does other work: the same verdicts and values as
    evaluate_many, a crash and a hang included (the requests after them go to a restarted worker)."""
    markers = [0.5, 2.0, 0.25, 3.0, 0.75]
    reqs = _requests(seed_spec, markers)
    ref = find("tests.test_batching:Fragile")
    with Worker(ref, timeout=3.0) as w:
        w.start()
        batch = w.evaluate_many(reqs)
        stream = w.stream(reqs)
        streamed = []
        while stream.remaining:
            time.sleep(0.05)  # the harness judging the previous reply
            streamed.append(stream.next())
        after = w.evaluate(reqs[0])  # the worker is usable after a stream
    assert [r.status for r in streamed] == [r.status for r in batch] == ["ok", "crashed", "ok", "timed_out", "ok"]
    for b, s in zip(batch, streamed):
        if b.status == "ok":
            assert all(np.array_equal(b.values[k], s.values[k]) for k in b.values)
    assert after.status == "ok" and all(np.array_equal(after.values[k], batch[0].values[k]) for k in after.values)


def test_a_request_sent_while_a_stream_is_open_gets_its_own_reply(seed_spec):
    """A stream's unread replies are read before another request is sent: replies never mix."""
    reqs = _requests(seed_spec, [0.5, 0.25, 0.75])
    with Worker(find("numpy"), timeout=10.0) as w:
        w.start()
        expected = w.evaluate_many(reqs)
        w.stream(reqs[:2])
        got = w.evaluate(reqs[2])
    assert all(np.array_equal(got.values[k], expected[2].values[k]) for k in got.values)


def test_an_abandoned_batch_costs_one_timeout_not_one_per_request(seed_spec):
    """A check that stops at the first hang abandons the batch: the requests after it are not waited for."""
    from conformance.cases.generate import Case
    from conformance.run.execute import Executor
    from conformance.run.phases import NO_TIMING

    reqs = _requests(seed_spec, [3.0, 3.0, 3.0, 3.0])
    ex = Executor(seed_spec, find("tests.test_batching:Fragile"), isolate=True, timeout=1.0, device="cpu",
                  timer=NO_TIMING)
    try:
        cases = [Case(f"h{i}", "row", "float64", "benign", "seed", {"n": 1, "d_in": 5, "hidden": 3, "d_out": 5},
                      None, dict(r.inputs)) for i, r in enumerate(reqs)]
        with ex.batch(cases):
            first = ex.reply(cases[0], ex.request_for(cases[0], [i for i in seed_spec.layouts["row"].identities
                                                                 if ex.provides(i.kind)]))
            ex.abandon()
        restarts = ex.worker.restarts
        after = ex.evaluate(_requests(seed_spec, [0.5])[0])
    finally:
        ex.close()
    assert first.status == "timed_out"
    assert restarts == 1, restarts  # one hang waited for (and the worker restarted once), not four
    assert after.status == "ok"
