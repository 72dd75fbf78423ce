"""The same implementations judged by three checkers: this policy, torch.autograd.gradcheck, and
torch.testing.assert_close with its default tolerances (and a fixed rtol of 5 eps, for contrast).

    python benchmarks/compare_checkers.py [--examples N] [--out benchmarks/compare_checkers.txt]

Implementations: the correct variants and the seeded faults of tests/accuracy_backends.py (hand-written
numpy forward and backward passes of the seed network). Cases: the seed spec's regimes, both layouts,
every dtype, generated exactly as the conformance suite generates them.

* gradconform: the verdict of this harness (running error bound, safety factor from the spec) on every
  forward value and identity.
* assert_close: ``torch.testing.assert_close(got, expected)`` with the defaults for the dtype
  (float64 rtol 1e-7 atol 1e-7, float32 1.3e-6 / 1e-5, float16 1e-3 / 1e-5, bfloat16 1.6e-2 / 1e-5),
  ``expected`` the oracle's correctly rounded value in that dtype; the same quantities.
* rtol = 5 eps: the same with rtol = 5 * machine epsilon of the dtype and atol = 0, a "tight" fixed tolerance.
* gradcheck: ``torch.autograd.gradcheck`` (defaults: eps 1e-6, atol 1e-5, rtol 1e-3) of a
  ``torch.autograd.Function`` whose forward is the correct loss and whose backward is the implementation's
  dL/dx, dL/dW1, dL/db1, dL/dW2, dL/db2, in float64 (its intended use) and in float32, on the row-layout
  cases (labels that sum to 1: the closed-form backward assumes it).

A case is "flagged" by a checker when any quantity of it is rejected. Counts are cases flagged / cases.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.oracle import evaluate as oracle  # noqa: E402
from conformance.judge.compare import PASS, compare  # noqa: E402
from conformance.judge.bounds import ErrorBounds  # noqa: E402
from conformance.formats import DTYPES, FORMATS, round_hilo  # noqa: E402
from conformance.run.run import Run, RunCache  # noqa: E402
from conformance.spec.shapes import concrete  # noqa: E402
from conformance.spec import load_spec  # noqa: E402
from tests.accuracy_backends import CORRECT, FAULTS, Recipe, forward_backward, recipe_backend  # noqa: E402

ASSERT_CLOSE_DEFAULTS = {"float64": (1e-7, 1e-7), "float32": (1.3e-6, 1e-5), "float16": (1e-3, 1e-5),
                         "bfloat16": (1.6e-2, 1e-5)}
GRAD_INPUTS = ("x", "W1", "b1", "W2", "b2")


def _torch_tensor(a: np.ndarray, dtype: str) -> Any:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(np.asarray(a).astype(np.float32 if dtype == "bfloat16" else a.dtype)))
    return t.to(torch.bfloat16) if dtype == "bfloat16" else t


def assert_close_ok(got: np.ndarray, expected: np.ndarray, dtype: str, *, rtol: float | None = None,
                    atol: float | None = None) -> tuple[bool, int]:
    """(passes, components rejected) for torch.testing.assert_close and an elementwise count."""
    import torch

    g, e = _torch_tensor(got, dtype), _torch_tensor(expected, dtype)
    try:
        torch.testing.assert_close(g, e, rtol=rtol, atol=atol)
        ok = True
    except AssertionError:
        ok = False
    r, a = (rtol, atol) if rtol is not None else ASSERT_CLOSE_DEFAULTS[dtype]
    gg, ee = got.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = (np.abs(gg - ee) <= a + r * np.abs(ee)) | (gg == ee)
    return ok, int(np.sum(~close))


def gradcheck_ok(inputs: dict[str, np.ndarray], recipe: Recipe, dtype: str) -> bool:
    """gradcheck of (correct forward, the implementation's backward) at ``inputs``."""
    import torch

    y = np.asarray(inputs["y"], dtype=np.float64)
    correct = Recipe()
    tdt = torch.float64 if dtype == "float64" else torch.float32

    def arrays(tensors: tuple[Any, ...]) -> dict[str, np.ndarray]:
        out = {k: t.detach().numpy().astype(dtype) for k, t in zip(GRAD_INPUTS, tensors)}
        out["y"] = y.astype(dtype)
        return out

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *ts: Any) -> Any:
            ctx.save_for_backward(*ts)
            with np.errstate(all="ignore"):
                L = forward_backward(arrays(ts), dtype, correct)["L"]
            return torch.tensor(float(L[0, 0]), dtype=tdt)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            with np.errstate(all="ignore"):
                out = forward_backward(arrays(ctx.saved_tensors), dtype, recipe)
            return tuple(g * torch.from_numpy(out[f"dL/d{k}"].astype(np.float64)).to(tdt) for k in GRAD_INPUTS)

    ts = tuple(torch.tensor(np.asarray(inputs[k], dtype=np.float64), dtype=tdt, requires_grad=True)
               for k in GRAD_INPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(torch.autograd.gradcheck(Loss.apply, ts, raise_exception=False))
        except Exception:
            return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1, help="cases per (shape family, magnitude) cell")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "compare_checkers.txt"))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    spec = load_spec(ROOT / "spec" / "two_layer_sigmoid_xent.yaml")
    cache = RunCache()
    names = list(CORRECT) + list(FAULTS)
    recipes = {**CORRECT, **FAULTS}
    backends = {n: recipe_backend(n, recipes[n])() for n in names}
    # flagged[checker][name][dtype] = set of flagged case ids; judged[dtype] = case ids
    flagged: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    judged: dict[str, set[str]] = defaultdict(set)
    grad_judged: dict[str, set[str]] = defaultdict(set)
    comp: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: [0, 0])))
    driver = Run(spec, "numpy", isolate=False, examples=args.examples, cache=cache)
    for layout in spec.layouts:
        lay = spec.layouts[layout]
        for dtype in DTYPES:
            fmt = FORMATS[dtype]
            for regime in spec.regimes:
                group = driver.group(layout, dtype, regime)  # cases and oracle, shared through the cache
                for case in group.cases:
                    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
                    ev = cache.oracle.get((case.id, tuple(i.id for i in sized)))
                    if ev is None:
                        continue  # the oracle failed on this case (recorded as an error by the suite)
                    idents = [i for i in sized if oracle.applicable(i, case.sizes, ev.preconditions)]
                    request = driver.request_for(case, idents)
                    bounds = ErrorBounds(lay, ev.nodes, case.inputs, dtype, spec.tolerance)
                    items = [(d.name, d.expr, concrete(d.shape, case.sizes)) for d in lay.forward]
                    items += [(i.id, i.expr, concrete(i.shape, case.sizes)) for i in idents]
                    judged[dtype].add(case.id)
                    do_grad = layout == "row" and dtype in ("float64", "float32") and ev.preconditions.get(
                        "labels_sum_to_one", False)
                    if do_grad:
                        grad_judged[dtype].add(case.id)
                    for name in names:
                        with np.errstate(all="ignore"):
                            got = backends[name].evaluate(request)
                        for qid, expr, shape in items:
                            g = np.asarray(got[qid])
                            ex = ev.values[qid]
                            c = compare(g, ex, bounds.bound(expr), dtype=dtype, expected_shape=shape,
                                        safety_factor=spec.tolerance.safety_factor)
                            ref = round_hilo(ex.hi, ex.lo, fmt)
                            ok_ac, bad_ac = assert_close_ok(g, ref, dtype)
                            ok_5, bad_5 = assert_close_ok(g, ref, dtype, rtol=5 * 2.0 ** (1 - fmt.p), atol=0.0)
                            for checker, ok, bad in (("gradconform", c.status == PASS, int(c.status != PASS)),
                                                     ("assert_close", ok_ac, bad_ac), ("rtol=5eps", ok_5, bad_5)):
                                if not ok:
                                    flagged[checker][name][dtype].add(case.id)
                                if qid not in ("a", "h", "theta", "yhat", "L"):
                                    comp[checker][name][dtype][0] += bad
                                    comp[checker][name][dtype][1] += g.size
                        if do_grad and not gradcheck_ok(case.inputs, recipes[name], dtype):
                            flagged["gradcheck"][name][dtype].add(case.id)
    driver.close()
    lines = render(names, flagged, judged, grad_judged, comp, args.examples, time.perf_counter() - started)
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


