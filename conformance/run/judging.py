"""Judging a backend's results against the oracle: certified values, error bounds, comparison, diagnosis.

The judge evaluates each case with the oracle (once per process, and through
the on-disk cache when there is one), turns a backend reply into one record
per quantity (within the bound: pass; otherwise a failure, classified by
conformance.judge.diagnose), and verifies the spec's identities against the
derivative of its forward definitions (backend-free).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from conformance.cache.bounds_cache import CachedBounds
from conformance.cache.oracle_cache import OracleCache, cached_evaluate, cached_verify_identity
from conformance.cases.generate import Case
from conformance.errors import GradconformError
from conformance.execution.worker import Reply
from conformance.formats import get_format
from conformance.judge.bounds import ErrorBounds
from conformance.judge.stacked_bounds import CaseOfStack, StackedBounds
from conformance.judge.compare import Comparison, compare, compare_many
from conformance.statuses import CRASHED, ERROR, FAIL, NOT_SUPPORTED, TIMED_OUT
from conformance.judge.diagnose import CaseDiagnoser
from conformance.oracle import evaluate as oracle
from conformance.oracle.engines.base import Engine
from conformance.results.document import Record, make_record
from conformance.run.phases import PhaseTimer
from conformance.spec.model import Identity, Spec
from conformance.spec.predicates import identity_applies_to_regime
from conformance.spec.shapes import concrete

__all__ = ["Judge", "sized_identities"]

_REPLY_STATUS = {"crashed": CRASHED, "timed_out": TIMED_OUT, "not_supported": NOT_SUPPORTED}


def sized_identities(spec: Spec, case: Case) -> list[Identity]:
    """The identities of the case's layout whose pinned sizes (``when``) the case has."""
    lay = spec.layouts[case.layout]
    return [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]


