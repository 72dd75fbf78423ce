"""The jax backends: jax's own autodiff over the spec's forward definitions.

What is tested is what a jax user's code does. The forward definitions (the
spec's expression trees) are interpreted with jax operations, the library's
own primitives where it has them (``jax.nn.sigmoid``, ``jax.nn.softmax``,
``jax.nn.log_softmax``, ``jax.nn.logsumexp``), and every derivative comes
from jax's autodiff, never from the spec's closed forms:

* gradients in reverse mode, ``jax.grad`` of the scalar ``of`` as a function
  of ``wrt``: for an input, the whole forward computation; for an
  intermediate value (``theta``, ``h``, ``a``), the definitions after it,
  re-expressed as a function of it (jax has no gradient with respect to a
  value inside a computation, so the loss is written as a function of it);
* Jacobians with ``jax.jacrev`` of the function ``wrt -> of``, flattened to
  (len(of), len(wrt)) in numerator layout and transposed for denominator
  layout, as the quantity states;
* forward mode and second order over the same function ``wrt -> of``:
  ``jvp`` with ``jax.jvp``, ``vjp`` with ``jax.vjp``, ``hessian`` with
  ``jax.hessian`` (forward over reverse) and ``hvp`` as
  ``jax.jvp(jax.grad(...))``.

Everything a request asks for is one function, compiled with ``jax.jit``
once per (model, quantities) and by jax once per shape and dtype, which is
how jax code is run in practice. Measured (benchmarks/backend_speed.py, 2
shared CPU cores): a compilation costs about 0.5 s, a jitted request about
1.4 ms, an eager one about 110 ms; the whole seed suite takes about 95 s
jitted, against an estimated half hour eager. The key is exactly the
request's set of quantities (ids naming the same derivative share it), so a
case's results never depend on what else was asked before it.

Two variants, because users have two choices for the loss (the naming rule
of every built-in: the plain name is the stable form, ``-composed`` the
formula as written):

* ``jax``: softmax cross-entropy recognised in the tree and computed
  as optax does, ``-sum(y * jax.nn.log_softmax(theta, axis=k), axis=k)``
  per sample, then summed. A loss without that pattern is evaluated as
  written. (Formerly ``jax-fused``, still accepted.)
* ``jax-composed``: the loss exactly as written, ``-sum(y * log(softmax(theta)))``.

float64 needs ``jax_enable_x64``: the backend turns it on when it is
created, before it makes any array (in its own worker process, so the
harness's jax settings, if any, are untouched). jax on the CPU flushes
subnormal results to zero, float64 included; that is what jax does, and the
verdicts say so where it matters. It imports only the backend contract from
the harness; a machine without jax sees the backends as unavailable.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable, Mapping

import numpy as np

from conformance.backend import DTYPES, QUANTITY_KINDS, Backend, Model, NotSupported, Ops, Quantity, Request, \
    UnsupportedPrimitive, interpret, numpy_dtype
from impls.forward_graph import depends_on, evaluate_downstream
from impls.fused_xent import XENT_PER_SAMPLE, XENT_SUM, fuse_cross_entropy

try:
    import jax
    import jax.numpy as jnp

    _IMPORT_ERROR: BaseException | None = None
except Exception as exc:  # not installed, or a broken install
    jax = None  # type: ignore[assignment]
    jnp = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

__all__ = ["JaxBackend", "JaxComposedBackend", "JaxFusedBackend", "JaxOps"]


class JaxOps(Ops[Any]):
    """The math language's primitives as jax operations, at one dtype."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype

    def const(self, value: Fraction) -> Any:
        return jnp.full((1, 1), float(value), dtype=self.dtype)

    def neg(self, x: Any) -> Any:
        return -x

    def add(self, x: Any, y: Any) -> Any:
        return x + y

    def sub(self, x: Any, y: Any) -> Any:
        return x - y

    def mul(self, x: Any, y: Any) -> Any:
        return x * y

    def div(self, x: Any, y: Any) -> Any:
        return x / y

    def matmul(self, x: Any, y: Any) -> Any:
        return x @ y

    def pow(self, x: Any, n: int) -> Any:
        return x ** n

    def transpose(self, x: Any) -> Any:
        return x.T

    def call(self, fn: str, args: tuple[Any, ...], axis: int | None) -> Any:
        if fn in (XENT_SUM, XENT_PER_SAMPLE):
            return self.cross_entropy(*args, axis=axis, per_sample=fn == XENT_PER_SAMPLE)
        return super().call(fn, args, axis)

    # ---------------------------------------------------------------- functions
    def fn_sum(self, x: Any, axis: int | None) -> Any:
        return jnp.sum(x).reshape(1, 1) if axis is None else jnp.sum(x, axis=axis, keepdims=True)

    def fn_mean(self, x: Any, axis: int | None) -> Any:
        return jnp.mean(x).reshape(1, 1) if axis is None else jnp.mean(x, axis=axis, keepdims=True)

    def fn_exp(self, x: Any) -> Any:
        return jnp.exp(x)

    def fn_log(self, x: Any) -> Any:
        return jnp.log(x)

    def fn_tanh(self, x: Any) -> Any:
        return jnp.tanh(x)

    def fn_relu(self, x: Any) -> Any:
        return jax.nn.relu(x)

    def fn_step(self, x: Any) -> Any:
        return (x > 0).astype(x.dtype)

    def fn_sigmoid(self, x: Any) -> Any:
        return jax.nn.sigmoid(x)

    def fn_softmax(self, x: Any, axis: int | None) -> Any:
        return jax.nn.softmax(x, axis=axis)

    def fn_log_softmax(self, x: Any, axis: int | None) -> Any:
        return jax.nn.log_softmax(x, axis=axis)

    def fn_logsumexp(self, x: Any, axis: int | None) -> Any:
        if axis is None:
            return jax.nn.logsumexp(x).reshape(1, 1)
        return jax.nn.logsumexp(x, axis=axis, keepdims=True)

    def fn_Diag(self, x: Any) -> Any:
        return jnp.diag(x.reshape(-1))

    def fn_outer(self, u: Any, v: Any) -> Any:
        return jnp.outer(u.reshape(-1), v.reshape(-1))

    def cross_entropy(self, labels: Any, logits: Any, *, axis: int | None, per_sample: bool) -> Any:
        """optax's softmax_cross_entropy: -sum(labels * log_softmax(logits)) along the class axis."""
        if labels.shape != logits.shape:
            raise UnsupportedPrimitive(f"cross_entropy of labels {labels.shape} and logits {logits.shape}")
        losses = -jnp.sum(labels * jax.nn.log_softmax(logits, axis=axis), axis=axis, keepdims=True)
        return losses if per_sample else jnp.sum(losses).reshape(1, 1)


