"""Why the safety factor is 3: how far correct evaluation forms other than the spec's own go beyond its bound.

    python benchmarks/form_factors.py [--rows N] [--out benchmarks/form_factors.txt]

The running error bound B (conformance/bounds.py) is derived for the spec's expression evaluated as written.
A correct backend may evaluate another form of the same quantity (sigmoid as 1 / (1 + exp(-a)), sigmoid' as
sigmoid(a) sigmoid(-a), softmax through a reciprocal or as exp(log_softmax), the gradient of the composed
loss by reverse mode, ...). For each form this script evaluates it in the dtype on N random rows and prints
max |computed - exact| / B over all components (B computed by conformance.judge.bounds itself), a high quantile,
and how many components exceed 2 B and 3 B. docs/tolerances.md derives the worst case of each form; this
is the measurement beside the derivation. B includes the explicit reverse-mode term of dL/dtheta (the loss
of the layout below is the composed cross-entropy, as in the seed spec). Exact values: float64 evaluations of cancellation-free formulas
(their error, ~1e-16 relative, is negligible beside float32/float16/bfloat16 bounds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.judge.bounds import ErrorBounds  # noqa: E402
from conformance.expr import Expr, interpret  # noqa: E402
from conformance.formats import get_format  # noqa: E402
from conformance.spec.parse import parse_expr  # noqa: E402
from conformance.spec import load_spec  # noqa: E402
from impls.numpy import NumpyOps  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")


def bounds_for(definitions: list[tuple[str, str]], inputs: dict[str, np.ndarray], dtype: str, policy
               ) -> tuple[ErrorBounds, dict[str, Expr]]:
    names = set(inputs)
    forward = []
    for name, text in definitions:
        expr = parse_expr(text, names=names)
        forward.append(SimpleNamespace(name=name, expr=expr))
        names.add(name)
    layout = SimpleNamespace(forward=forward, definitions={d.name: d.expr for d in forward}, loss="L")
    env = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    nodes: dict[Expr, np.ndarray] = {}  # float64 values of every node: the bound needs them to ~1e-16 only
    with np.errstate(all="ignore"):
        for d in forward:
            env[d.name] = interpret(d.expr, env, NumpyOps("float64"), nodes)
    return ErrorBounds(layout, nodes, inputs, dtype, policy), {d.name: d.expr for d in forward}


def sigmoid64(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def rows(rng: np.random.Generator, n: int, dtype: str) -> dict[str, np.ndarray]:
    fmt = get_format(dtype)
    lim = 8.0 if dtype == "float16" else 15.0
    a = rng.uniform(-lim, lim, (n, 4))
    k = 5
    scale = rng.choice([0.5, 3.0, 12.0], size=(n, 1))
    theta = rng.normal(size=(n, k)) * scale
    theta[np.arange(n), rng.integers(0, k, n)] -= rng.uniform(0, 3 * lim, n)  # an unlikely class
    onehot = np.eye(k)[rng.integers(0, k, n)]
    q = min(20, fmt.p - 1)
    w = rng.integers(0, 50, (n, k)).astype(float) + 1e-9
    soft = np.floor(w / w.sum(1, keepdims=True) * 2**q)
    soft[:, 0] += 2**q - soft.sum(1)
    soft /= 2**q
    y = np.where(rng.random((n, 1)) < 0.5, onehot, soft)
    return {k_: np.asarray(v).astype(fmt.dtype).astype(np.float64) for k_, v in
            {"a": a, "theta": theta, "y": y}.items()}


def forms(dtype: str) -> dict[str, tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray]]]:
    """quantity form -> (the spec's definition it is measured against, the form evaluated in dtype)."""
    ops = NumpyOps(dtype)
    dt = ops.dtype
    one = dt.type(1)

    def r(x):
        return np.asarray(x).astype(dt)

    def sig_stable(a):
        return ops.fn_sigmoid(a)

    def sig_naive(a):
        return r(one / r(one + r(np.exp(-a))))

    def softmax(theta, form):
        z = r(theta - np.max(theta, axis=1, keepdims=True))
        e = r(np.exp(z))
        s = ops.fn_sum(e, 1)
        if form == "div":
            return r(e / s)
        if form == "recip":
            return r(e * r(one / s))
        return r(np.exp(r(z - r(np.log(s)))))  # exp(log_softmax)

    def c(v):
        return {k: r(x) for k, x in v.items()}

    def dtheta_composed_ad(v):
        y, yhat = v["y"], softmax(v["theta"], "div")
        g = r(-y / yhat)
        return r(yhat * r(g - ops.fn_sum(r(g * yhat), 1)))

    def dtheta_composed_ad_jax(v):
        # jax differentiates softmax = s / w through its operations: the stored yhat is divided out and
        # s / w recomputed, so yhat's rounding no longer cancels
        y, theta = v["y"], v["theta"]
        z = r(theta - np.max(theta, axis=1, keepdims=True))
        s_ = r(np.exp(z))
        w = ops.fn_sum(s_, 1)
        yhat = r(s_ / w)
        g = r(-y / yhat)
        t1 = r(r(g / w) * s_)
        t2 = r(s_ * r(ops.fn_sum(r(g * s_), 1) / r(w * w)))
        return r(t1 - t2)

    def dtheta_fused_ad(v):
        y, theta = v["y"], v["theta"]
        z = r(theta - np.max(theta, axis=1, keepdims=True))
        ls = r(z - r(np.log(ops.fn_sum(r(np.exp(z)), 1))))
        return r(-y - r(r(np.exp(ls)) * ops.fn_sum(-y, 1)))

    def loss(v, fused):
        y, theta = v["y"], v["theta"]
        if fused:
            z = r(theta - np.max(theta, axis=1, keepdims=True))
            lp = r(z - r(np.log(ops.fn_sum(r(np.exp(z)), 1))))
        else:
            lp = r(np.log(softmax(theta, "div")))
        return r(-ops.fn_sum(r(np.where(y == 0, 0, y * lp)), 1))

    return {
        "h: two-branch (spec's model)": ("h", lambda v: sig_stable(c(v)["a"])),
        "h: 1 / (1 + exp(-a))": ("h", lambda v: sig_naive(c(v)["a"])),
        "sigmoid': h - h*h (spec)": ("sp", lambda v: (lambda h: r(h - r(h * h)))(sig_stable(c(v)["a"]))),
        "sigmoid': h * (1 - h)": ("sp", lambda v: (lambda h: r(h * r(one - h)))(sig_stable(c(v)["a"]))),
        "sigmoid': sigmoid(a) * sigmoid(-a)": ("sp", lambda v: r(sig_stable(c(v)["a"]) * sig_stable(-c(v)["a"]))),
        "sigmoid': naive h, h * (1 - h)": ("sp", lambda v: (lambda h: r(h * r(one - h)))(sig_naive(c(v)["a"]))),
        "softmax: exp(z) / sum (spec)": ("yhat", lambda v: softmax(c(v)["theta"], "div")),
        "softmax: exp(z) * (1 / sum)": ("yhat", lambda v: softmax(c(v)["theta"], "recip")),
        "softmax: exp(log_softmax)": ("yhat", lambda v: softmax(c(v)["theta"], "lse")),
        "dL/dtheta: yhat - y (spec)": ("g", lambda v: r(softmax(c(v)["theta"], "div") - c(v)["y"])),
        "dL/dtheta: exp(log_softmax) - y": ("g", lambda v: r(softmax(c(v)["theta"], "lse") - c(v)["y"])),
        "dL/dtheta: reverse mode, fused loss": ("g", lambda v: dtheta_fused_ad(c(v))),
        "dL/dtheta: reverse mode, log(softmax)": ("g", lambda v: dtheta_composed_ad(c(v))),
        "dL/dtheta: reverse mode, log(s / w), jax": ("g", lambda v: dtheta_composed_ad_jax(c(v))),
        "L: log_softmax (fused)": ("L", lambda v: loss(c(v), True)),
        "L: log(softmax) (composed, where finite)": ("L", lambda v: loss(c(v), False)),
    }


DEFINITIONS = [("h", "sigmoid(a)"), ("sp", "h - h*h"), ("yhat", "softmax(theta, axis=1)"), ("g", "yhat - y"),
               ("L", "-sum(y * log(yhat), axis=1)")]


def exact_values(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h = sigmoid64(v["a"])
    theta, y = v["theta"], v["y"]
    z = theta - theta.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1, keepdims=True))
    yhat = np.exp(z - lse)
    return {"h": h, "sp": sigmoid64(v["a"]) * sigmoid64(-v["a"]), "yhat": yhat, "g": yhat - y,
            "L": -(np.where(y == 0, 0, y * (z - lse))).sum(1, keepdims=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "form_factors.txt"))
    args = ap.parse_args(argv)
    policy = load_spec(ROOT / "spec" / "two_layer_sigmoid_xent.yaml").tolerance
    lines = [f"Error of correct forms relative to the spec-form bound B (conformance/bounds.py), {args.rows} random "
             "rows per dtype (k = 5 classes, one-hot or soft labels, logit spreads 0.5 to 12 plus an unlikely class).",
             f"{'form':44s}{'dtype':>10s}{'max err/B':>11s}{'q 0.9999':>10s}{'> 2B':>9s}{'> 3B':>8s}"]
    for dtype in DTYPES:
        rng = np.random.default_rng(7)
        v = rows(rng, args.rows, dtype)
        b, exprs = bounds_for(DEFINITIONS, v, dtype, policy)
        exact = exact_values(v)
        for label, (name, fn) in forms(dtype).items():
            with np.errstate(all="ignore"):
                got = fn(v).astype(np.float64)
                bound = b.bound(exprs[name])
                ok = np.isfinite(got)
                ratio = np.abs(got - exact[name])[ok] / np.broadcast_to(bound, got.shape)[ok]
            ratio = np.where(np.isnan(ratio), 0.0, ratio)
            lines.append(f"{label:44s}{dtype:>10s}{ratio.max():>11.3f}{np.quantile(ratio, 0.9999):>10.3f}"
                         f"{int(np.sum(ratio > 2)):>9d}{int(np.sum(ratio > 3)):>8d}"
                         + ("" if ok.all() else f"   ({int((~ok).sum())} non-finite, left out)"))
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
