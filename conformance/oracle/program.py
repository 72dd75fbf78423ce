"""A layout's forward definitions and identities as one straight-line program, compiled once per layout.

Why: the oracle evaluates the same trees for every case, at every precision it tries (a third of the cases
of the default suite need two to five), and :func:`conformance.expr.interpret` walks them recursively,
hashing sub-trees to share common ones: about a sixth of the oracle's time went to the walk, not to the
arithmetic. A :class:`Program` does the walk once: it lists the distinct sub-expressions in the very
order ``interpret`` first evaluates them (forward definitions in order, then the identities; left operand
before right), each naming its operands by position. Running it makes the same calls of the algebra on the
same operands, in the same order, so the values are those ``interpret`` gives, object for object shared
where a sub-tree repeats, and the node table keeps its order (the oracle cache replays it).

It also lets the oracle evaluate a part: the steps one output needs, in program order, are a program too,
so the oracle can certify a precision's cheap or doubtful outputs first and stop there when one fails
(:func:`conformance.oracle.evaluate.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from conformance.expr import BINARY_OPS, BinOp, Call, Const, Expr, Name, Neg, Ops, Pow, Transpose

__all__ = ["Program", "Step", "compile_program"]


@dataclass(frozen=True)
class Step:
    """One distinct sub-expression: ``kind`` is ``input`` (``arg`` its name), ``const`` (``arg`` the value),
    ``alias`` (a forward name: the value of step ``operands[0]``), ``neg``, ``binary`` (``arg`` the algebra's
    method), ``pow`` (``arg`` the exponent), ``transpose`` or ``call`` (``arg`` (function, axis))."""

    expr: Expr
    kind: str
    operands: tuple[int, ...]
    arg: Any = None


@dataclass(frozen=True)
class Program:
    """The steps of a layout's forward definitions and identities; ``outputs``: (name, step) of each forward
    value and identity, in evaluation order; ``needs``: for each output, the steps it depends on, ascending."""

    steps: tuple[Step, ...]
    outputs: tuple[tuple[str, int], ...]
    needs: tuple[tuple[int, ...], ...]

    def run(self, ops: Ops[Any], env: Mapping[str, Any], values: list[Any], outputs: Sequence[int]) -> None:
        """Compute into ``values`` (one slot per step, None where not computed yet) every step that the
        outputs at positions ``outputs`` of :attr:`outputs` need, in program order."""
        todo = sorted({i for o in outputs for i in self.needs[o] if values[i] is None})
        steps = self.steps
        for i in todo:
            s = steps[i]
            kind = s.kind
            if kind == "binary":
                values[i] = getattr(ops, s.arg)(values[s.operands[0]], values[s.operands[1]])
            elif kind == "call":
                values[i] = ops.call(s.arg[0], tuple(values[j] for j in s.operands), s.arg[1])
            elif kind == "alias":
                values[i] = values[s.operands[0]]
            elif kind == "input":
                try:
                    values[i] = env[s.arg]
                except KeyError:
                    raise KeyError(f"no value bound to name {s.arg!r}") from None
            elif kind == "const":
                values[i] = ops.const(s.arg)
            elif kind == "neg":
                values[i] = ops.neg(values[s.operands[0]])
            elif kind == "pow":
                values[i] = ops.pow(values[s.operands[0]], s.arg)
            else:  # transpose
                values[i] = ops.transpose(values[s.operands[0]])


class _Compiler:
    def __init__(self) -> None:
        self.index: dict[Expr, int] = {}
        self.steps: list[Step] = []
        self.forward: dict[str, int] = {}  # forward names defined so far -> the step of their value

    def add(self, expr: Expr, kind: str, operands: tuple[int, ...], arg: Any = None) -> int:
        self.index[expr] = len(self.steps)
        self.steps.append(Step(expr, kind, operands, arg))
        return len(self.steps) - 1

    def visit(self, expr: Expr) -> int:
        """The step of ``expr``, appended (after its operands') on its first visit, as interpret caches it."""
        hit = self.index.get(expr)
        if hit is not None:
            return hit
        if isinstance(expr, Name):
            if expr.id in self.forward:
                return self.add(expr, "alias", (self.forward[expr.id],))
            return self.add(expr, "input", (), expr.id)
        if isinstance(expr, Const):
            return self.add(expr, "const", (), expr.value)
        if isinstance(expr, Neg):
            return self.add(expr, "neg", (self.visit(expr.operand),))
        if isinstance(expr, BinOp):
            left = self.visit(expr.left)
            right = self.visit(expr.right)
            return self.add(expr, "binary", (left, right), BINARY_OPS[expr.op])
        if isinstance(expr, Pow):
            return self.add(expr, "pow", (self.visit(expr.base),), expr.exponent)
        if isinstance(expr, Transpose):
            return self.add(expr, "transpose", (self.visit(expr.operand),))
        if isinstance(expr, Call):
            args = tuple(self.visit(a) for a in expr.args)
            return self.add(expr, "call", args, (expr.fn, expr.axis))
        raise TypeError(f"not an expression node: {expr!r}")  # pragma: no cover - the parser builds no other


_memo: dict[tuple[int, tuple[int, ...]], tuple[Any, tuple[Any, ...], Program]] = {}


def compile_program(layout: Any, identities: Sequence[Any]) -> Program:
    """The program of ``layout``'s forward definitions and ``identities`` (memoised per layout and selection:
    the objects are kept with the entry, so an id is never reused for another)."""
    key = (id(layout), tuple(id(i) for i in identities))
    hit = _memo.get(key)
    if hit is not None and hit[0] is layout and all(a is b for a, b in zip(hit[1], identities)):
        return hit[2]
    c = _Compiler()
    outputs: list[tuple[str, int]] = []
    for d in layout.forward:
        step = c.visit(d.expr)
        c.forward[d.name] = step
        outputs.append((d.name, step))
    for ident in identities:
        outputs.append((ident.id, c.visit(ident.expr)))
    steps = tuple(c.steps)
    needs = tuple(_closure(steps, step) for _, step in outputs)
    program = Program(steps=steps, outputs=tuple(outputs), needs=needs)
    _memo[key] = (layout, tuple(identities), program)
    return program


def _closure(steps: Sequence[Step], root: int) -> tuple[int, ...]:
    seen = {root}
    stack = [root]
    while stack:
        for j in steps[stack.pop()].operands:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return tuple(sorted(seen))