class Judge:
    """The oracle side of a run: certified evaluations, the records of a reply, the spec's self-check."""

    def __init__(self, spec: Spec, engine: Engine, oracle_cache: OracleCache | None,
                 memo: dict[tuple[str, tuple[str, ...], str], Any], timer: PhaseTimer) -> None:
        self.spec = spec
        self.engine = engine
        self.oracle_cache = oracle_cache
        self.memo = memo  # (case, identities, engine) -> evaluation, shared between runs (RunCache.oracle)
        self.timer = timer
        self._verifications: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._stacks: dict[str, tuple[Any, CaseOfStack]] = {}  # case id -> (its oracle evaluation, its bounds)

    # ------------------------------------------------------------------ the oracle
    def oracle_evaluation(self, case: Case, identities: Sequence[Identity]) -> Any:
        """The oracle's certified evaluation of ``case`` (with this run's engine), computed once per process
        and kept in the on-disk cache when there is one. Raises OracleError/ArithmeticError."""
        okey = (case.id, tuple(i.id for i in identities), self.engine.name)
        ev = self.memo.get(okey)
        if ev is None:
            lay = self.spec.layouts[case.layout]
            with self.timer.phase("oracle"):
                ev = cached_evaluate(lay, case.inputs, identities, engine=self.engine, cache=self.oracle_cache)
            self.memo[okey] = ev
        return ev

    # ------------------------------------------------------------------ bounds
    def stack_bounds(self, cases: Sequence[Case]) -> None:
        """Bound the cases of one group that share their sizes together (conformance.judge.stacked_bounds), when
        each is judged: a case judged afterwards reads its bounds from its stack (:meth:`stacked`)."""
        self._stacks = self.stacked(cases)

    def stacked(self, cases: Sequence[Case]) -> dict[str, tuple[Any, CaseOfStack]]:
        """For each case that shares its layout, dtype, sizes, identities and input names with another: its
        oracle evaluation and its view of their common stack of bounds (a bound asked of one view is computed
        for the whole stack at once, bit for bit what each case's own ErrorBounds gives). Evaluates the oracle
        on each case first (memoised: the case's own judging reads it); a case the oracle cannot certify is
        left out, as is a case alone of its shape."""
        out: dict[str, tuple[Any, CaseOfStack]] = {}
        by_shape: dict[tuple[Any, ...], list[tuple[Case, Any]]] = {}
        for case in cases:
            sized = sized_identities(self.spec, case)
            try:
                ev = self.oracle_evaluation(case, sized)
            except (GradconformError, ArithmeticError):
                continue  # the case's own judging records the oracle's failure
            key = (case.layout, case.dtype, tuple(sorted(case.sizes.items())), tuple(i.id for i in sized),
                   tuple(sorted(case.inputs)))
            by_shape.setdefault(key, []).append((case, ev))
        tol = self.spec.tolerance
        for members in by_shape.values():
            if len(members) < 2:
                continue
            first = members[0][0]
            stack = StackedBounds(self.spec.layouts[first.layout], [ev.nodes for _, ev in members],
                                  [c.inputs for c, _ in members], first.dtype, tol)
            for index, (case, ev) in enumerate(members):
                out[case.id] = (ev, stack.case(index))
        return out

    def _bounds_for(self, case: Case, ev: Any, sized: Sequence[Identity]) -> Any:
        """The case's bounds: from its stack when :meth:`stack_bounds` put it in one (with this evaluation), else
        its own; through the on-disk bounds cache when there is one."""
        held = self._stacks.pop(case.id, None)
        view = held[1] if held is not None and held[0] is ev else None
        lay, tol = self.spec.layouts[case.layout], self.spec.tolerance
        if self.oracle_cache is None:
            return view if view is not None else ErrorBounds(lay, ev.nodes, case.inputs, case.dtype, tol)
        return CachedBounds(self.oracle_cache, self.engine, lay, ev, case.inputs, sized, case.dtype, tol,
                            oracle.START_BITS, live=(lambda: view) if view is not None else None)

    # ------------------------------------------------------------------ records
    def uniform(self, case: Case, identities: Sequence[Identity], wanted: set[str] | None, status: str,
                detail: str, message: str, *, forward: bool = True) -> list[Record]:
        """The same record for every quantity of the case (the oracle failed, the backend could not answer);
        ``forward=False``: for the identities only."""
        ctx = _context(case)
        with self.timer.phase("records"):
            out = [make_record(quantity=d.name, kind="value", status=status, detail=detail, message=message, **ctx)
                   for d in self.spec.layouts[case.layout].forward if forward and (wanted is None or d.name in wanted)]
            out += [make_record(quantity=i.id, kind=i.kind, status=status, detail=detail, message=message, **ctx)
                    for i in identities if wanted is None or i.id in wanted]
        return out

    def judge_reply(self, case: Case, ev: Any, sized: Sequence[Identity], identities: Sequence[Identity],
                    reply: Reply, *, wanted: set[str] | None, diagnose: bool) -> list[Record]:
        """The records of the backend's ``reply`` on ``case``: each value against the oracle's ``ev``, with
        the error bound of its expression. ``sized``: the identities the oracle evaluated; ``identities``:
        those of them that apply (and were asked for). ``diagnose``: classify the failures."""
        if reply.status != "ok":
            status = _REPLY_STATUS.get(reply.status, ERROR)
            detail = "exception" if status == ERROR else reply.status
            return self.uniform(case, identities, wanted, status, detail, reply.message)
        lay = self.spec.layouts[case.layout]
        tol = self.spec.tolerance
        with self.timer.phase("bounds"):
            bounds = self._bounds_for(case, ev, sized)
        kappa = tol.safety_factor
        diagnoser = CaseDiagnoser(self.spec, lay, case.inputs, case.sizes, case.dtype, regime=case.regime)
        ctx = _context(case)
        records: list[Record] = []
        items: list[tuple[str, str, Any, tuple[int, int], Identity | None]] = []
        for d in lay.forward:
            items.append((d.name, "value", d.expr, concrete(d.shape, case.sizes), None))
        for i in identities:
            items.append((i.id, i.kind, i.expr, concrete(i.shape, case.sizes), i))

        def record(**fields: Any) -> Record:
            with self.timer.phase("records"):
                return make_record(**fields, **ctx)

        # First the records that need no comparison and the bound of each value to compare; then the
        # comparisons of the whole case in one stacked pass (judge.compare.compare_many); the records keep the
        # order of the items.
        slots: list[Record | None] = []
        pending: list[tuple[int, str, str, Any, Any, Identity | None, Any, Any, tuple[int, int]]] = []
        for qid, kind, expr, shape, ident in items:
            if wanted is not None and qid not in wanted:
                continue
            got = reply.values.get(qid)
            if got is None:
                slots.append(record(quantity=qid, kind=kind, status=FAIL, detail="missing",
                                    message="the backend returned no value for this quantity"))
                continue
            if isinstance(got, tuple):
                status = NOT_SUPPORTED if got[0] == "not_supported" else ERROR
                slots.append(record(quantity=qid, kind=kind, status=status,
                                    detail="declined" if status == NOT_SUPPORTED else "exception", message=got[1]))
                continue
            try:
                with self.timer.phase("bounds"):
                    bound = bounds.bound(expr, kind)
                exact = ev.values[qid]
            except Exception as exc:  # a result the comparison cannot even read: an error, recorded
                slots.append(_unreadable(record, qid, kind, exc))
                continue
            pending.append((len(slots), qid, kind, expr, got, ident, exact, bound, shape))
            slots.append(None)
        with self.timer.phase("compare"):
            comparisons = _compare_all(pending, case.dtype, kappa)
        for (slot, qid, kind, expr, got, ident, exact, bound, _), cmp in zip(pending, comparisons):
            if isinstance(cmp, Exception):
                slots[slot] = _unreadable(record, qid, kind, cmp)
                continue
            diagnosis = None
            if diagnose and cmp.status == FAIL and cmp.detail in ("out_of_bound", "nonfinite", "wrong_shape"):
                diagnosis = _diagnose(diagnoser, qid, expr, got, exact.hi,
                                      kappa * bound + get_format(case.dtype).eta, ident)
            slots[slot] = record(quantity=qid, kind=kind, diagnosis=diagnosis, **measures_of(cmp))
        records.extend(r for r in slots if r is not None)
        if isinstance(bounds, CachedBounds):
            with self.timer.phase("bounds"):
                bounds.flush()
        return records

    # ------------------------------------------------------------------ spec self-check
    def verifications(self, layout: str, identity: str, cases: Callable[[str], list[Case]], *,
                      per_regime: int = 2) -> list[dict[str, Any]]:
        """Check one identity against the derivative of the forward definitions, on the float64 cases
        ``cases(regime)`` of every regime but the wide ones (the spec is verified, not trusted). Independent of
        the backend."""
        key = (layout, identity)
        if key not in self._verifications:
            lay = self.spec.layouts[layout]
            ident = lay.identity(identity)
            out: list[dict[str, Any]] = []
            for regime in self.spec.regimes:
                # an identity is a statement over named dimensions: the wide families add cost, not coverage
                if self.spec.is_wide(regime) or not identity_applies_to_regime(self.spec, ident, regime):
                    continue
                checked = 0
                for case in cases(regime):
                    if checked >= per_regime:
                        break
                    try:
                        with self.timer.phase("verification"):
                            v = cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=self.oracle_cache,
                                                       engine=self.engine)
                    except (GradconformError, ArithmeticError) as exc:
                        out.append({"identity": identity, "layout": layout, "case": case.to_json(),
                                    "verdict": "error", "reason": str(exc)})
                        checked += 1
                        continue
                    if v.verdict == "not_applicable":
                        continue
                    checked += 1
                    out.append({"identity": identity, "layout": layout, "regime": regime, "case": case.to_json(),
                                "verdict": v.verdict, "reason": v.reason, "worst_index": v.worst_index,
                                "identity_value": v.identity_value, "derivative_value": v.derivative_value,
                                "precision": v.precision})
            self._verifications[key] = out
        return self._verifications[key]

    def all_verifications(self) -> list[dict[str, Any]]:
        """Every verification computed so far, in the order they were asked for (the results file's)."""
        return [v for vs in self._verifications.values() for v in vs]


