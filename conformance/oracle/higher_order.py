"""The oracle's derivatives of the higher-order and forward-mode kinds: jvp, vjp, hessian, hvp.

Each is computed from the forward definitions alone, with the second-order
jets of :mod:`conformance.oracle.jets` (interval hyper-dual numbers), never
from an identity's closed form: that is what makes ``verify_identity`` a
check of the spec rather than a restatement of it.

* ``jvp`` of ``of`` along tangent v of ``wrt``: seed ``a`` = v, read ``a`` of ``of``.
* ``vjp`` with cotangent u of ``of``: seed ``a`` = the unit basis of ``wrt``,
  read the Jacobian, contract it with u (sum_i u_i d of_i / d wrt_j).
* ``hessian`` of a scalar: seed ``a`` and ``b`` with the basis, read ``ab``
  (k x k; ``wrt`` flattened row-major, which for a 1 x k or k x 1 vector is
  its only order).
* ``hvp``: seed ``a`` with the basis and ``b`` with v, read ``ab`` (the
  Hessian times v, in the shape of ``wrt``).

A value ``wrt`` that is a forward definition (``theta``, ``a``) is seeded
where it is defined, as :func:`conformance.oracle.evaluate.derivative` does:
the derivative treats it as the independent variable.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from conformance.expr import interpret
from conformance.oracle.engines.base import Engine
from conformance.oracle.engines.select import get_engine
from conformance.oracle.jets import Jet, JetOps, basis, zeros
from conformance.spec.model import Layout

__all__ = ["HIGHER_ORDER_KINDS", "higher_order_derivative"]

#: The derivative kinds this module computes (the others are first order: conformance.oracle.evaluate.derivative).
HIGHER_ORDER_KINDS = ("jvp", "vjp", "hessian", "hvp")


def _seeds(kind: str, value: np.ndarray, direction: np.ndarray | None,
           base: object) -> tuple[np.ndarray, np.ndarray | None]:
    shape = value.shape
    if kind == "jvp":
        assert direction is not None
        return direction.reshape((1,) + shape), None
    if kind == "vjp":
        return basis(shape, base), None
    if kind == "hessian":
        return basis(shape, base), basis(shape, base)
    assert direction is not None  # hvp
    return basis(shape, base), direction.reshape((1,) + shape)


def _forward_jets(layout: Layout, inputs: Mapping[str, np.ndarray], kind: str, wrt: str,
                  direction: np.ndarray | None, eng: Engine) -> dict[str, Jet]:
    ops = JetOps(eng.ops())
    env: dict[str, Jet] = {}
    seeded = False
    for name, arr in inputs.items():
        value = eng.from_floats(arr)
        if name == wrt:
            env[name] = Jet(value, *_seeds(kind, value, direction, ops.base))
            seeded = True
        else:
            env[name] = Jet(value)
    for d in layout.forward:
        val = interpret(d.expr, env, ops, {})
        if d.name == wrt:
            val = Jet(val.v, *_seeds(kind, val.v, direction, ops.base))
            seeded = True
        env[d.name] = val
    if not seeded:
        raise KeyError(f"{wrt!r} is neither an input nor a forward value")
    return env


def higher_order_derivative(layout: Layout, inputs: Mapping[str, np.ndarray], *, kind: str, of: str, wrt: str,
                            direction: str | None, engine: "str | Engine" = "mpmath") -> np.ndarray:
    """The ``kind`` derivative of ``of`` with respect to ``wrt`` (along the input ``direction`` where the kind has
    one), as an object array of ``engine``'s enclosures (mpmath intervals unless named) at its current
    precision (call inside ``engine.precision``; mpmath: ``mpmath.iv.prec``)."""
    if kind not in HIGHER_ORDER_KINDS:
        raise ValueError(f"not a higher-order kind: {kind!r}; known: {', '.join(HIGHER_ORDER_KINDS)}")
    if kind != "hessian" and (direction is None or direction not in inputs):
        raise KeyError(f"a {kind} needs its {'cotangent' if kind == 'vjp' else 'tangent'} among the inputs "
                       f"(got {direction!r})")
    eng = get_engine(engine)
    base = eng.ops()
    dir_iv = eng.from_floats(inputs[direction]) if direction is not None and kind != "hessian" else None
    env = _forward_jets(layout, inputs, kind, wrt, dir_iv, eng)
    out, at = env[of], env[wrt]
    shape = at.v.shape
    k = int(np.prod(shape))
    if kind == "jvp":
        return out.a[0].copy() if out.a is not None else zeros(out.v.shape, base)
    if kind == "vjp":
        if out.a is None:
            return zeros(shape, base)
        u = eng.from_floats(inputs[direction])  # type: ignore[index]
        jac = np.asarray(out.a).reshape(k, -1)  # row j: d of / d wrt_j
        return np.sum(jac * u.reshape(1, -1), axis=1).reshape(shape)
    if out.v.shape != (1, 1):
        raise ValueError(f"{kind} of non-scalar {of!r}")
    if kind == "hessian":
        return zeros((k, k), base) if out.ab is None else np.asarray(out.ab).reshape(k, k).copy()
    return zeros(shape, base) if out.ab is None else np.asarray(out.ab).reshape(k).reshape(shape).copy()

