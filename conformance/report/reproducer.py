"""A standalone reproducer for a finding: a few lines a framework author can paste into a bug report.

For the built-in backends (numpy, torch, jax, stable and composed) it is a
Python script that uses only the backend's own library: it builds the inputs
of the recorded case (exact: decoded from the results file's hex floats),
computes the quantity the way the backend does (numpy: the spec's closed form
with the backend's careful primitives; torch and jax: the forward definitions
differentiated by the library's autodiff, jax under ``jax.jit``; jvp, vjp,
hessian and hvp by the same transforms the backends use) and prints
the computed component next to the certified exact value. Nothing of
gradconform is imported by the script, and nothing here runs it: it is
generated from the results file (and the spec it embeds) only.

For any other backend, or when something needed is missing (the spec, a
primitive the generator does not know), it is the shell command that reruns
the case from the results file (``gradconform rerun RESULTS CASE --quantity Q``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from conformance.expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose, fuse_log_softmax
from conformance.results.naming import case_rerun_command
from conformance.formats import FORMATS
from conformance.spec import Spec

from .findings import Finding
from .numbers import fmt_magnitude, fmt_value, num

__all__ = ["Reproducer", "reproducer", "finding_reproducer", "library_of"]


@dataclass(frozen=True)
class Reproducer:
    language: str  # "python" (a standalone script) or "shell" (a gradconform command)
    text: str
    label: str  # what it is, for the card: "numpy only", "gradconform rerun"
    what: str = ""  # which case: "minimal counterexample", "smallest failing case"
    #: that case, for the card: "dL/dx · row · float16 · case 3887981f4b3f, magnitude 10: computed +inf, exact 0.0001"
    case: str = ""
    rerun: str = ""  # the gradconform command that reruns the same case


class _Unsupported(Exception):
    """The generator cannot write this case in the library: the shell command is given instead."""


# ---------------------------------------------------------------------------------------------- libraries

def library_of(backend: Mapping[str, Any]) -> tuple[str, bool] | None:
    """(library, stable) of a built-in backend as the results file records it, or None for any other backend.
    Old results files named the composed torch and jax losses plainly: their description says so."""
    if backend.get("source") != "built-in":
        return None
    name = str(backend.get("name", ""))
    lib, _, variant = name.partition("-")
    if lib not in ("numpy", "torch", "jax") or variant not in ("", "composed", "fused"):
        return None
    composed = variant == "composed" or "stays composed" in str(backend.get("description", ""))
    return lib, not composed


_DTYPES = {
    "numpy": {"float64": "np.float64", "float32": "np.float32", "float16": "np.float16",
              "bfloat16": "ml_dtypes.bfloat16"},
    "torch": {"float64": "torch.float64", "float32": "torch.float32", "float16": "torch.float16",
              "bfloat16": "torch.bfloat16"},
    "jax": {"float64": "jnp.float64", "float32": "jnp.float32", "float16": "jnp.float16", "bfloat16": "jnp.bfloat16"},
}

#: numpy helpers, as the numpy backend computes (impls/numpy): max-shifted softmax family, exp(-|x|) sigmoid, sums
#: and products accumulated in ``acc`` (float32 for float16 and bfloat16) and rounded once.
_NUMPY_HELPERS: dict[str, str] = {
    "c": "def c(v): return np.full((1, 1), v).astype(dt)",
    "mm": "def mm(a, b): return (a.astype(acc) @ b.astype(acc)).astype(dt)",
    "sm": ("def sm(x, axis=None):\n"
           "    return (np.sum(x.astype(acc)).reshape(1, 1) if axis is None else "
           "np.sum(x.astype(acc), axis=axis, keepdims=True)).astype(dt)"),
    "mean": "def mean(x, axis=None): return (sm(x, axis) / dt(x.size if axis is None else x.shape[axis])).astype(dt)",
    "sigmoid": ("def sigmoid(x):\n"
                "    e = np.exp(-np.abs(x))\n"
                "    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(dt)"),
    "shift": "def shift(x, axis): return x - (np.max(x) if axis is None else np.max(x, axis=axis, keepdims=True))",
    "softmax": "def softmax(x, axis):\n    e = np.exp(shift(x, axis))\n    return e / sm(e, axis)",
    "log_softmax": "def log_softmax(x, axis):\n    z = shift(x, axis)\n    return z - np.log(sm(np.exp(z), axis))",
    "logsumexp": ("def logsumexp(x, axis=None):\n"
                  "    m = np.max(x) if axis is None else np.max(x, axis=axis, keepdims=True)\n"
                  "    return m + np.log(sm(np.exp(x - m), axis))"),
}
_NUMPY_NEEDS = {"mean": ("sm",), "softmax": ("shift", "sm"), "log_softmax": ("shift", "sm"), "logsumexp": ("sm",)}


def _axis(axis: int | None, word: str) -> str:
    return "" if axis is None else f", {word}={axis}"


def _call(lib: str, fn: str, args: Sequence[str], axis: int | None) -> str:
    """One primitive of the math language in the library, as the backend calls it."""
    a = args[0] if args else ""
    if lib == "numpy":
        simple = {"exp": "np.exp", "log": "np.log", "tanh": "np.tanh"}
        if fn in simple:
            return f"{simple[fn]}({a})"
        if fn in ("sum", "mean", "logsumexp"):
            return f"{'sm' if fn == 'sum' else fn}({a}{_axis(axis, 'axis')})"
        if fn in ("sigmoid",):
            return f"sigmoid({a})"
        if fn in ("softmax", "log_softmax"):
            return f"{fn}({a}, {axis})"
        if fn == "relu":
            return f"np.maximum({a}, dt(0))"
        if fn == "step":
            return f"({a} > 0).astype(dt)"
        if fn == "Diag":
            return f"np.diag({a}.reshape(-1)).astype(dt)"
        if fn == "outer":
            return f"np.multiply.outer({a}.reshape(-1), {args[1]}.reshape(-1)).astype(dt)"
    elif lib == "torch":
        if fn in ("exp", "log", "tanh", "relu", "sigmoid"):
            return f"torch.{fn}({a})"
        if fn in ("sum", "mean"):
            return f"torch.{fn}({a}).reshape(1, 1)" if axis is None else f"torch.{fn}({a}, dim={axis}, keepdim=True)"
        if fn in ("softmax", "log_softmax") and axis is not None:
            return f"torch.{fn}({a}, dim={axis})"
        if fn == "logsumexp":
            return (f"torch.logsumexp({a}.reshape(-1), dim=0).reshape(1, 1)" if axis is None
                    else f"torch.logsumexp({a}, dim={axis}, keepdim=True)")
        if fn == "step":
            return f"({a} > 0).to(dt)"
        if fn == "Diag":
            return f"torch.diag({a}.reshape(-1))"
        if fn == "outer":
            return f"torch.outer({a}.reshape(-1), {args[1]}.reshape(-1))"
    elif lib == "jax":
        if fn in ("exp", "log", "tanh"):
            return f"jnp.{fn}({a})"
        if fn in ("relu", "sigmoid"):
            return f"jax.nn.{fn}({a})"
        if fn in ("sum", "mean"):
            return f"jnp.{fn}({a}).reshape(1, 1)" if axis is None else f"jnp.{fn}({a}, axis={axis}, keepdims=True)"
        if fn in ("softmax", "log_softmax") and axis is not None:
            return f"jax.nn.{fn}({a}, axis={axis})"
        if fn == "logsumexp":
            return (f"jax.nn.logsumexp({a}).reshape(1, 1)" if axis is None
                    else f"jax.nn.logsumexp({a}, axis={axis}, keepdims=True)")
        if fn == "step":
            return f"({a} > 0).astype(dt)"
        if fn == "Diag":
            return f"jnp.diag({a}.reshape(-1))"
        if fn == "outer":
            return f"jnp.outer({a}.reshape(-1), {args[1]}.reshape(-1))"
    raise _Unsupported(f"{fn} in {lib}")


def _code(e: Expr, lib: str) -> str:
    """An expression as library code (every operation parenthesised: exact, if not pretty)."""
    if isinstance(e, Name):
        if not e.id.isidentifier():
            raise _Unsupported(f"name {e.id!r}")
        return e.id
    if isinstance(e, Const):
        v = repr(float(e.value))
        return {"numpy": f"c({v})", "torch": f"torch.full((1, 1), {v}, dtype=dt)",
                "jax": f"jnp.full((1, 1), {v}, dtype=dt)"}[lib]
    if isinstance(e, Neg):
        return f"(-{_code(e.operand, lib)})"
    if isinstance(e, BinOp):
        left, right = _code(e.left, lib), _code(e.right, lib)
        if e.op == "@" and lib == "numpy":
            return f"mm({left}, {right})"
        return f"({left} {e.op} {right})"
    if isinstance(e, Pow):
        base = _code(e.base, lib)
        if lib == "numpy":  # repeated products, as the numpy backend (Ops.pow)
            return f"({base} - {base} + c(1.0))" if e.exponent == 0 else "(" + " * ".join([base] * e.exponent) + ")"
        return f"({base} ** {e.exponent})"
    if isinstance(e, Transpose):
        return f"{_code(e.operand, lib)}{'.mT' if lib == 'torch' else '.T'}"
    if isinstance(e, Call):
        return _call(lib, e.fn, [_code(a, lib) for a in e.args], e.axis)
    raise _Unsupported(type(e).__name__)


def _torch_cross_entropy(e: Expr) -> str | None:
    """``-sum(y * log_softmax(theta, axis=k))`` as torch's stable backend computes it (F.cross_entropy), or None."""
    if not (isinstance(e, Neg) and isinstance(e.operand, Call) and e.operand.fn == "sum" and e.operand.axis is None):
        return None
    prod = e.operand.args[0]
    if not (isinstance(prod, BinOp) and prod.op == "*" and isinstance(prod.left, Name)):
        return None
    ls = prod.right
    if not (isinstance(ls, Call) and ls.fn == "log_softmax" and ls.axis in (0, 1) and isinstance(ls.args[0], Name)):
        return None
    y, theta = prod.left.id, ls.args[0].id
    inp, target = (theta, y) if ls.axis == 1 else (f"{theta}.mT", f"{y}.mT")
    return f"torch.nn.functional.cross_entropy({inp}, {target}, reduction='sum').reshape(1, 1)"


