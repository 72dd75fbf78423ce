"""Did a speed-up change a verdict or a grade? Compare two results files record by record.

    python benchmarks/compare_verdicts.py BEFORE/results.json.gz AFTER/results.json.gz

Matches records by (case, quantity) and compares what a change to the harness's speed must never change: the
status and its detail, the ulp grades (max_ulp, median_ulp, the ulp histogram), and the outcome of every test,
verification, refutation and metamorphic property. The floats of a record (errors, ratios, bounds, worst_index)
are counted separately: with another oracle engine they differ in their last digits (docs/performance.md).
Exit status 1 if any verdict or grade differs.

    python benchmarks/compare_verdicts.py --by-cell BEFORE AFTER

For a change that draws other cases (the strategies): records cannot be matched by case, so the statuses are
compared per cell (layout, dtype, regime, family, magnitude, quantity), and the ulp grades and the sizes of the
shrunk counterexamples are summarised side by side (they differ with the inputs; a large shift is worth a look).
Exit status 1 if the status counts of any cell, or any test, refutation, verification or metamorphic outcome,
differ.
"""

from __future__ import annotations

import sys
from collections import Counter

from conformance.results.document import load_results
from conformance.spec import load_spec_text
from conformance.spec.model import DIRECTION_ROLES

VERDICT = ("status", "detail")
GRADE = ("max_ulp", "median_ulp", "ulp_hist")
FLOATS = ("max_ratio", "max_abs_err", "max_rel_err", "worst_index", "worst_got", "worst_exact", "worst_bound",
          "worst_allowed", "uninformative", "message")


def _cell(r: dict) -> tuple:
    return (r["layout"], r["dtype"], r["regime"], r["family"], repr(r["magnitude"]), r["quantity"])


def _quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return " / ".join(f"{v[min(len(v) - 1, int(q * len(v)))]:.3g}" for q in (0.5, 0.9, 0.99)) + f" / {v[-1]:.3g}"


def _nonzeros(case: dict | None, network: set[str]) -> int | None:
    """Nonzero entries of a results file's case (inputs as float hex strings), labels and directions aside."""
    if not case:
        return None
    return sum(1 for name, arr in case.get("inputs", {}).items() if name in network
               for h in arr["hex"] if float.fromhex(h) != 0)


def by_cell(before_path: str, after_path: str) -> int:
    before, after = load_results(before_path), load_results(after_path)
    problems: list[str] = []
    cb = Counter((_cell(r), r["status"], r.get("detail")) for r in before["records"])
    ca = Counter((_cell(r), r["status"], r.get("detail")) for r in after["records"])
    for key in sorted(set(cb) | set(ca)):
        if cb[key] != ca[key]:
            problems.append(f"{key}: {cb[key]} -> {ca[key]}")
    for part, key in (("tests", "nodeid"), ("metamorphic", "property"), ("refutations", "identity")):
        ob = Counter((t.get(key), t.get("layout"), t.get("dtype"), str(t.get("outcome", t.get("status", t.get("verdict")))))
                     for t in before.get(part, []))
        oa = Counter((t.get(key), t.get("layout"), t.get("dtype"), str(t.get("outcome", t.get("status", t.get("verdict")))))
                     for t in after.get(part, []))
        if ob != oa:
            problems.append(f"{part}: outcomes differ: {sorted((ob - oa).items())[:5]} -> {sorted((oa - ob).items())[:5]}")
    vb = Counter((v["identity"], v["layout"], v["verdict"]) for v in before["verifications"])
    va = Counter((v["identity"], v["layout"], v["verdict"]) for v in after["verifications"])
    if vb != va:
        problems.append(f"verifications differ: {sorted((vb - va).items())[:5]} -> {sorted((va - vb).items())[:5]}")
    print(f"before: {before_path} ({len(before['records'])} records, {len(before['cases'])} cases, {before['seconds']:.1f} s)")
    print(f"after:  {after_path} ({len(after['records'])} records, {len(after['cases'])} cases, {after['seconds']:.1f} s)")
    print(f"statuses per cell: {'identical' if not problems else f'{len(problems)} difference(s)'} over {len(set(cb) | set(ca))} "
          "(cell, status) pairs, and the tests, refutations, verifications and metamorphic properties")
    print("max_ulp per dtype, median / 90 % / 99 % / max, before -> after:")
    for dtype in before["settings"]["dtypes"]:
        ub = [r["max_ulp"] for r in before["records"] if r["dtype"] == dtype and isinstance(r.get("max_ulp"), (int, float))]
        ua = [r["max_ulp"] for r in after["records"] if r["dtype"] == dtype and isinstance(r.get("max_ulp"), (int, float))]
        print(f"  {dtype:9s} {_quantiles(ub)}  ->  {_quantiles(ua)}")
    spec = load_spec_text(after["spec"]["text"])
    network = {n for n, info in spec.inputs.items() if info.get("role") not in ("label", *DIRECTION_ROLES)}
    sizes = []
    for rb, ra in zip(before.get("refutations", []), after.get("refutations", [])):
        for ob, oa in zip(rb.get("outcomes", []), ra.get("outcomes", [])):
            nb, na = _nonzeros(ob.get("case"), network), _nonzeros(oa.get("case"), network)
            if nb is not None or na is not None:
                sizes.append(f"{rb['identity']} ({ob['family']}): {nb} -> {na}")
    print("nonzero network inputs (labels and directions aside) of the refuting cases, before -> after:")
    for line in sizes:
        print("  " + line)
    for p in problems[:40]:
        print("  " + p)
    return 1 if problems else 0