def _unreadable(record: Callable[..., Record], qid: str, kind: str, exc: Exception) -> Record:
    return record(quantity=qid, kind=kind, status=ERROR, detail="unreadable", message=f"{type(exc).__name__}: {exc}")


def _compare_all(pending: Sequence[tuple[Any, ...]], dtype: str, kappa: float) -> list[Comparison | Exception]:
    """The comparisons of ``pending`` (slot, qid, kind, expr, got, identity, exact, bound, shape), stacked; if the
    stacked pass fails (a result it cannot read), each one alone, so that only the unreadable ones are errors."""
    try:
        return list(compare_many([(p[4], p[6], p[7], p[8]) for p in pending], dtype=dtype, safety_factor=kappa))
    except Exception:
        out: list[Comparison | Exception] = []
        for p in pending:
            try:
                out.append(compare(p[4], p[6], p[7], dtype=dtype, expected_shape=p[8], safety_factor=kappa))
            except Exception as exc:  # recorded as an error by the caller
                out.append(exc)
        return out


def _context(case: Case) -> dict[str, Any]:
    return dict(layout=case.layout, dtype=case.dtype, regime=case.regime, family=case.family,
                magnitude=case.magnitude, case=case.id)


def _diagnose(diagnoser: CaseDiagnoser, qid: str, expr: Any, got: Any, exact: Any, allowed: Any,
              identity: Identity | None) -> dict[str, Any]:
    """The diagnosis of one failing result; a diagnosis that fails itself never takes the verdict down."""
    try:
        return diagnoser.diagnose(qid, expr, got, exact, allowed, identity=identity).to_json()
    except Exception as exc:  # pragma: no cover - defensive: the verdict stands without a diagnosis
        return {"class": "unexplained", "message": f"the diagnosis itself failed: {type(exc).__name__}: {exc}"}


def measures_of(c: Comparison) -> dict[str, Any]:
    """The fields of a results record that a comparison decides: its verdict, detail and numbers."""
    return {"status": c.status, "detail": c.detail, "message": c.message, "components": c.components,
            "max_ratio": c.max_ratio, "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err,
            "max_ulp": c.max_ulp, "median_ulp": c.median_ulp,
            "worst_index": list(c.worst_index) if c.worst_index is not None else None,
            "worst_got": c.worst_got, "worst_exact": c.worst_exact, "worst_bound": c.worst_bound,
            "worst_allowed": c.worst_allowed, "uninformative": c.uninformative,
            "toward_zero": c.toward_zero, "away_from_zero": c.away_from_zero, "ulp_hist": list(c.ulp_hist)}