# ---------------------------------------------------------------------------------------------- the script

def _short(f: float, dtype: str) -> str:
    """The shortest decimal that gives ``f`` back through float64 and a cast to ``dtype`` (what ``arr`` does): the
    dtype's own shortest repr where that round trip is exact, else float64's."""
    if f != f or abs(f) == float("inf"):
        return f"float({repr(f)!r})"
    if dtype != "float64":
        t = FORMATS[dtype].dtype.type
        text = str(t(f))
        try:
            if float(t(float(text))) == f and float(text) == float(text):
                return text if any(c in text for c in ".en") else text + ".0"
        except (ValueError, OverflowError):
            pass
    return repr(f)


def _literal(values: Sequence[str], shape: Sequence[int], dtype: str = "float64") -> str:
    """A row-major matrix of hex floats as an exact Python literal; a repeated value or row is written once
    (``[[0.0] * 3] * 5``), which keeps the shrunk counterexamples short."""
    rows, cols = (int(shape[0]), int(shape[1])) if len(shape) == 2 else (1, len(values))
    floats = [_short(float.fromhex(h), dtype) for h in values]

    def row(items: Sequence[str]) -> str:
        if len(items) > 1 and len(set(items)) == 1:
            return f"[{items[0]}] * {len(items)}"
        return "[" + ", ".join(items) + "]"

    texts = [row(floats[i * cols:(i + 1) * cols]) for i in range(rows)]
    if rows > 1 and len(set(texts)) == 1:
        return f"[{texts[0]}] * {rows}"
    return "[" + ", ".join(texts) + "]"