def main(before_path: str, after_path: str) -> int:
    before, after = load_results(before_path), load_results(after_path)
    b = {(r["case"], r["quantity"]): r for r in before["records"]}
    a = {(r["case"], r["quantity"]): r for r in after["records"]}
    problems: list[str] = []
    if set(b) != set(a):
        problems.append(f"records differ: {len(set(b) - set(a))} only before, {len(set(a) - set(b))} only after")
    floats: Counter[str] = Counter()
    for key in sorted(set(a) & set(b)):
        rb, ra = b[key], a[key]
        for f in VERDICT + GRADE:
            if rb.get(f) != ra.get(f):
                problems.append(f"{key}: {f} {rb.get(f)!r} -> {ra.get(f)!r}")
        for f in FLOATS:
            if rb.get(f) != ra.get(f):
                floats[f] += 1
    for part, key in (("tests", "nodeid"), ("metamorphic", "property"), ("refutations", "identity")):
        ob = Counter((t.get(key), t.get("layout"), str(t.get("outcome", t.get("status", t.get("verdict")))))
                     for t in before.get(part, []))
        oa = Counter((t.get(key), t.get("layout"), str(t.get("outcome", t.get("status", t.get("verdict")))))
                     for t in after.get(part, []))
        if ob != oa:
            problems.append(f"{part}: outcomes differ: {sorted((ob - oa).items())[:5]} -> {sorted((oa - ob).items())[:5]}")
    mb = {(m.get("property"), m.get("layout"), m.get("dtype")): m for m in before.get("metamorphic", [])}
    for m in after.get("metamorphic", []):
        k = (m.get("property"), m.get("layout"), m.get("dtype"))
        for f in sorted(set(m) | set(mb.get(k, m))):
            if k in mb and m.get(f) != mb[k].get(f):
                floats[f"metamorphic {f}"] += 1  # a ratio or a count of a property (its outcome is compared below)
    vb = Counter((v["identity"], v["layout"], v["case"]["id"], v["verdict"]) for v in before["verifications"])
    va = Counter((v["identity"], v["layout"], v["case"]["id"], v["verdict"]) for v in after["verifications"])
    if vb != va:
        problems.append(f"verifications differ: {len(vb - va)} before only, {len(va - vb)} after only")
    print(f"before: {before_path} ({before['oracle']['name']} oracle, {len(b)} records, {before['seconds']:.1f} s)")
    print(f"after:  {after_path} ({after['oracle']['name']} oracle, {len(a)} records, {after['seconds']:.1f} s)")
    print(f"statuses: {dict(Counter(r['status'] for r in after['records']))}")
    print(f"verdicts and grades: {'identical' if not problems else f'{len(problems)} difference(s)'} "
          f"on {len(set(a) & set(b))} records, {len(after.get('tests', []))} tests, "
          f"{len(after['verifications'])} verifications")
    print("other fields that differ (records): " + (", ".join(f"{k} {n}" for k, n in floats.most_common()) or "none"))
    for p in problems[:40]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--by-cell"]:
        sys.exit(by_cell(*sys.argv[2:4]))
    sys.exit(main(*sys.argv[1:3]))