class JaxBackend(Backend):
    """jax autodiff over the forward definitions; softmax cross-entropy through ``jax.nn.log_softmax`` (as optax
    computes it: the stable form a jax user writes, the plain name)."""

    name = "jax"
    description = ("jax autodiff (jax.grad, jax.jacrev, jax.jvp, jax.vjp, jax.hessian; jitted) over the forward "
                   "definitions; loss as optax's "
                   "-sum(y * jax.nn.log_softmax(theta)) where it is -sum(y * log(softmax(theta))), any other loss "
                   "as written")
    fused = True
    #: compile each (model, quantities) program with jax.jit (see the module docstring for the measurement)
    jit = True

    def __init__(self) -> None:
        if jax is not None:
            # Before any array exists: float64 is float32 in jax otherwise.
            jax.config.update("jax_enable_x64", True)
        self._programs: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def unavailable_reason(self) -> str | None:
        if _IMPORT_ERROR is None:
            return None
        if isinstance(_IMPORT_ERROR, ImportError) and getattr(_IMPORT_ERROR, "name", None) in ("jax", "jaxlib"):
            return f"{_IMPORT_ERROR.name} is not installed (pip install 'gradconform[jax]')"
        return f"jax cannot be imported: {type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}"

    def dtypes(self) -> frozenset[str]:
        return frozenset(DTYPES)

    def quantity_kinds(self) -> frozenset[str]:
        return QUANTITY_KINDS

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if jax is not None and _gpus() else ("cpu",)

    def versions(self) -> Mapping[str, str]:
        if jax is None:
            return {}
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__}

    # ------------------------------------------------------------------ evaluate
    def _device(self, name: str) -> Any:
        kind, _, index = name.partition(":")
        if kind == "cpu":
            return jax.devices("cpu")[0]
        if kind in ("cuda", "gpu"):
            gpus = _gpus()
            if not gpus:
                raise NotSupported(f"device {name!r}: jax {jax.__version__} sees no GPU here "
                                   f"(platforms present: {', '.join(sorted({d.platform for d in jax.devices()}))})")
            i = int(index) if index.isdigit() else 0
            if i >= len(gpus):
                raise NotSupported(f"device {name!r}: only {len(gpus)} GPU(s) here")
            return gpus[i]
        raise NotSupported(f"device {name!r}: this backend runs on cpu or cuda")

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.dtype not in DTYPES:
            raise NotSupported(f"dtype {request.dtype}")
        device = self._device(request.device)
        model = fuse_cross_entropy(request.model)[0] if self.fused else request.model
        out: dict[str, Any] = {}
        computed: list[Quantity] = []
        for q in request.quantities:
            declined = self._declined(request.model, model, q)
            if declined is not None:
                out[q.id] = declined
            else:
                computed.append(q)
        dtype = jnp.dtype(numpy_dtype(request.dtype))
        inputs = {k: jax.device_put(np.asarray(v), device) for k, v in request.inputs.items()}
        with jax.default_device(device):
            try:
                program = self._program(model, tuple(computed), dtype)
                results = program(inputs)
            except Exception:
                # Something in the program failed to trace: evaluate each quantity on its
                # own, so that one quantity's failure is recorded as that quantity's error.
                results = {}
                for q in computed:
                    try:
                        results[q.id] = _build(model, (_work_key(q),), JaxOps(dtype))(inputs)[_work_key(q)]
                    except (NotSupported, UnsupportedPrimitive) as exc:
                        results[q.id] = NotSupported(str(exc))
                    except Exception as exc:
                        results[q.id] = exc
        for qid, value in results.items():
            out[qid] = value if isinstance(value, BaseException) else np.asarray(value)
        return out

    def _declined(self, spec_model: Model, model: Model, q: Quantity) -> NotSupported | None:
        if q.kind not in QUANTITY_KINDS:
            return NotSupported(f"quantity kind {q.kind!r}")
        if q.kind in ("jvp", "vjp", "hvp") and q.direction not in spec_model.inputs:
            return NotSupported(f"a {q.kind} without its direction among the inputs ({q.direction!r})")
        if q.kind == "value":
            return None
        if q.wrt is None:
            return NotSupported(f"a {q.kind} without 'wrt'")
        if q.kind == "jacobian" and q.convention not in (None, "numerator", "denominator"):
            return NotSupported(f"Jacobian convention {q.convention!r}")
        if depends_on(spec_model, q.of, q.wrt) and not depends_on(model, q.of, q.wrt):
            return NotSupported(f"{q.of} does not pass through {q.wrt} in this backend's computation "
                                "(the fused loss goes from the logits straight to the loss)")
        return None

    def _program(self, model: Model, quantities: tuple[Quantity, ...], dtype: Any) -> Callable[..., Any]:
        """The compiled program for these quantities; ids that name the same derivative share one result."""
        work = _distinct(quantities)
        key = (model, tuple(sorted(work)), str(dtype))
        if key not in self._programs:
            program = _build(model, tuple(sorted(work)), JaxOps(dtype))
            self._programs[key] = jax.jit(program) if self.jit else program
        compiled = self._programs[key]

        def run(inputs: Mapping[str, Any]) -> dict[str, Any]:
            results = compiled(inputs)
            return {q.id: results[_work_key(q)] for q in quantities}

        return run