def _comment(text: str) -> str:
    """A comment line of the script: whatever the results file holds stays inside it (no line break can end the
    comment, no backtick can end a markdown fence around the script)."""
    return ("# " + " ".join(text.split())).replace("`", "'").rstrip()


def _value_text(x: Any) -> str:
    f = num(x)
    return "?" if f is None else repr(f)


def _script(lib: str, stable: bool, spec: Spec, case: Mapping[str, Any], record: Mapping[str, Any],
            backend: Mapping[str, Any]) -> str:
    layout = spec.layouts.get(str(case.get("layout")))
    if layout is None:
        raise _Unsupported("layout")
    dtype = str(case.get("dtype"))
    if dtype not in _DTYPES[lib]:
        raise _Unsupported(f"dtype {dtype}")
    q = str(record.get("quantity"))
    definitions = {d.name: d.expr for d in layout.forward}
    forward = [(d.name, fuse_log_softmax(d.expr, definitions) if stable else d.expr) for d in layout.forward]
    identity = next((i for i in layout.identities if i.id == q), None)
    inputs = case.get("inputs", {})
    if identity is None and q not in definitions:
        raise _Unsupported(f"quantity {q}")
    index = record.get("worst_index")
    if not (isinstance(index, list) and all(isinstance(i, int) for i in index)):
        raise _Unsupported("component index")
    idx = ", ".join(str(i) for i in index)

    def line(name: str, expr: Expr) -> str:
        if lib == "torch" and stable and (ce := _torch_cross_entropy(expr)) is not None:
            return f"{name} = {ce}"
        return f"{name} = {_code(expr, lib)}"

    mag = num(case.get("magnitude"))
    head = [_comment(f"{backend.get('name')}: {q}[{idx}], {layout.name} layout, {dtype}, regime {case.get('regime')}"
                     + (f" (magnitude {mag:g})" if mag is not None else "") + f", case {case.get('id')}"),
            _comment(str(backend.get("description", "")))]
    body: list[str] = []
    if lib == "numpy":
        head += ["import numpy as np"] + (["import ml_dtypes"] if dtype == "bfloat16" else [])
        body += [f"dt = {_DTYPES[lib][dtype]}",
                 f"acc = {'np.float32' if dtype in ('float16', 'bfloat16') else 'dt'}  # where sums accumulate"]
        body.append("def arr(v): return np.array(v).astype(dt)  # exact: every value is representable in dt")
        for name, v in inputs.items():
            body.append(f"{name} = arr({_literal(v.get('hex', []), v.get('shape', []), dtype)})")
        body += [line(n, e) for n, e in forward]
        if identity is not None:
            body.append(f"out = {_code(identity.expr, lib)}  # the closed form of {q} the backend evaluates")
        else:
            body.append(f"out = {q}")
        code = "\n".join(body)
        helpers = _numpy_helpers(code)
        body = body[:2] + helpers + body[2:]
    elif lib == "torch":
        head += ["import torch", "torch.set_num_threads(1)  # as the backend runs"]
        body.append(f"dt = {_DTYPES[lib][dtype]}")
        body.append("def arr(v): return torch.tensor(v, dtype=torch.float64).to(dt).requires_grad_(True)  # exact")
        for name, v in inputs.items():
            body.append(f"{name} = arr({_literal(v.get('hex', []), v.get('shape', []), dtype)})")
        body += [line(n, e) for n, e in forward]
        body += _derivative(lib, q, identity, forward, line, inputs)
    else:
        head += ["import jax", "import jax.numpy as jnp", 'jax.config.update("jax_enable_x64", True)']
        body.append(f"dt = {_DTYPES[lib][dtype]}")
        args = list(inputs)
        prog = [f"def program({', '.join(args)}):  # what the backend runs, under jax.jit"]
        names = [n for n, _ in forward]
        # a derivative: the definitions up to ``wrt`` (f recomputes the rest from it); a value: all of them
        upto = (names.index(identity.wrt) + 1 if identity.wrt in names else 0) if identity is not None else len(names)
        prog += ["    " + line(n, e) for n, e in forward[:upto]]
        prog += ["    " + s for s in _derivative(lib, q, identity, forward, line, inputs)]
        prog.append("    return out")
        body.append("def arr(v): return jnp.array(v, dtype=jnp.float64).astype(dt)  # exact")
        for name, v in inputs.items():
            body.append(f"{name} = arr({_literal(v.get('hex', []), v.get('shape', []), dtype)})")
        body += prog + [f"out = jax.jit(program)({', '.join(args)})"]
    got = "out.detach()" if lib == "torch" else "out"
    tail = [f"print({(q + '[' + idx + ']')!r}, 'computed:', float({got}[{idx}]), 'exact:', "
            f"{_value_text(record.get('worst_exact'))})",
            _comment(f"the run recorded {_value_text(record.get('worst_got'))} "
                     f"({record.get('status')}{' (' + str(record.get('detail')) + ')' if record.get('detail') else ''})")]
    return "\n".join(head + body + tail) + "\n"


