"""Did a speed-up change a verdict or a grade? Compare two results files record by record.

    python benchmarks/compare_verdicts.py BEFORE/results.json.gz AFTER/results.json.gz

Matches records by (case, quantity) and compares what a change to the harness's speed must never change: the
status and its detail, the ulp grades (max_ulp, median_ulp, the ulp histogram), and the outcome of every test,
verification, refutation and metamorphic property. The floats of a record (errors, ratios, bounds, worst_index)
are counted separately: with another oracle engine they differ in their last digits (docs/performance.md).
Exit status 1 if any verdict or grade differs.
"""

from __future__ import annotations

import sys
from collections import Counter

from conformance.results.document import load_results

VERDICT = ("status", "detail")
GRADE = ("max_ulp", "median_ulp", "ulp_hist")
FLOATS = ("max_ratio", "max_abs_err", "max_rel_err", "worst_index", "worst_got", "worst_exact", "worst_bound",
          "worst_allowed", "uninformative", "message")


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
    sys.exit(main(*sys.argv[1:3]))