def render(names, flagged, judged, grad_judged, comp, examples, seconds) -> list[str]:
    def cell(checker: str, name: str, dtype: str, pool: dict[str, set[str]]) -> str:
        n = len(pool[dtype])
        return f"{len(flagged[checker][name][dtype] & pool[dtype])}/{n}" if n else "-"

    width = max(len(n) for n in names) + 2
    out = [
        "Checkers compared on the seed network (tests/accuracy_backends.py implementations, seed spec regimes,",
        f"both layouts, {examples} case(s) per family and magnitude; generated by benchmarks/compare_checkers.py"
        f" in {seconds:.0f} s).",
        "Cells: cases flagged / cases judged; a case is flagged when any of its quantities is rejected.",
        "gradcheck: correct float64 forward + the implementation's backward, row layout, labels summing to 1.",
        "",
        f"{'':{width}}{'gradconform policy':^32}|{'assert_close defaults':^32}|{'rtol = 5 eps, atol = 0':^32}|"
        f"{'gradcheck':^16}",
        f"{'implementation':{width}}" + ("|".join(["".join(f"{d:>8}" for d in ("f64", "f32", "f16", "bf16"))] * 3))
        + f"|{'f64':>8}{'f32':>8}",
    ]
    for title, group in (("correct", [n for n in names if n in CORRECT]), ("faulty", [n for n in names if n in FAULTS])):
        out.append(f"-- {title}")
        for name in group:
            row = f"{name:{width}}"
            row += "|".join("".join(f"{cell(ch, name, d, judged):>8}" for d in DTYPES)
                            for ch in ("gradconform", "assert_close", "rtol=5eps"))
            row += "|" + "".join(f"{cell('gradcheck', name, d, grad_judged):>8}" for d in ("float64", "float32"))
            out.append(row)
    finite_everywhere = [n for n in names if n in CORRECT and CORRECT[n].loss != "composed"]
    out += ["", f"Gradient components rejected, the {len(finite_everywhere)} correct implementations that are finite "
                "everywhere together, per checker and dtype:"]
    for checker in ("gradconform", "assert_close", "rtol=5eps"):
        parts = []
        for d in DTYPES:
            bad = sum(comp[checker][n][d][0] for n in finite_everywhere)
            tot = sum(comp[checker][n][d][1] for n in finite_everywhere)
            parts.append(f"{d} {bad}/{tot} ({100 * bad / tot:.2f} %)" if tot else f"{d} -")
        out.append(f"  {checker:13s} " + "; ".join(parts))
    out += [
        "",
        "Notes: the composed forms (composed-loss, autodiff-composed*) return non-finite values where a",
        "probability underflows (log 0, y / 0) in the large_logits, unlikely_class and near_tied_logits regimes;",
        "every checker rejects those cases, rightly: the exact values are finite. log-eps changes only the loss",
        "value, which gradcheck never looks at; in float16 its epsilon is below resolution except where the labelled",
        "probability is small.",
    ]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
