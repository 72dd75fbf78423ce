"""Small numpy backends of the seed network for the accuracy tests: correct variants and seeded faults.

Each backend is a hand-written forward and backward pass of the two-layer
sigmoid network (the seed spec), speaking only the backend contract. What
varies is one :class:`Recipe`: the order and width of accumulation, the
association of the matrix chains, the sigmoid and softmax formulas, fused or
composed loss, the form of sigmoid'. Every correct recipe is a way people
really write this network; every faulty one is a mistake people really make.

The policy must pass every correct recipe everywhere (no false alarm) and flag
every faulty one where its fault shows (detection). The backends are
deliberately plain numpy: each operation is rounded to the storage dtype,
sums and products accumulate in the recipe's accumulation dtype, in the
recipe's order.

Column layout: the network is the transpose of the row layout, so the
backend transposes the vector inputs, computes in rows and transposes the
results back (Jacobians: numerator <-> denominator layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Mapping

import numpy as np

from conformance.backend import Backend, NotSupported, Request, numpy_dtype

__all__ = ["Recipe", "VariantBackend", "CORRECT", "FAULTS", "recipe_backend", "target"]

SEED_MODEL = "two_layer_sigmoid_xent"


@dataclass(frozen=True)
class Recipe:
    """How one implementation computes the network.

    compute   (claimed, actual) dtype pairs: when the request names ``claimed``, compute in
              ``actual`` and return the result cast to ``claimed`` (the fault "computing in float32
              while claiming float64"); other dtypes are computed as requested
    acc       accumulation dtype of sums and products: "spec" (float32 for float16/bfloat16,
              else the dtype), "float64", or fault "storage" (the storage dtype itself: float16 sums
              accumulated in float16, bfloat16 in bfloat16, against the spec's declared float32)
    order     summation order inside sums and products: "blas" (numpy/BLAS), "reverse"
              (sequential, last term first) or "pairwise" (recursive halving)
    sigmoid   "stable" (two branches on exp(-|a|)), "naive" (1 / (1 + exp(-a))),
              fault "expratio" (exp(a) / (1 + exp(a))), fault "tanh" (0.5 * (1 + tanh(a / 2)), the
              textbook identity, which cancels for a << 0), fault "oneminus" (1 - 1 / (1 + exp(a)), which
              cancels there too)
    dsigmoid  sigmoid' as "h-hh" (h - h*h), "h(1-h)" or "s(a)s(-a)" (sigmoid(a) * sigmoid(-a));
              "chain3" multiplies dL/dh by h and then by (1 - h), one rounding more than the spec
    softmax   "shift-div" (exp(x - max) / sum), "shift-recip" (exp(x - max) * (1 / sum)),
              "exp-lse" (exp(x - logsumexp(x))), fault "noshift" (exp(x) / sum(exp(x)))
    loss      "fused" (log_softmax), "composed" (log(softmax)), fault "eps" (log(yhat + 1e-7))
    backward  "closed" (yhat - y chained through the closed forms), "autodiff" (the reverse-mode
              graph of the fused loss: -y + exp(log_softmax) * sum(y)), "autodiff-composed" (the
              reverse-mode graph of log(softmax): g = -y / yhat, then yhat * (g - sum(g * yhat)), as
              torch does), "autodiff-composed-sw" (the same with softmax differentiated as s / w, as
              jax does: yhat is divided out and s / w recomputed)
    assoc     "left" (the spec's association) or "right" (matrix chains multiplied right to left,
              weight gradients as sums of per-sample outer products)
    bias      "separate" (round x W, then add b), "fused" (add b inside the accumulator, last) or
              "first" (the accumulator starts at b and the products are added one by one, as gemm with
              beta = 1, torch.addmm and nn.Linear do)
    fma       every matrix product accumulated sequentially with fused multiply-add (one rounding per
              step, s = fl(a_k b_k + s)), from 0 or from the bias
    perturb   fault: relative error put into one gradient (dL/dx)
    store     "nearest" (results converted to the requested dtype by rounding to nearest), fault "truncate"
              (with ``compute`` wider: converted rounding toward zero, as a truncating bfloat16 store does;
              within every bound, biased over many components)
    """

    compute: tuple[tuple[str, str], ...] = ()
    acc: str = "spec"
    order: str = "blas"
    sigmoid: str = "stable"
    dsigmoid: str = "h-hh"
    softmax: str = "shift-div"
    loss: str = "fused"
    backward: str = "closed"
    assoc: str = "left"
    bias: str = "separate"
    fma: bool = False
    perturb: float = 0.0
    store: str = "nearest"


class _Arith:
    """Operations of one dtype: every result rounded to the storage dtype, reductions in the accumulator."""

    def __init__(self, dtype: str, recipe: Recipe) -> None:
        self.name = dtype
        self.dt = numpy_dtype(dtype)
        narrow = dtype in ("float16", "bfloat16")
        if recipe.acc == "float64":
            self.acc = np.dtype(np.float64)
        elif recipe.acc == "storage":
            self.acc = self.dt
        else:
            self.acc = np.dtype(np.float32) if narrow else self.dt
        self.order = recipe.order
        self.fma = recipe.fma

    def r(self, x: Any) -> np.ndarray:
        return np.asarray(x).astype(self.dt)

    def c(self, v: float) -> np.ndarray:
        return self.r(np.float64(v))

    # ---------------------------------------------------------------- reductions
    def _reduce_terms(self, terms: list[np.ndarray]) -> np.ndarray:
        """Sum a list of equally shaped accumulator-dtype arrays in the recipe's order."""
        if self.order == "reverse":
            s = terms[-1]
            for t in reversed(terms[:-1]):
                s = (s + t).astype(self.acc)
            return s
        if self.order == "pairwise":
            while len(terms) > 1:
                nxt = [(terms[i] + terms[i + 1]).astype(self.acc) for i in range(0, len(terms) - 1, 2)]
                if len(terms) % 2:
                    nxt.append(terms[-1])
                terms = nxt
            return terms[0]
        s = terms[0]
        for t in terms[1:]:
            s = (s + t).astype(self.acc)
        return s

    def matmul(self, A: np.ndarray, B: np.ndarray, add: np.ndarray | None = None,
               first: np.ndarray | None = None) -> np.ndarray:
        """A @ B, rounded once to the dtype; ``add`` is added inside the accumulator after the products,
        ``first`` initialises the accumulator (the products are then added to it one by one)."""
        a, b = A.astype(self.acc), B.astype(self.acc)
        if self.fma:
            s = self._fma_products(a, b, first)
        elif first is not None:
            s = np.broadcast_to(first, (a.shape[0], b.shape[1])).astype(self.acc)
            for k in range(a.shape[1]):
                s = (s + (a[:, k:k + 1] * b[k:k + 1, :]).astype(self.acc)).astype(self.acc)
        elif self.order == "blas":
            s = (a @ b).astype(self.acc)
        else:
            terms = [(a[:, k:k + 1] * b[k:k + 1, :]).astype(self.acc) for k in range(a.shape[1])]
            s = self._reduce_terms(terms)
        if add is not None:
            s = (s + add.astype(self.acc)).astype(self.acc)
        return self.r(s)

    def _fma_products(self, a: np.ndarray, b: np.ndarray, first: np.ndarray | None) -> np.ndarray:
        """Sequential fused multiply-add in the accumulator: s = fl(a_ik b_kj + s) for k = 1..K, one
        correct rounding per step (computed exactly in rationals, then rounded)."""
        n, m = a.shape[0], b.shape[1]
        start = np.zeros((n, m), self.acc) if first is None else np.broadcast_to(first, (n, m)).astype(self.acc)
        out = np.empty((n, m), self.acc)
        for i in range(n):
            for j in range(m):
                s = float(start[i, j])
                for k in range(a.shape[1]):
                    x, w = float(a[i, k]), float(b[k, j])
                    if math.isfinite(x) and math.isfinite(w) and math.isfinite(s):
                        s = _round_rational(Fraction(x) * Fraction(w) + Fraction(s), self.acc)
                    else:  # no exact value to round: inf or NaN as the plain operations give
                        s = float(self.acc.type(s) + self.acc.type(x) * self.acc.type(w))
                out[i, j] = s
        return out

    def sum(self, X: np.ndarray, axis: int | None) -> np.ndarray:
        x = X.astype(self.acc)
        if axis is None:
            x = x.reshape(1, -1)
            axis = 1
        if self.order == "blas":
            return self.r(np.sum(x, axis=axis, keepdims=True))
        terms = [np.take(x, [i], axis=axis) for i in range(x.shape[axis])]
        return self.r(self._reduce_terms(terms))

    # ---------------------------------------------------------------- elementwise
    def exp(self, x: np.ndarray) -> np.ndarray:
        return self.r(np.exp(x))

    def log(self, x: np.ndarray) -> np.ndarray:
        return self.r(np.log(x))


#: (significand bits, smallest normal exponent) of the accumulation dtypes the FMA emulation rounds to
_BINARY = {np.dtype(np.float64): (53, -1022), np.dtype(np.float32): (24, -126)}


def _round_rational(q: Fraction, dtype: np.dtype) -> float:
    """``q`` correctly rounded (to nearest, ties to even, with gradual underflow) to ``dtype``."""
    if q == 0:
        return 0.0
    p, emin = _BINARY[dtype]
    sign, num, den = (-1 if q < 0 else 1), abs(q.numerator), q.denominator
    e = num.bit_length() - den.bit_length()  # 2**e <= |q| < 2**(e + 1), after the correction below
    if (num << max(-e, 0)) < (den << max(e, 0)):
        e -= 1
    scale = max(e, emin) - (p - 1)  # the exponent of one unit in the last place
    if scale >= 0:
        den <<= scale
    else:
        num <<= -scale
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    try:
        return float(dtype.type(sign * math.ldexp(m, scale)))
    except OverflowError:
        return sign * math.inf


def _sigmoid(ar: _Arith, a: np.ndarray, form: str) -> np.ndarray:
    one = ar.c(1.0)
    if form == "stable":
        e = ar.exp(-np.abs(a))
        d = ar.r(one + e)
        return np.where(a >= 0, ar.r(one / d), ar.r(e / d)).astype(ar.dt)
    if form == "naive":
        return ar.r(one / ar.r(one + ar.exp(-a)))
    if form == "expratio":
        e = ar.exp(a)
        return ar.r(e / ar.r(one + e))
    if form == "tanh":
        t = ar.r(np.tanh(ar.r(a / ar.c(2.0)).astype(np.float64)))
        return ar.r(ar.c(0.5) * ar.r(one + t))
    if form == "oneminus":  # 1 - sigmoid(-a), the other textbook rewrite that cancels for a << 0
        return ar.r(one - ar.r(one / ar.r(one + ar.exp(a))))
    raise ValueError(form)


def _softmax_parts(ar: _Arith, theta: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """(softmax, log_softmax) along axis 1, by the recipe's formula."""
    if form == "noshift":
        e = ar.exp(theta)
        s = ar.sum(e, 1)
        return ar.r(e / s), ar.r(theta - ar.log(s))
    z = ar.r(theta - np.max(theta, axis=1, keepdims=True))
    e = ar.exp(z)
    s = ar.sum(e, 1)
    ls = ar.r(z - ar.log(s))
    if form == "shift-div":
        return ar.r(e / s), ls
    if form == "shift-recip":
        return ar.r(e * ar.r(ar.c(1.0) / s)), ls
    if form == "exp-lse":
        return ar.exp(ls), ls
    raise ValueError(form)


def _below_theta(ar: _Arith, recipe: Recipe, g: np.ndarray, x: np.ndarray, h: np.ndarray, W1: np.ndarray,
                 W2: np.ndarray, sp: np.ndarray) -> dict[str, np.ndarray]:
    """The gradients below the logits, chained from ``g`` = dL/dtheta in the recipe's association."""
    n = x.shape[0]
    one = ar.c(1.0)
    gh = ar.matmul(g, W2.T)
    ga = ar.r(ar.r(gh * h) * ar.r(one - h)) if recipe.dsigmoid == "chain3" else ar.r(gh * sp)
    if recipe.assoc == "right":
        # per sample: g_i @ ((W2.T * sp_i) @ W1.T), and weight gradients as sums of outer products
        gx = np.concatenate([ar.matmul(g[i:i + 1], ar.matmul(ar.r(W2.T * sp[i:i + 1]), W1.T)) for i in range(n)])
        gW1 = ar.sum(np.stack([ar.r(x[i:i + 1].T * ga[i:i + 1]) for i in range(n)], axis=0).reshape(n, -1), 0)
        gW1 = gW1.reshape(W1.shape)
        gW2 = ar.sum(np.stack([ar.r(h[i:i + 1].T * g[i:i + 1]) for i in range(n)], axis=0).reshape(n, -1), 0)
        gW2 = gW2.reshape(W2.shape)
    else:
        gx = ar.matmul(ga, W1.T)
        gW1 = ar.matmul(x.T, ga)
        gW2 = ar.matmul(h.T, g)
    if recipe.perturb:
        gx = ar.r(gx.astype(np.float64) * (1.0 + recipe.perturb))
    return {"dL/dh": gh, "dL/da": ga, "dL/dx": gx, "dL/dW1": gW1, "dL/db1": ar.sum(ga, 0), "dL/dW2": gW2,
            "dL/db2": ar.sum(g, 0)}


def forward_backward(inputs: Mapping[str, np.ndarray], dtype: str, recipe: Recipe) -> dict[str, np.ndarray]:
    """Every forward value and gradient of the seed network in the row layout (n x features)."""
    ar = _Arith(dict(recipe.compute).get(dtype, dtype), recipe)
    x, W1, b1, W2, b2, y = (ar.r(inputs[k]) for k in ("x", "W1", "b1", "W2", "b2", "y"))
    n = x.shape[0]
    one = ar.c(1.0)

    def affine(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        if recipe.bias == "fused":
            return ar.matmul(X, W, add=np.broadcast_to(b, (X.shape[0], W.shape[1])))
        if recipe.bias == "first":
            return ar.matmul(X, W, first=b)
        return ar.r(ar.matmul(X, W) + b)

    a = affine(x, W1, b1)
    h = _sigmoid(ar, a, recipe.sigmoid)
    theta = affine(h, W2, b2)
    yhat, ls = _softmax_parts(ar, theta, recipe.softmax)
    if recipe.loss == "fused":
        logp = ls
    elif recipe.loss == "composed":
        logp = ar.log(yhat)
    elif recipe.loss == "eps":
        logp = ar.log(ar.r(yhat + ar.c(1e-7)))
    else:
        raise ValueError(recipe.loss)
    L = ar.r(-ar.sum(ar.r(y * logp), None))

    # backward
    ysum = ar.sum(y, 1)
    general = ar.r(ar.r(yhat * ysum) - y)
    if recipe.backward == "autodiff":
        # reverse mode through -sum(y * log_softmax(theta)): grad_ls = -y; grad_theta = grad_ls - exp(ls) * sum(grad_ls)
        g_ls = -y
        g = ar.r(g_ls - ar.r(ar.exp(ls) * ar.sum(g_ls, 1)))
        general = g
    elif recipe.backward == "autodiff-composed":
        g_yhat = ar.r(-y / yhat)
        g = ar.r(yhat * ar.r(g_yhat - ar.sum(ar.r(g_yhat * yhat), 1)))
        general = g
    elif recipe.backward == "autodiff-composed-sw":
        zz = ar.r(theta - np.max(theta, axis=1, keepdims=True))
        s_ = ar.exp(zz)
        w = ar.sum(s_, 1)
        g_yhat = ar.r(-y / yhat)
        g = ar.r(ar.r(ar.r(g_yhat / w) * s_) - ar.r(s_ * ar.r(ar.sum(ar.r(g_yhat * s_), 1) / ar.r(w * w))))
        general = g
    else:
        g = ar.r(yhat - y)
    if recipe.dsigmoid == "h-hh":
        sp = ar.r(h - ar.r(h * h))
    elif recipe.dsigmoid == "h(1-h)":
        sp = ar.r(h * ar.r(one - h))
    elif recipe.dsigmoid == "s(a)s(-a)":
        sp = ar.r(h * _sigmoid(ar, -a, recipe.sigmoid))
    elif recipe.dsigmoid == "chain3":
        sp = ar.r(h * ar.r(one - h))
    else:
        raise ValueError(recipe.dsigmoid)
    out = {"a": a, "h": h, "theta": theta, "yhat": yhat, "L": L.reshape(1, 1), "dL/dtheta": g,
           "dL/dtheta.general": general}
    below = _below_theta(ar, recipe, g, x, h, W1, W2, sp)
    out.update(below)
    # the gradients for any labels (the spec's ".general" identities): the same chain from the general
    # dL/dtheta (the same arrays where the recipe's dL/dtheta already is the general one, as in autodiff)
    below_general = below if general is g else _below_theta(ar, recipe, general, x, h, W1, W2, sp)
    out.update({f"{k}.general": v for k, v in below_general.items()})
    if n == 1:
        D = np.diag(sp.reshape(-1)).astype(ar.dt)
        if recipe.assoc == "right":
            out["dL/dx.chain"] = ar.matmul(g, ar.matmul(W2.T, ar.matmul(D, W1.T)))
        else:
            out["dL/dx.chain"] = ar.matmul(ar.matmul(ar.matmul(g, W2.T), D), W1.T)
        out["dh/da"] = D
        if recipe.assoc == "right":
            eye = np.eye(yhat.shape[1]).astype(ar.dt)
            out["dyhat/dtheta"] = ar.r(yhat.T * ar.r(eye - yhat))  # J_ij = yhat_i (delta_ij - yhat_j)
        else:
            out["dyhat/dtheta"] = ar.r(np.diag(yhat.reshape(-1)).astype(ar.dt) - ar.matmul(yhat.T, yhat))
        out["da/dx"] = W1.T.copy()
    return out


_COLUMN_VECTORS = ("x", "b1", "b2", "y")


def _truncate(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``x`` converted to ``dt`` rounding toward zero: where rounding to nearest went up in magnitude, one ulp
    back (the magnitude bits of a nonzero finite float step toward zero when decremented)."""
    y = x.astype(dt)
    wide = x.astype(np.float64)
    up = np.isfinite(wide) & np.isfinite(y.astype(np.float64)) & (np.abs(y.astype(np.float64)) > np.abs(wide))
    if up.any():
        bits = y.view(np.dtype(f"u{dt.itemsize}")).copy()
        bits[up] -= 1
        y = bits.view(dt)
    return y


class VariantBackend(Backend):
    """A hand-written forward/backward of the seed network following :attr:`recipe`."""

    name: ClassVar[str] = "variant"
    description: ClassVar[str] = "hand-written numpy forward/backward of the seed network"
    recipe: ClassVar[Recipe] = Recipe()

    def evaluate(self, request: Request) -> Mapping[str, Any]:
        if request.model.name != SEED_MODEL:
            raise NotSupported(f"only the seed network ({SEED_MODEL}) is hand-written here")
        column = request.model.layout == "column"
        inputs = {k: (np.asarray(v).T if column and k in _COLUMN_VECTORS else np.asarray(v))
                  for k, v in request.inputs.items()}
        with np.errstate(all="ignore"):
            got = forward_backward(inputs, request.dtype, self.recipe)
        out: dict[str, Any] = {}
        claimed = numpy_dtype(request.dtype)
        for q in request.quantities:
            if q.id not in got:
                out[q.id] = NotSupported(f"{q.id} is not hand-written")
                continue
            v = got[q.id]
            if column and q.id not in ("dL/dW1", "dL/dW2", "dL/dW1.general", "dL/dW2.general", "L"):
                v = v.T  # vectors transpose; numerator-layout Jacobians become denominator-layout
            v = np.ascontiguousarray(v)
            out[q.id] = _truncate(v, claimed) if self.recipe.store == "truncate" else v.astype(claimed)
        return out


def recipe_backend(name: str, recipe: Recipe, description: str = "") -> type[VariantBackend]:
    return type(name, (VariantBackend,), {"name": name, "recipe": recipe, "description": description or name})


#: Correct implementations: each differs from the spec's evaluation in one or more ways people really do.
CORRECT: dict[str, Recipe] = {
    "spec-order": Recipe(),
    "reverse-sum": Recipe(order="reverse", dsigmoid="h(1-h)"),
    "pairwise-sum": Recipe(order="pairwise", assoc="right"),
    "wide-acc": Recipe(acc="float64", bias="fused", softmax="shift-recip"),
    "naive-sigmoid": Recipe(sigmoid="naive", dsigmoid="s(a)s(-a)", order="reverse"),
    "autodiff-fused": Recipe(backward="autodiff", softmax="exp-lse", dsigmoid="h(1-h)"),
    "composed-loss": Recipe(loss="composed", assoc="right", order="reverse"),
    "right-assoc": Recipe(assoc="right", bias="fused", sigmoid="naive"),
    "autodiff-composed": Recipe(backward="autodiff-composed", loss="composed", dsigmoid="chain3"),
    "autodiff-composed-sw": Recipe(backward="autodiff-composed-sw", loss="composed", order="pairwise"),
    "bias-first": Recipe(bias="first"),
    "bias-first-fma": Recipe(bias="first", fma=True),
    "wide-compute": Recipe(compute=(("float16", "float32"), ("bfloat16", "float32"), ("float32", "float64")),
                           acc="float64"),
}

#: Seeded faults, each with the quantity family it should break.
FAULTS: dict[str, Recipe] = {
    "float32-as-float64": Recipe(compute=(("float64", "float32"),)),
    "float16-as-float32": Recipe(compute=(("float32", "float16"),)),
    "log-eps": Recipe(loss="eps"),
    "rel-1e-10-dLdx": Recipe(perturb=1e-10),
    "softmax-noshift": Recipe(softmax="noshift"),
    "sigmoid-expratio": Recipe(sigmoid="expratio"),
    "sigmoid-tanh": Recipe(sigmoid="tanh"),
    "sigmoid-oneminus": Recipe(sigmoid="oneminus"),
    # sequential, so that every addition is rounded to the 16-bit accumulator (no BLAS kernel widens it)
    "16bit-accumulation": Recipe(acc="storage", order="reverse"),
    "truncating-stores": Recipe(compute=(("float16", "float32"), ("bfloat16", "float32")), store="truncate"),
}

_CLASSES: dict[str, type[VariantBackend]] = {}
for _name, _recipe in {**CORRECT, **FAULTS}.items():
    _cls_name = "V_" + _name.replace("-", "_").replace("(", "").replace(")", "")
    _CLASSES[_name] = recipe_backend(_name, _recipe)
    globals()[_cls_name] = _CLASSES[_name]


def target(name: str) -> str:
    """The ``module:attr`` backend target of a named variant (what ``Run`` takes)."""
    return f"{__name__}:V_" + name.replace("-", "_").replace("(", "").replace(")", "")