def _numpy_helpers(code: str) -> list[str]:
    """The helper definitions the code calls (and those they call), in a fixed order."""
    used: set[str] = set()

    def need(name: str) -> None:
        used.add(name)
        for dep in _NUMPY_NEEDS.get(name, ()):
            need(dep)

    for name in _NUMPY_HELPERS:
        if re.search(rf"(?<![\w.]){name}\(", code):
            need(name)
    return [text for name, text in _NUMPY_HELPERS.items() if name in used]


def _derivative(lib: str, q: str, identity: Any, forward: Sequence[tuple[str, Expr]], line: Any,
                inputs: Mapping[str, Any]) -> list[str]:
    """The lines that set ``out``: a forward value as computed, a derivative by the library's autodiff."""
    if identity is None:
        return [f"out = {q}"]
    of, wrt, kind = identity.of, identity.wrt, identity.kind
    names = [n for n, _ in forward]
    if of not in names or (wrt not in names and wrt not in inputs):
        raise _Unsupported("derivative")
    start = names.index(wrt) + 1 if wrt in names else 0
    down = forward[start:names.index(of) + 1]
    fn = [f"def f({wrt}):  # the definitions after {wrt}, as a function of it"] + [f"    {line(n, e)}" for n, e in down]
    fn.append(f"    return {of}")
    flip = identity.convention == "denominator"
    if kind in _HIGHER_ORDER:
        return fn + _higher_order(lib, kind, wrt, identity.direction, inputs)
    if kind not in ("gradient", "jacobian"):
        raise _Unsupported(f"kind {kind}")
    if lib == "torch":
        if kind == "gradient":
            return [f"out, = torch.autograd.grad({of}, {wrt})  # reverse mode, as the backend"]
        return fn + [f"out = torch.autograd.functional.jacobian(f, {wrt}.detach())"
                     f".reshape({of}.numel(), {wrt}.numel()){'.mT' if flip else ''}"]
    if kind == "gradient":
        return fn + [f"out = jax.grad(lambda v: f(v).reshape(()))({wrt})"]
    return fn + [f"out = jax.jacrev(f)({wrt}).reshape({of}.size, {wrt}.size){'.T' if flip else ''}"]


