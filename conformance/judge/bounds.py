"""Condition-aware tolerances: a running error bound carried through each expression tree.

The question a verdict answers is "could a correct floating-point evaluation
of this identity, in this dtype, produce this result?". A fixed rtol/atol
cannot answer it: correct float32 gradients sit thousands of ulps from the
correctly rounded value on cancellation-heavy components, while a silent
float32 computation in a float64 backend passes loose defaults. So the bound
is derived from the computation itself (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., §2.2, §3.1, §3.3, §3.5, ch. 4; Wilkinson's
running error analysis). docs/tolerances.md states the model and derives each
rule; in short:

* every node carries ``e >= |computed - exact|``, propagated through the
  absolute values of the local derivatives (worst case over the perturbation
  box for the nonlinear primitives, so the bound is not merely first order);
* every stored result adds its own rounding: ``u |v|``, u = 2**-p of the dtype;
* every inner product or sum of k terms adds ``gamma_k(u_acc) |A| |B|``,
  gamma_k = k u / (1 - k u), with the unit roundoff of the accumulation dtype
  (float32 for float16 and bfloat16, as the spec says); valid for any order
  of summation, blocking or fused multiply-add; ``A @ B + c`` is one sum of
  k + 1 terms, gamma_{k+1} (|A||B| + |c|), wherever the bias is added;
* products are bounded with the absolute *chains* |A||B||C| (:meth:`ErrorBounds.absval`),
  so that the bound does not depend on how a backend associates a product of matrices;
* every elementary function adds ``c u |v|``, c from the spec under the primitive's
  budget key (:mod:`conformance.primitives`);
* every result that may underflow, or be flushed to zero by an FTZ backend, adds
  eta = 2**emin; a subnormal input may be read as 0 (DAZ): its error is |x|;
* a logarithm whose argument may have underflowed is bounded through the
  smallest positive number of the dtype (a finite log needs a positive argument);
  log(softmax) is bounded for both its composed and its fused (log_softmax) form;
* the gradient of the composed cross-entropy, ``yhat - y``, gets the explicit
  error of reverse mode through log(softmax), which divides by the probabilities
  and so is not within a constant factor of the closed form's bound; its Hessians and Hessian-vector products
  (``bound(expr, kind)`` with kind ``hessian`` or ``hvp``) get the explicit error of differentiating it twice.

A component passes when ``|computed - exact| <= safety_factor * e + eta``; the
safety factor (3 in the seed spec) covers the correct evaluation forms other
than the spec's own (docs/tolerances.md, "Why 3"). Exact values (from the
oracle) stand in for the computed ones inside the bound; the difference is of
second order in u.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from conformance.expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose
from conformance.formats import FloatFormat, get_format
from conformance.judge import xent_allowance
from conformance.judge.axes import diag, flat, matrix_axis, swap, terms
from conformance.primitives import primitive
from conformance.spec.model import Layout, TolerancePolicy

__all__ = ["ErrorBounds", "PRIMITIVE_RULES", "SECOND_ORDER_KINDS", "gamma", "forward_bounds", "expression_bound"]

#: The quantity kinds whose bound, for a composed cross-entropy, includes differentiating the loss twice.
SECOND_ORDER_KINDS = frozenset({"hessian", "hvp"})

_INF = np.inf


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u) (inf when k u >= 1)."""
    ku = k * u
    return ku / (1.0 - ku) if ku < 1 else _INF


