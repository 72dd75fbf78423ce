"""The error bounds of several cases of one shape, computed at once.

Why: a case's bounds (:class:`~conformance.judge.bounds.ErrorBounds`) walk every expression tree of the
layout, and at the seed's shapes that walk is almost all Python overhead (a few microseconds of numpy per
node, a hundred nodes and more per quantity). The cases of a group that share their sizes have the same trees
on arrays of the same shapes, so the walk is done once on arrays of shape (cases, rows, columns): the rules
are written with matrix axes counted from the end (:mod:`conformance.judge.axes`) and give each case the same
numbers as bounding it alone (tests/test_stacked_bounds.py checks they are bit for bit the same).

Nothing here may change a verdict: a stack that cannot be formed (nodes of different shapes, a node missing
in one case) or a bound that fails on the stack falls back to the case's own ErrorBounds, which gives the
case's own result or its own error.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

from conformance.expr import Expr
from conformance.judge.bounds import SECOND_ORDER_KINDS, ErrorBounds
from conformance.spec.model import Layout, TolerancePolicy

__all__ = ["StackedBounds", "CaseOfStack"]


class _StackedNodes(Mapping[Expr, np.ndarray]):
    """The oracle's node values of every case, stacked on first use (a KeyError when a case lacks one)."""

    def __init__(self, nodes: Sequence[Mapping[Expr, np.ndarray]]) -> None:
        self._nodes = nodes
        self._stacked: dict[Expr, np.ndarray] = {}

    def __getitem__(self, e: Expr) -> np.ndarray:
        out = self._stacked.get(e)
        if out is None:
            out = np.stack([np.asarray(n[e], dtype=np.float64) for n in self._nodes])
            self._stacked[e] = out
        return out

    def __iter__(self) -> Iterator[Expr]:
        return iter(self._nodes[0])

    def __len__(self) -> int:
        return len(self._nodes[0])


class StackedBounds:
    """``bound(expr, kind)`` for every case of the stack at once (an array with the cases on axis 0), and
    :meth:`case`, one case's view, which reads its bounds from the stack and falls back to bounding the case
    alone where the stack cannot. The cases share the layout, the dtype, their sizes and the input names."""

    def __init__(self, layout: Layout, nodes: Sequence[Mapping[Expr, np.ndarray]],
                 inputs: Sequence[Mapping[str, np.ndarray]], dtype: str, policy: TolerancePolicy) -> None:
        if not nodes or len(nodes) != len(inputs):
            raise ValueError("a stack of bounds needs as many node maps as input maps, at least one")
        self.size = len(nodes)
        self._args = (layout, dtype, policy)
        self._nodes = nodes
        self._inputs = inputs
        self._stack: ErrorBounds | None = None
        self._failed = False  # the stack could not be formed: every case is bounded alone
        self._results: dict[tuple[Expr, bool], np.ndarray | None] = {}

    def _stacked(self) -> ErrorBounds | None:
        if self._stack is None and not self._failed:
            layout, dtype, policy = self._args
            try:
                names = self._inputs[0].keys()
                if any(i.keys() != names for i in self._inputs):
                    raise ValueError("the cases have different inputs")
                inputs = {k: np.stack([np.asarray(i[k], dtype=np.float64) for i in self._inputs]) for k in names}
                self._stack = ErrorBounds(layout, _StackedNodes(self._nodes), inputs, dtype, policy)
            except Exception:  # shapes that do not stack, a node missing: each case alone decides
                self._failed = True
        return self._stack

    def bound(self, expr: Expr, kind: str | None = None) -> np.ndarray | None:
        """The bounds of ``expr`` for every case (cases on axis 0), or None where the stack cannot give them."""
        stack = self._stacked()
        if stack is None:
            return None
        key = (expr, kind in SECOND_ORDER_KINDS)
        if key not in self._results:
            try:
                b = stack.bound(expr, kind)
            except Exception:  # the cases alone give their own result or their own error
                b = None
            self._results[key] = b if b is not None and b.ndim == 3 and b.shape[0] == self.size else None
        return self._results[key]

    def case(self, index: int) -> "CaseOfStack":
        """The bounds of the stack's case ``index``, with the interface of :class:`ErrorBounds`."""
        return CaseOfStack(self, index)

    def alone(self, index: int) -> ErrorBounds:
        layout, dtype, policy = self._args
        return ErrorBounds(layout, self._nodes[index], self._inputs[index], dtype, policy)


class CaseOfStack:
    """One case of a :class:`StackedBounds`: ``bound(expr, kind)`` as the case's own ErrorBounds gives it."""

    def __init__(self, stack: StackedBounds, index: int) -> None:
        self._stack = stack
        self._index = index
        self._alone: ErrorBounds | None = None

    @property
    def policy(self) -> TolerancePolicy:
        """The tolerance policy the bounds follow (as ErrorBounds.policy)."""
        return self._stack._args[2]

    def bound(self, expr: Expr, kind: str | None = None) -> np.ndarray:
        b = self._stack.bound(expr, kind)
        if b is not None:
            return b[self._index]
        if self._alone is None:
            self._alone = self._stack.alone(self._index)
        return self._alone.bound(expr, kind)

