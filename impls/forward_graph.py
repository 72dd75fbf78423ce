"""Slicing the spec's forward definitions for autodiff backends.

An autodiff backend differentiates *the forward computation*, not a closed
form. For a derivative with respect to an intermediate value (``theta``,
``h``, ``a``), frameworks without retained-tensor gradients (jax) need the
downstream part of the computation as a function of that intermediate:
``theta -> L`` is "the definitions after theta, with theta given". This
module computes those slices and the dependence relation, from the
definitions' names alone. It imports only the backend contract.
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from conformance.backend import Model, Ops, interpret
from conformance.expr import Expr, free_names

__all__ = ["depends_on", "downstream", "evaluate_downstream"]

T = TypeVar("T")


def depends_on(model: Model, of: str, wrt: str) -> bool:
    """Whether the value ``of`` depends on ``wrt`` through the forward definitions (or is ``wrt``)."""
    if of == wrt:
        return True
    definitions = model.definitions
    seen: set[str] = set()
    stack = [of]
    while stack:
        name = stack.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        names = free_names(definitions[name])
        if wrt in names:
            return True
        stack.extend(names)
    return False


def downstream(model: Model, wrt: str, of: str) -> tuple[tuple[str, Expr], ...]:
    """The definitions to re-evaluate to get ``of`` from a given value of ``wrt``, in forward order.

    Those after ``wrt`` (all of them when ``wrt`` is an input) up to ``of``
    that ``of`` needs and that depend on ``wrt``; the others are constants
    with respect to ``wrt`` and are taken from the forward pass.
    """
    names = [n for n, _ in model.forward]
    if of not in names and of != wrt:
        raise KeyError(f"{of!r} is not a forward definition of model {model.name!r}")
    start = names.index(wrt) + 1 if wrt in names else 0
    stop = names.index(of) + 1 if of in names else start
    return tuple((n, e) for n, e in model.forward[start:stop]
                 if depends_on(model, of, n) and depends_on(model, n, wrt))


def evaluate_downstream(model: Model, wrt: str, of: str, base: Mapping[str, T], ops: Ops[T]) -> Callable[[T], T]:
    """``v -> of`` with ``wrt = v`` and every other value taken from ``base`` (the forward pass)."""
    steps = downstream(model, wrt, of)

    def fn(value: T) -> T:
        env = dict(base)
        env[wrt] = value
        for name, expr in steps:
            env[name] = interpret(expr, env, ops)
        return env[of]

    return fn