class ErrorBounds:
    """Bounds for one case in one dtype: ``bound(expr)`` for any sub-expression of the layout's trees.

    ``nodes`` are the oracle's values (float64 approximations of the exact
    values) of every sub-expression, keyed by the expression.
    """

    def __init__(self, layout: Layout, nodes: Mapping[Expr, np.ndarray], inputs: Mapping[str, np.ndarray],
                 dtype: str, policy: TolerancePolicy) -> None:
        self.layout = layout
        self.nodes = nodes
        self.fmt: FloatFormat = get_format(dtype)
        self.acc: FloatFormat = get_format(policy.accumulate.get(dtype, dtype))
        self.policy = policy
        self.u = self.fmt.u
        self.ua = self.acc.u
        self.eta = self.fmt.eta
        self.wider_acc = self.acc.p > self.fmt.p
        self._inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
        self._cache: dict[Expr, np.ndarray] = {}
        self._abs_cache: dict[Expr, np.ndarray] = {}
        self._memo: dict[str, np.ndarray] = {}
        self._names: dict[str, np.ndarray] = {}
        self._xent = xent_allowance.composed_cross_entropy(layout)
        self._second = False  # bounding a second-order quantity (see bound's kind)
        self._second_cache: dict[Expr, np.ndarray] = {}
        for d in layout.forward:
            self._names[d.name] = self.bound(d.expr)

    # ------------------------------------------------------------------ values
    def value(self, e: Expr) -> np.ndarray:
        if isinstance(e, Name) and e.id in self._inputs:
            return self._inputs[e.id]
        if isinstance(e, Name):
            return self.value(self.layout.definitions[e.id])
        if isinstance(e, Const):
            return np.full((1, 1), float(e.value))
        try:
            return self.nodes[e]
        except KeyError:
            raise KeyError(f"the oracle has no value for sub-expression {e!r}") from None

    # ------------------------------------------------------------------ bounds
    def bound(self, e: Expr, kind: str | None = None) -> np.ndarray:
        """An upper bound on |computed - exact| for each component of ``e`` in this dtype.

        ``kind``: the quantity kind ``e`` is the closed form of (``"hessian"``, ``"gradient"``...). A second-order
        quantity (``hessian``, ``hvp``) of a loss written as the composed cross-entropy is bounded with the error
        that differentiating that loss twice adds (:meth:`_second_order_allowance`); the same sub-expression
        elsewhere (the softmax Jacobian of a first-order quantity is the same tree) keeps its own bound, so the
        two contexts have separate caches. Sub-expressions inherit the context of the quantity being bounded."""
        if kind in SECOND_ORDER_KINDS and self._xent is not None and not self._second:
            self._second = True
            try:
                return self.bound(e)
            finally:
                self._second = False
        cache = self._second_cache if self._second else self._cache
        if e in cache:
            return cache[e]
        with np.errstate(all="ignore"):
            b = self._bound(e)
        b = np.where(np.isnan(b), _INF, b)
        cache[e] = b
        return b

    def _store(self, v: np.ndarray) -> np.ndarray:
        """Rounding of one stored result, with the underflow term."""
        return self.u * np.abs(v) + self.eta

    def _bound(self, e: Expr) -> np.ndarray:
        u, eta = self.u, self.eta
        if isinstance(e, Name):
            if e.id in self._inputs:
                # inputs are exact, except that a backend which treats subnormal operands as zero
                # (denormals-are-zero, as JAX on CPU does) reads a subnormal input x as 0: error |x|
                x = self._inputs[e.id]
                return np.where((x != 0) & (np.abs(x) < eta), np.abs(x), 0.0)
            return self._names[e.id]
        if isinstance(e, Const):
            return np.full((1, 1), 0.0 if _representable(e.value, self.fmt) else u * abs(float(e.value)))
        if isinstance(e, Neg):
            return self.bound(e.operand)
        if isinstance(e, Transpose):
            return swap(self.bound(e.operand))
        v = self.value(e)
        av = np.abs(v)
        if isinstance(e, Pow):
            x, ex = np.abs(self.value(e.base)), self.bound(e.base)
            if e.exponent == 0:
                return np.zeros_like(av)
            # repeated multiplication, one rounding per product
            acc_v, acc_e = x, ex
            for _ in range(e.exponent - 1):
                acc_e = x * acc_e + acc_v * ex + acc_e * ex + self.u * (acc_v * x) + eta
                acc_v = acc_v * x
            return acc_e
        if isinstance(e, BinOp):
            return self._binop(e, v, av)
        if isinstance(e, Call):
            return self._call(e, v, av)
        raise TypeError(e)  # pragma: no cover

    def absval(self, e: Expr) -> np.ndarray:
        """The product chain of ``e`` evaluated on absolute values: |A| |B| for A @ B, |A| o |B| for A * B,
        through transposes, negations and Diag; |value| for anything else (sums, functions, names).

        Why: a backend may associate a chain of products differently from the spec
        (g @ (W2.T @ Diag(s) @ W1.T) instead of ((g @ W2.T) * s) @ W1.T). Bounding every
        product's rounding and propagated error with these absolute chains instead of the
        absolute value of the exact intermediate makes the bound the same for every
        association (|A||B||C| does not depend on where the parentheses are), at the price of
        ignoring cancellation inside a product chain. Higham, *Accuracy and Stability*, §3.5.
        """
        if e in self._abs_cache:
            return self._abs_cache[e]
        if isinstance(e, BinOp) and e.op == "@":
            out = self.absval(e.left) @ self.absval(e.right)
        elif isinstance(e, BinOp) and e.op == "*":
            out = _times(self.absval(e.left), self.absval(e.right))
        elif isinstance(e, Transpose):
            out = swap(self.absval(e.operand))
        elif isinstance(e, Neg):
            out = self.absval(e.operand)
        elif isinstance(e, Call) and e.fn == "Diag":
            out = diag(self.absval(e.args[0]))
        else:
            out = np.abs(self.value(e))
        self._abs_cache[e] = out
        return out

    def _binop(self, e: BinOp, v: np.ndarray, av: np.ndarray) -> np.ndarray:
        x, y = self.value(e.left), self.value(e.right)
        ex, ey = self.bound(e.left), self.bound(e.right)
        if e.op in "+-":
            # a sum is exact when it underflows (gradual underflow), but flushed to zero by FTZ backends
            biased = _biased_product(e)
            out = self._biased_product_bound(*biased, av) if biased else ex + ey + self.u * av + self.eta
            if self._xent is not None and xent_allowance.is_xent_gradient(self._xent, e):
                out = out + self._reverse_mode_allowance()
            if self._second and xent_allowance.is_softmax_jacobian(self._xent, e):
                out = out + xent_allowance.hessian_allowance(self, self._xent, e)
            return out
        if e.op == "*":
            # a factor that is exactly 0 (an exact zero input, error 0) makes the product exactly 0
            # whatever the other factor's error, unless that factor is not finite, and then the
            # product is NaN, which the comparison rejects on its own: 0 * inf counts as 0 here
            ax, ay = self.absval(e.left), self.absval(e.right)
            out = _times(ay, ex) + _times(ax, ey) + _times(ex, ey) + self.u * self.absval(e) + self.eta
            if self._second:
                tangent = xent_allowance.hvp_tangent(self._xent, e)
                if tangent is not None:
                    out = out + xent_allowance.hvp_allowance(self, self._xent, tangent)
            return out
        if e.op == "/":
            ay = np.abs(y)
            denom = ay - ey
            out = (ex + av * ey) / denom + self._store(v)
            return np.where(denom > 0, out, _INF)
        if e.op == "@":
            k = x.shape[-1]
            ax, ay = self.absval(e.left), self.absval(e.right)
            out = (_mm(ax, ey) + _mm(ex, ay) + _mm(ex, ey) + gamma(k, self.ua) * (ax @ ay)
                   + k * self.acc.eta + self.eta)
            if self.wider_acc:
                out = out + self.u * (ax @ ay)
            return out
        raise ValueError(e.op)  # pragma: no cover

    def _biased_product_bound(self, product: BinOp, term: Expr, av: np.ndarray) -> np.ndarray:
        """``A @ B + c`` (or ``- c``) as one sum of k + 1 terms, the bias being one more term: a correct
        backend may add c anywhere in the accumulation (gemm with beta = 1, torch.addmm and nn.Linear
        start from it, sequentially or with FMA). Every order is within gamma_{k+1}(u_acc) (|A||B| + |c|)
        (Higham Lemma 3.1), the spec's gamma_k |A||B| + u |v| too (Lemma 3.3); a wider accumulator may store
        A @ B in the dtype first, u |A @ B| (u |A||B| if a factor is a product chain, else no other association
        exists; |A||B| let a 16-bit accumulator pass at any width), and rounds once, u |v|."""
        k = self.value(product.left).shape[-1]
        ax, ay = self.absval(product.left), self.absval(product.right)
        ex, ey = self.bound(product.left), self.bound(product.right)
        terms = ax @ ay + self.absval(term)
        out = (_mm(ax, ey) + _mm(ex, ay) + _mm(ex, ey) + self.bound(term) + gamma(k + 1, self.ua) * terms
               + (k + 1) * self.acc.eta + self.eta)
        if self.wider_acc:
            bare = [f.operand if isinstance(f, (Transpose, Neg)) else f for f in (product.left, product.right)]
            chained = any(isinstance(f, (BinOp, Transpose, Neg)) or isinstance(f, Call) and f.fn == "Diag" for f in bare)
            out = out + self.u * (ax @ ay if chained else np.abs(self.value(product))) + self.u * av + 2 * self.eta
        return out

    def _call(self, e: Call, v: np.ndarray, av: np.ndarray) -> np.ndarray:
        """The rule of the call's primitive (:data:`PRIMITIVE_RULES`), given ``c u``, its elementary budget."""
        return PRIMITIVE_RULES[e.fn](self, e, v, av, self._budget(e.fn))

    def _budget(self, fn: str) -> float:
        """``c u`` of one evaluation of ``fn``: c from the spec under the primitive's budget key (0 without one)."""
        key = primitive(fn).budget
        return 0.0 if key is None else self.policy.elementary(key) * self.u

    def _operand(self, e: Call) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(value, error bound, |value|) of the call's one argument."""
        x = self.value(e.args[0])
        return x, self.bound(e.args[0]), np.abs(x)

    def _rule_diag(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        return diag(self.bound(e.args[0]))

    def _rule_outer(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        a, b = (_vector(self.value(x)) for x in e.args)
        ea, eb = (_vector(self.bound(x)) for x in e.args)
        return _outer(np.abs(a), eb) + _outer(ea, np.abs(b)) + _outer(ea, eb) + self._store(v)

    def _rule_exp(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        _, ex, _ = self._operand(e)
        return av * np.expm1(ex) + c * av + self.eta

    def _rule_log(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        _, ex, ax = self._operand(e)
        arg = e.args[0]
        target = self.layout.definitions.get(arg.id, arg) if isinstance(arg, Name) else arg
        if isinstance(target, Call) and target.fn == "softmax":
            return self._log_of_softmax(target, ax, ex, v, c * av) + self.eta
        return self._log(ax, ex, v) + c * av + self.eta

    def _rule_sigmoid(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        # sigmoid' is unimodal: its largest value on [x - e, x + e] is at the point nearest 0
        _, ex, ax = self._operand(e)
        dist = np.maximum(ax - ex, 0.0)
        return ex * _dsigmoid(dist) + c * av + self.eta

    def _rule_tanh(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        _, ex, ax = self._operand(e)
        dist = np.maximum(ax - ex, 0.0)
        return ex * _sech2(dist) + c * av + self.eta

    def _rule_relu(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        _, ex, _ = self._operand(e)
        return ex + self.eta

    def _rule_step(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        _, ex, ax = self._operand(e)
        return np.where(ax > ex, 0.0, 1.0)

    def _rule_sum(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        """sum and mean: the sum's gamma_{k-1} in the accumulation dtype; mean divides and rounds once more."""
        x, ex, ax = self._operand(e)
        k = terms(x, e.axis)
        s_e = _reduce(ex, e.axis)
        s_abs = _reduce(ax, e.axis)
        out = s_e + gamma(max(k - 1, 0), self.ua) * s_abs + self.eta
        if self.wider_acc:
            out = out + self.u * (s_abs if e.fn == "sum" else s_abs / k)
        if e.fn == "mean":
            out = out / k + self.u * av
        return out

    def _rule_softmax(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        x, ex, _ = self._operand(e)
        return self._softmax(x, ex, v, e.axis, c)

    def _rule_logsumexp(self, e: Call, v: np.ndarray, av: np.ndarray, c: float) -> np.ndarray:
        """logsumexp and log_softmax."""
        x, ex, _ = self._operand(e)
        return self._logsumexp_family(e.fn, x, ex, v, e.axis, c)

    def _log(self, x: np.ndarray, ex: np.ndarray, lx: np.ndarray) -> np.ndarray:
        """Propagated error of log: the largest |log t - log x| over the t a computation may hand to log.

        ``x`` is the exact argument (|.|), ``ex`` its error bound, ``lx`` = log x (the oracle's value of
        the log node: it stays finite where x itself underflows float64).

        With |t - x| <= e and e <= x/2: max(log((x + e) / x), -log((x - e) / x)) = -log1p(-e/x).
        When e is larger (the argument may have underflowed, e.g. a probability below 2**emin) the
        interval reaches 0, but a *finite* logarithm needs t > 0, and a positive number of the dtype
        is at least its smallest subnormal: t is in [max(x - e, tiny), x + e]. A t of 0 gives -inf,
        which the comparison rejects on its own (the exact value is finite).
        """
        tiny = self.fmt.tiny
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rel = np.where(x > 0, ex / x, _INF)
            regular = -np.log1p(-np.minimum(rel, 0.5))
            up = np.logaddexp(np.log(ex), lx) - lx  # log(x + e) - log(x)
            low = np.maximum(x - ex, tiny)
            down = np.maximum(lx - np.log(low), 0.0)
        out = np.where(rel <= 0.5, regular, np.maximum(up, down))
        return np.where(np.isfinite(lx), out, _INF)

    def _log_of_softmax(self, softmax: Call, x: np.ndarray, ex: np.ndarray, lx: np.ndarray,
                        own: np.ndarray) -> np.ndarray:
        """log(softmax(theta)): the composed form where it can be finite, and the fused form log_softmax.

        A correct backend may evaluate either. The fused form's bound is that of log_softmax. The
        composed form is bounded in log space (going through the probability's absolute bound and then
        log's relative blow-up is far looser): the computed probability t satisfies
        log t - log y in [-p - log1p(-rho), p + log1p(rho)] plus underflow, with p and rho from
        :meth:`_softmax_parts`. It returns a finite value only if t did not underflow to zero; then t was
        not flushed (a flush gives 0 and log(0) = -inf, which fails as non-finite on its own), so the
        underflow allowance is that of gradual underflow, half a subnormal spacing (u 2**emin) for each
        of the two roundings that can be subnormal (exp(z) and the division), and t is at least the
        smallest subnormal. It cannot be finite at all where the largest value the exponential can take
        before rounding, y exp(p) (1 + rho) times the sum (at most k), is below half the smallest
        subnormal: there only the fused form's bound applies. This keeps the loss informative
        (log(yhat + 1e-7) is caught) where the labelled class's probability underflows. ``own`` is the
        rounding error of the log itself (c u |log y|), which only the composed form commits.
        """
        theta = softmax.args[0]
        c_fused = self._budget("log_softmax")
        tv, te = self.value(theta), self.bound(theta)
        fused = self._logsumexp_family("log_softmax", tv, te, lx, softmax.axis, c_fused)
        _, p, rho, ax_ = self._softmax_parts(tv, te, softmax.axis)
        p, rho = p.reshape(lx.shape), np.broadcast_to(rho, p.shape).reshape(lx.shape)
        k = terms(tv, softmax.axis)
        tiny = self.fmt.tiny
        log_gu = np.log(2 * self.u * self.eta)  # gradual underflow: two subnormal roundings
        with np.errstate(all="ignore"):
            l1 = np.log1p(rho)
            up = np.maximum(p + l1 + np.log1p(np.exp(log_gu - (lx + p + l1))), np.log(tiny) - lx)  # t >= tiny
            lrho = np.log1p(-np.minimum(rho, 0.999))
            top = lx - p + lrho  # log of the smallest value before underflow
            r2 = np.exp(log_gu - top)
            low_log = top + np.log1p(-np.minimum(r2, 1.0))
            down = np.where((r2 < 1) & (low_log >= np.log(tiny)), p - lrho - np.log1p(-np.minimum(r2, 0.999)),
                            np.maximum(lx - np.log(tiny), 0.0))
            composed = np.maximum(up, down)
            possible = lx + p + l1 + np.log(2.0 * k) >= np.log(tiny) - np.log(2.0)  # tiny / 2 underflows in float64
        composed = np.where(np.isnan(composed), _INF, composed) + own
        return np.where(possible, np.maximum(composed, fused), fused)

    def _reverse_mode_allowance(self) -> np.ndarray:
        """The error of reverse mode through the composed loss, added to dL/dtheta (:mod:`.xent_allowance`)."""
        return xent_allowance.reverse_mode_allowance(self, self._xent)  # type: ignore[arg-type]

    def _softmax_parts(self, x: np.ndarray, ex: np.ndarray, axis: int | None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(y, log-space propagated error, relative rounding error, the reshaped axis) of softmax(x).

        Propagated, in log space: for |d_j| <= e_j, y_i(x + d) / y_i(x) = exp(d_i) / sum_j y_j exp(d_j)
        lies in [exp(-e_i) / sum_j y_j exp(e_j), exp(e_i + sum_j y_j e_j)] (Jensen for the upper end),
        so |log y_i(x + d) - log y_i(x)| <= p_i = e_i + log sum_j y_j exp(e_j). Not merely first order.
        Rounding, relative: the shift x_i - m rounds with u |x_i - m|, which exp turns into a relative
        error, as does each term of the sum (weighted by y_j); exp adds c u to the numerator and to
        the sum; the sum adds gamma_{k-1}; the division u; and >= 1/kappa of exp(log_softmax)'s (tolerances.md)."""
        ax_ = matrix_axis(axis)
        if axis is None:
            x, ex = flat(x), flat(ex)
        k = x.shape[ax_]
        z = x - np.max(x, axis=ax_, keepdims=True)
        s = np.sum(np.exp(z), axis=ax_, keepdims=True)
        y = np.exp(z) / s
        with np.errstate(over="ignore", invalid="ignore"):
            # log sum_j y_j exp(e_j) = log1p(sum_j y_j expm1(e_j)) since sum_j y_j = 1: never below 0
            p = ex + np.log1p(np.sum(y * np.expm1(np.minimum(ex, 700.0)), axis=ax_, keepdims=True))
        p = np.where(np.isnan(p), _INF, p)
        c = self._budget("softmax")
        az = np.abs(z)
        rho = self.u * (az + np.sum(y * az, axis=ax_, keepdims=True)) + 2 * c + self.u + gamma(max(k - 1, 0), self.ua)
        lse = rho + self.u * az + (self.u + self._budget("log_softmax")) * np.log(s) - self.u
        return y, p, np.maximum(rho, lse / self.policy.safety_factor), np.asarray(ax_)

    def _softmax(self, x: np.ndarray, ex: np.ndarray, y: np.ndarray, axis: int | None, c: float) -> np.ndarray:
        """softmax_i = exp(x_i - m) / sum_j exp(x_j - m), m the maximum.

        Propagated: the smaller of two valid bounds. (1) First order, |d y_i| <= y_i [(1 - y_i) e_i +
        sum_{j != i} y_j e_j] (the exact |J| = y_i |delta_ij - y_j|, with 1 - y_i taken as the sum of the
        others, so it does not cancel), times exp(4 E), E = max e, which bounds the change of y along
        the perturbation; tight for a dominant class. (2) The log-space bound of
        :meth:`_softmax_parts`: y_i (exp(p_i) - 1); tight when the errors of the logits are not small
        (logits of size 30 in bfloat16). Both capped by max(y_i, 1 - y_i). Local: y_i rho_i + eta.
        """
        shape = y.shape
        yy, p, rho, ax_ = self._softmax_parts(x, ex, axis)
        ax_ = int(ax_)
        if axis is None:
            ex = flat(ex)
        others = _sum_of_others(yy, ax_)
        weighted = np.sum(yy * ex, axis=ax_, keepdims=True)
        first = yy * (others * ex + (weighted - yy * ex).clip(min=0))
        emax = np.max(ex, axis=ax_, keepdims=True)
        growth = np.exp(np.minimum(4 * emax, 700.0))
        with np.errstate(over="ignore"):
            nonlinear = yy * np.expm1(np.minimum(p, 700.0))
        prop = np.minimum(np.minimum(first * growth, nonlinear), np.maximum(yy, others))
        local = yy * rho + self.eta
        return (prop + local).reshape(shape)

    def _logsumexp_family(self, fn: str, x: np.ndarray, ex: np.ndarray, v: np.ndarray, axis: int | None,
                          c: float) -> np.ndarray:
        """logsumexp = m + log(sum exp(x - m)); log_softmax = x - logsumexp.

        Propagated: logsumexp is 1-Lipschitz in the max norm (gradient = softmax);
        first order sum_j y_j e_j, at most max e. log_softmax adds e_i.
        Local: the shift's rounding u |x_j - m| weighted by y_j, the sum's
        gamma_{k-1}, log's c u, the final subtraction u |value|.
        """
        ax_ = matrix_axis(axis)
        xs, es = (flat(x), flat(ex)) if axis is None else (x, ex)
        k = xs.shape[ax_]
        m = np.max(xs, axis=ax_, keepdims=True)
        y = np.exp(xs - m)
        y = y / np.sum(y, axis=ax_, keepdims=True)
        emax = np.max(es, axis=ax_, keepdims=True)
        prop = np.minimum(np.sum(y * es, axis=ax_, keepdims=True) * np.exp(np.minimum(2 * emax, 700.0)), emax)
        z = np.abs(xs - m)
        lse = m + np.log(np.sum(np.exp(xs - m), axis=ax_, keepdims=True))
        local = (self.u * np.sum(y * z, axis=ax_, keepdims=True) + gamma(k, self.ua) + c * (1 + np.abs(lse - m))
                 + self.u * np.abs(lse) + self.eta)
        if fn == "logsumexp":
            out = prop + local
            return out.reshape(v.shape) if axis is None else out
        out = es + prop + local + self.u * (z + np.abs(v.reshape(xs.shape)))
        return out.reshape(v.shape)


#: The running error bound of each primitive of the language (every one: tests/test_primitives.py), by name.
#: A rule gets the bounds, the call, its value and |value|, and ``c u``, the primitive's elementary budget.
PRIMITIVE_RULES: Mapping[str, Callable[[ErrorBounds, Call, np.ndarray, np.ndarray, float], np.ndarray]] = \
    MappingProxyType({
        "sigmoid": ErrorBounds._rule_sigmoid, "tanh": ErrorBounds._rule_tanh, "relu": ErrorBounds._rule_relu,
        "step": ErrorBounds._rule_step, "exp": ErrorBounds._rule_exp, "log": ErrorBounds._rule_log,
        "softmax": ErrorBounds._rule_softmax, "log_softmax": ErrorBounds._rule_logsumexp,
        "logsumexp": ErrorBounds._rule_logsumexp, "sum": ErrorBounds._rule_sum, "mean": ErrorBounds._rule_sum,
        "Diag": ErrorBounds._rule_diag, "outer": ErrorBounds._rule_outer,
    })


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b for nonnegative arrays, with 0 * inf = 0."""
    with np.errstate(invalid="ignore"):
        out = a * b
    return np.where((a == 0) | (b == 0), 0.0, out)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for nonnegative arrays, with 0 * inf = 0 (an infinite bound times an exact zero)."""
    ia, ib = np.isinf(a), np.isinf(b)
    if not (ia.any() or ib.any()):
        return a @ b
    reaches_inf = (ia.astype(float) @ (b != 0).astype(float) + (a != 0).astype(float) @ ib.astype(float)) > 0
    return np.where(reaches_inf, _INF, np.where(ia, 0.0, a) @ np.where(ib, 0.0, b))


def _reduce(a: np.ndarray, axis: int | None) -> np.ndarray:
    """The sum of each matrix along the spec's ``axis`` (None: all of it), dimensions kept."""
    return np.sum(a, axis=(-2, -1) if axis is None else matrix_axis(axis), keepdims=True)


def _vector(a: np.ndarray) -> np.ndarray:
    """Each matrix's entries in order, as one vector (shape (..., rows * columns))."""
    return a.reshape(a.shape[:-2] + (-1,))


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The outer product of each pair of vectors."""
    return a[..., :, None] * b[..., None, :]


def _sum_of_others(y: np.ndarray, axis: int) -> np.ndarray:
    """sum_{j != i} y_j along ``axis``, without the cancellation of (sum - y_i)."""
    yy = np.moveaxis(y, axis, -1)
    k = yy.shape[-1]
    mask = 1.0 - np.eye(k)
    out = yy @ mask  # (..., k): entry i sums the others
    return np.moveaxis(out, -1, axis)


def _dsigmoid(d: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-d))
    return s * (np.exp(-d) / (1.0 + np.exp(-d)))


def _sech2(d: np.ndarray) -> np.ndarray:
    return (2.0 / (np.exp(np.minimum(d, 700.0)) + np.exp(-np.minimum(d, 700.0)))) ** 2


def _biased_product(e: BinOp) -> tuple[BinOp, Expr] | None:
    """(A @ B, c) of a sum ``A @ B + c``, ``c + A @ B`` or ``A @ B - c`` (c not a matrix product), else None."""
    left, right = (isinstance(s, BinOp) and s.op == "@" for s in (e.left, e.right))
    if left == right:
        return None
    return (e.left, e.right) if left else (e.right, e.left)  # type: ignore[return-value]


def _representable(value: Fraction, fmt: FloatFormat) -> bool:
    f = float(value)
    if Fraction(f) != value or not math.isfinite(f):
        return False
    with np.errstate(all="ignore"):
        return float(np.array(f).astype(fmt.dtype)) == f


def forward_bounds(bounds: ErrorBounds) -> dict[str, np.ndarray]:
    return {d.name: bounds.bound(d.expr) for d in bounds.layout.forward}


def expression_bound(bounds: ErrorBounds, expr: Expr) -> np.ndarray:
    return bounds.bound(expr)