class JaxComposedBackend(JaxBackend):
    """jax autodiff over the forward definitions; the loss exactly as written."""

    name = "jax-composed"
    description = ("jax autodiff (jax.grad, jax.jacrev, jax.jvp, jax.vjp, jax.hessian; jitted) over the forward "
                   "definitions; "
                   "the loss exactly as written (log(softmax(theta)) stays composed)")
    fused = False


#: Deprecated: the old import target of the stable form (``jax-fused``), now :class:`JaxBackend`.
JaxFusedBackend = JaxBackend


def _gpus() -> list[Any]:
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


#: What a quantity asks to be computed, whatever its id: (kind, of, wrt, convention or direction).
Work = tuple[str, str, str, str]


def _work_key(q: Quantity) -> Work:
    if q.kind == "value":
        return ("value", q.of, "", "")
    if q.kind in ("jvp", "vjp", "hvp"):
        return (q.kind, q.of, q.wrt or "", q.direction or "")
    return (q.kind, q.of, q.wrt or "", (q.convention or "numerator") if q.kind == "jacobian" else "")


def _distinct(quantities: tuple[Quantity, ...]) -> set[Work]:
    return {_work_key(q) for q in quantities}


def _build(model: Model, work: tuple[Work, ...], ops: JaxOps) -> Callable[[Mapping[str, Any]], dict[Work, Any]]:
    """The function inputs -> {work: array} that jax differentiates (and jit compiles)."""

    def program(inputs: Mapping[str, Any]) -> dict[Work, Any]:
        env: dict[str, Any] = dict(inputs)
        for name, expr in model.forward:
            env[name] = interpret(expr, env, ops)
        out: dict[Work, Any] = {}
        for item in work:
            kind, of, wrt, convention = item
            if kind == "value":
                out[item] = env[of]
                continue
            fn = evaluate_downstream(model, wrt, of, env, ops)
            at = env[wrt]
            if kind == "gradient":
                if env[of].size != 1:
                    raise NotSupported(f"gradient of {of!r}, which is not a scalar (shape {env[of].shape})")
                out[item] = jax.grad(lambda v: fn(v).reshape(()))(at)
            elif kind in ("jvp", "vjp", "hessian", "hvp"):
                out[item] = _higher_order(kind, fn, at, env.get(convention))
            else:
                jac = jax.jacrev(fn)(at).reshape(env[of].size, at.size)  # numerator: d of_i / d wrt_j
                out[item] = jac.T if convention == "denominator" else jac
        return out

    return program


def _higher_order(kind: str, fn: Callable[[Any], Any], at: Any, direction: Any) -> Any:
    """jax.jvp, jax.vjp, jax.hessian, or jax.jvp of jax.grad (the Hessian times a tangent), of ``wrt -> of``."""
    if kind == "jvp":
        return jax.jvp(fn, (at,), (direction,))[1]
    if kind == "vjp":
        _, pull = jax.vjp(fn, at)
        return pull(direction)[0]
    scalar = lambda v: fn(v).reshape(())  # noqa: E731 - the loss as a function of wrt, for jax.grad / hessian
    if kind == "hessian":
        return jax.hessian(scalar)(at).reshape(at.size, at.size)
    return jax.jvp(jax.grad(scalar), (at,), (direction,))[1]
