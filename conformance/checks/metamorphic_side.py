"""One side of a metamorphic pair: the backend's values on a case, and what each may differ from the exact value.

A side is one case sent to the backend (through the run's executor, so inside a property's batch) and
certified by the oracle; the allowance of a quantity, ``safety_factor * bound + eta``
(:mod:`conformance.judge.bounds`), is computed only when a relation compares it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from conformance.cases.generate import Case
from conformance.errors import GradconformError
from conformance.expr import Expr
from conformance.formats import get_format
from conformance.judge.bounds import ErrorBounds
from conformance.oracle import evaluate as oracle
from conformance.statuses import CRASHED, ERROR, NOT_SUPPORTED, TIMED_OUT

if TYPE_CHECKING:  # pragma: no cover
    from conformance.run.run import Run

__all__ = ["Side", "evaluate_side"]


@dataclass
class Side:
    case: Case
    values: dict[str, np.ndarray]
    problem: tuple[str, str] | None = None  # (status, message) when the backend gave no values
    oracle_failed: bool = False  # the oracle could not certify this case: the pair is skipped, not judged
    declined: dict[str, str] = field(default_factory=dict)
    bounds: Any = None  # the case's ErrorBounds, or its view of the property's stack (same values)
    exprs: dict[str, Expr] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    _allowed: dict[str, np.ndarray] = field(default_factory=dict)

    def allowed(self, qid: str) -> np.ndarray | None:
        """What a correct result may differ from the exact value by, componentwise (``kappa * bound + eta``);
        None where the bound cannot be computed (the oracle tests report that quantity; here it is not
        compared). Computed on first use: a property compares only some of the quantities (label_scale: the
        loss and the gradients valid for any labels), and a bound costs more than the comparison."""
        if qid not in self._allowed:
            try:
                kappa = self.bounds.policy.safety_factor
                bound = self.bounds.bound(self.exprs[qid], self.kinds.get(qid))
                self._allowed[qid] = np.broadcast_to(kappa * bound + get_format(self.case.dtype).eta,
                                                     self.values[qid].shape)
            except Exception as exc:  # an unreadable result: the oracle tests report it; here it is not compared
                self.declined[qid] = f"unreadable result: {type(exc).__name__}: {exc}"
                return None
        return self._allowed[qid]


def evaluate_side(run: "Run", case: Case, stacked: Mapping[str, tuple[Any, Any]] | None = None) -> Side:
    """The backend's values on ``case`` (through the run's executor: the batch of the property, when there is
    one) and what the oracle allows each to differ from the exact value; a problem instead, when the backend
    or the oracle gave nothing. ``stacked``: the property's sides bounded together (Run.stacked_bounds); a
    side not in it is bounded alone."""
    spec = run.spec
    lay = spec.layouts[case.layout]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    try:
        ev = run.oracle_evaluation(case, sized)
    except (GradconformError, ArithmeticError) as exc:
        return Side(case, {}, (ERROR, f"the oracle failed on case {case.id}: {exc}"), oracle_failed=True)
    idents = [i for i in sized if oracle.applicable(i, case.sizes, ev.preconditions)]
    reply = run.executor.reply(case, run.request_for(case, idents))
    if reply.status != "ok":
        status = {"crashed": CRASHED, "timed_out": TIMED_OUT, "not_supported": NOT_SUPPORTED}.get(reply.status, ERROR)
        return Side(case, {}, (status, reply.message))
    exprs: dict[str, Expr] = {d.name: d.expr for d in lay.forward}
    exprs.update({i.id: i.expr for i in idents})
    held = stacked.get(case.id) if stacked is not None else None
    bounds = held[1] if held is not None and held[0] is ev else ErrorBounds(lay, ev.nodes, case.inputs, case.dtype,
                                                                            spec.tolerance)
    side = Side(case, {}, bounds=bounds, exprs=exprs,
                 kinds={i.id: i.kind for i in idents})
    for qid in exprs:
        got = reply.values.get(qid)
        if got is None:
            continue
        if isinstance(got, tuple):
            side.declined[qid] = got[1]
            continue
        try:
            side.values[qid] = np.asarray(got).astype(np.float64)
        except Exception as exc:  # an unreadable result: the oracle tests report it; here it is not compared
            side.declined[qid] = f"unreadable result: {type(exc).__name__}: {exc}"
    return side