#: the kinds of contract 1.1, computed by the library's transforms of ``f`` (the definitions after ``wrt``)
_HIGHER_ORDER = ("jvp", "vjp", "hessian", "hvp")


def _higher_order(lib: str, kind: str, wrt: str, direction: str | None, inputs: Mapping[str, Any]) -> list[str]:
    """The lines that set ``out`` for a jvp, vjp, hessian or hvp, as impls/torch (torch.func) and impls/jax
    compute it: J v by forward mode, u^T J by the pullback, the Hessian forward over reverse, H v as the jvp of
    the gradient. A Jacobian in their place would print another number (or fail on the index)."""
    if kind != "hessian" and direction not in inputs:
        raise _Unsupported(f"the direction of a {kind}")
    if lib == "torch":
        at, d = f"{wrt}.detach()", f"{direction}.detach()"
        scalar = "lambda w: f(w).reshape(())"
        return {"jvp": [f"out = torch.func.jvp(f, ({at},), ({d},))[1]  # forward mode, as the backend"],
                "vjp": [f"_, pull = torch.func.vjp(f, {at})", f"out, = pull({d})  # the pullback of {direction}"],
                "hessian": [f"out = torch.func.hessian({scalar})({at}).reshape({wrt}.numel(), {wrt}.numel())"],
                "hvp": [f"out = torch.func.jvp(torch.func.grad({scalar}), ({at},), ({d},))[1]  # H v"]}[kind]
    scalar = "lambda v: f(v).reshape(())"
    return {"jvp": [f"out = jax.jvp(f, ({wrt},), ({direction},))[1]  # forward mode, as the backend"],
            "vjp": [f"_, pull = jax.vjp(f, {wrt})", f"out, = pull({direction})  # the pullback of {direction}"],
            "hessian": [f"out = jax.hessian({scalar})({wrt}).reshape({wrt}.size, {wrt}.size)"],
            "hvp": [f"out = jax.jvp(jax.grad({scalar}), ({wrt},), ({direction},))[1]  # H v"]}[kind]


def reproducer(doc: Mapping[str, Any], spec: Spec | None, case: Mapping[str, Any], record: Mapping[str, Any],
               results_display: str) -> Reproducer:
    """The reproducer of one failing record on its case: a standalone script for a built-in backend, else the
    rerun command. ``record`` is the case's record of the quantity (with worst_index, worst_exact, worst_got)."""
    rerun = Reproducer("shell", case_rerun_command(results_display, str(case.get("id", "?")),
                                                   str(record.get("quantity"))), "gradconform rerun")
    known = library_of(doc.get("backend", {}))
    if known is None or spec is None or str(doc.get("backend", {}).get("device") or "cpu") != "cpu":
        return rerun  # (a script for a GPU run would have to place every tensor: the rerun command does)
    lib, stable = known
    try:
        text = _script(lib, stable, spec, case, record, doc.get("backend", {}))
    except (_Unsupported, ValueError, TypeError, KeyError):
        return rerun
    if any(not n.isidentifier() for n in case.get("inputs", {})):
        return rerun
    return Reproducer("python", text, f"{lib} only")


def finding_reproducer(doc: Mapping[str, Any], spec: Spec | None, finding: Finding, results_display: str) -> Reproducer:
    """The reproducer of a finding's card: on its minimal counterexample where the run shrank one (the first of its
    test, as the failure group shows it), else on its smallest failing case (fewest input values, then the lowest
    magnitude: the nearest thing to a minimal one, and a short script)."""
    cg = finding.counterexample
    record: Mapping[str, Any] = {}
    case: Mapping[str, Any] = {}
    what = "minimal counterexample"
    if cg is not None:
        key = (cg.quantity, cg.layout, cg.dtype, cg.regime)
        ce = next((c for c in doc.get("counterexamples", [])
                   if (c.get("quantity"), c.get("layout"), c.get("dtype"), c.get("regime")) == key), {})
        record = next((r for r in ce.get("records", []) if r.get("quantity") == cg.quantity), {})
        case = ce.get("case", {})
    else:
        what = "smallest failing case"
        keys = {(g.quantity, g.layout, g.dtype, g.regime) for g in finding.groups}
        cases = {c.get("id"): c for c in doc.get("cases", [])}
        order = {g.quantity: i for i, g in enumerate(finding.groups)}  # the finding's order (spec order)

        def size(c: Mapping[str, Any]) -> int:
            return sum(len(v.get("hex", [])) for v in c.get("inputs", {}).values())

        failing = [r for r in doc.get("records", []) if r.get("status") == "fail" and r.get("case") in cases
                   and (r.get("quantity"), r.get("layout"), r.get("dtype"), r.get("regime")) in keys]
        if failing:
            record = min(failing, key=lambda r: (size(cases[r["case"]]), _mag_key(r.get("magnitude")),
                                                 order.get(r["quantity"], 99), str(r["quantity"]), str(r["layout"]),
                                                 str(r["dtype"]), str(r["case"])))
            case = cases[record["case"]]
    if not case or not record:
        return Reproducer("shell", finding.worst.rerun, "gradconform rerun")
    rp = reproducer(doc, spec, case, record, results_display)
    mag = num(case.get("magnitude"))
    where = (f"{record.get('quantity')} · {case.get('layout')} · {case.get('dtype')} · case {case.get('id')}"
             + (f", magnitude {fmt_magnitude(mag)}" if mag is not None else "")
             + f": computed {fmt_value(record.get('worst_got'))}, exact {fmt_value(record.get('worst_exact'))}")
    return Reproducer(rp.language, rp.text, rp.label, what, where,
                      case_rerun_command(results_display, str(case.get("id", "?")), str(record.get("quantity"))))


def _mag_key(m: Any) -> float:
    f = num(m)
    return f if f is not None else float("-inf")
