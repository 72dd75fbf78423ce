"""The ``gradconform`` command line.

    gradconform run [--backend NAME ...] [--out reports]   conformance runs + reports for the installed backends
    gradconform backends                                   what backends are found, and why any is unavailable
    gradconform baseline RESULTS.json > xfails.txt         the tests that failed, as a known-failures file
    gradconform rerun RESULTS.json CASE [--quantity Q]     recompute one case exactly, from a results file
    gradconform report [--out reports] [RESULTS ...]       (re)build the reports and the scoreboard from results files
    gradconform verify [--spec FILE]                       check the spec's identities against the oracle's derivatives
    gradconform lint [SPEC ...] [-v]                       static checks of spec files (shapes, layout discrimination)
    gradconform check 'EXPR' --wrt x --layout row          is a hand-derived gradient conformable, and correct?
    gradconform merge OUT.json SHARD.json ...              merge the results files of shards (or machines) into one
    gradconform bench [--quick] [--out FILE]               measure the oracle, the harness and the suite (benchmarks/)

Every failure the user can cause (an unknown backend, a bad spec file, a
missing results file) ends with a one-paragraph message and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from conformance._version import __version__
from conformance.backend import DTYPES
from conformance.cases.generate import Case
from conformance.checks.formula import add_check_arguments, main_check
from conformance.checks.lint import lint, spec_files
from conformance.errors import BackendNotFound, GradconformError, OutputError, SelectionError
from conformance.execution.probe import probe
from conformance.execution.registry import BUILTIN, RENAMED, BackendRef, discover, find, renamed
from conformance.execution.sharding import parse_shard
from conformance.execution.worker import Worker
from conformance.atomic import output_problem
from conformance.results.document import load_results, merge, write_json_atomic, write_results
from conformance.results.naming import report_dir_name
from conformance.run.run import Run
from conformance.spec import load_spec, load_spec_text, spec_dir
from conformance.views.api import TestResult, run_suite
from conformance.views.suite import SUITE_FILE
from conformance.views.xfails import baseline

__all__ = ["main"]


def _print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in list(rows) + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


# ---------------------------------------------------------------------------- backends

def _current_name(name: str) -> str:
    """``name``, or the name an old one now has, said on stderr (the deprecation notice a script's log shows)."""
    notice = renamed(name)
    if notice is None:
        return name
    print(f"gradconform: warning: {notice}", file=sys.stderr)
    return RENAMED[name]


def _probe(name: str, timeout: float = 180.0):  # type: ignore[no-untyped-def]

    w = Worker(find(name), startup_timeout=timeout)
    try:
        return w.start()
    finally:
        w.close()


def cmd_backends(args: argparse.Namespace) -> int:
    """The built-ins are described from their installed distributions (conformance.execution.probe: no torch or
    jax import, a second in all); with ``--load`` or ``-v`` every backend is loaded in its worker, as a run does."""
    load = args.load or args.verbose
    found = [(ref, (None if load else probe(ref)) or _probe(ref.name)) for ref in discover()]
    rows = []
    for ref, info in found:
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        dtypes = ",".join(d for d in DTYPES if d in info.dtypes) if info.available else "-"
        devices = ",".join(info.devices) if info.available else "-"
        rows.append([ref.name, ref.source, "yes" if info.available else "no",
                     versions if info.available else info.reason, dtypes, devices])
    _print_table(rows, ["backend", "source", "available", "versions / reason", "dtypes", "devices"])
    if args.verbose:
        print()
        for ref, info in found:
            print(f"{ref.name} ({ref.target}): {info.description or 'no description'}")
    return 0


# ---------------------------------------------------------------------------- run

def _suite_with_pytest(ref: BackendRef, results: Path, args: argparse.Namespace) -> None:
    """The suite under pytest in a child process (for ``-n`` workers or ``--shard``): absolute paths only, in the
    user's directory (so that a ``module:attr`` backend there is found)."""
    cmd = [sys.executable, "-m", "pytest", str(SUITE_FILE.parent), "-p", "conformance.views.pytest_plugin",
           "--gc-backend", ref.target if ref.source == "module:attr" else ref.name, "--gc-results", str(results),
           "-q", "-p", "no:cacheprovider", "--no-header", "--tb=no", "-rN", f"--rootdir={SUITE_FILE.parent}"]
    for opt, value in (("spec", _absolute(args.spec)), ("examples", args.examples), ("oracle", args.oracle),
                       ("oracle-cache", args.oracle_cache), ("shard", args.shard)):
        if value is not None:
            cmd += [f"--gc-{opt}", str(value)]
    if args.wide:
        cmd += ["--gc-wide"]
    if args.select:
        cmd += ["-k", " or ".join(args.select)]
    if args.workers:
        cmd += ["-n", str(args.workers)]
    code = subprocess.run(cmd).returncode
    if code == 5:  # pytest: no test collected or selected
        raise SelectionError(f"the selection {args.select!r} matches no test of the suite")
    if code == 4:
        raise GradconformError(f"pytest refused the command line (exit 4; see above): {shlex.join(cmd)}")


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _suite_in_process(ref: BackendRef, results: Path, args: argparse.Namespace) -> None:
    """The suite through the Python API (conformance.views.api), printing a line a test that did not pass."""
    def progress(test: TestResult) -> None:
        if test.status not in ("passed",):
            print(f"   {test.status:13s} {test.id}", flush=True)

    result = run_suite(ref.target if ref.source == "module:attr" else ref.name, spec=_absolute(args.spec),
                       select=args.select, xfails=_absolute(args.xfails_file), examples=args.examples,
                       oracle=args.oracle, cache=args.oracle_cache, wide=args.wide, progress=progress)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    written, problem = write_results(results, result.document)
    if problem is not None:
        raise OutputError(f"{problem}; the results of this run are in {written}")
    print(f"   {', '.join(f'{n} {s}' for s, n in sorted(result.counts().items()))}", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()  # the user's directory, never the package's
    names = [_current_name(n) for n in args.backend] if args.backend else list(BUILTIN)
    try:
        refs = [find(n) for n in names]
    except BackendNotFound as exc:
        print(f"gradconform: {exc}", file=sys.stderr)
        return 2
    if args.xfails_file and (args.workers or args.shard):
        print("gradconform: --xfails-file is not combined with -n or --shard here; use "
              "`pytest --pyargs conformance --gc-xfails-file FILE -n N`", file=sys.stderr)
        return 2
    problem = output_problem(out, directory=True)
    if problem is not None:
        print(f"gradconform: --out {args.out}: {problem}; choose another directory (nothing was run)", file=sys.stderr)
        return 2
    ran: list[str] = []
    for ref in refs:
        info = _probe(ref.name if ref.source != "module:attr" else ref.target)
        if not info.available:
            if args.backend:  # asked for: an error, not a skip
                print(f"gradconform: backend {ref.name!r} cannot be used: {info.reason}", file=sys.stderr)
                return 2
            print(f"== {ref.name}: not available ({info.reason}); skipped")
            continue
        print(f"== {ref.name}: running the conformance suite", flush=True)
        # compressed: small enough to publish beside the report
        results = out / report_dir_name(info.name or ref.name) / "results.json.gz"
        try:
            (_suite_with_pytest if args.workers or args.shard else _suite_in_process)(ref, results, args)
        except OutputError as exc:  # the run happened; its results went elsewhere (or nowhere): 3, as the plugin
            print(f"gradconform: {exc}", file=sys.stderr)
            return 3
        except GradconformError as exc:
            print(f"gradconform: {exc}", file=sys.stderr)
            return 2
        if not results.exists():
            print(f"gradconform: the run for {ref.name} produced no results", file=sys.stderr)
            return 1
        ran.append(ref.name)
    if not ran:
        print("gradconform: no backend could run", file=sys.stderr)
        return 1
    print(f"building the reports under {out}/", flush=True)
    from conformance.report import build_all  # lazy: jinja2 and matplotlib, for reports only

    build_all(out)
    print(f"reports written: {out}/index.html, {out}/README.md and {out}/<backend>/")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """Print a known-failures file (``--gc-xfails-file``) listing the tests that failed in a results file."""
    try:
        doc = load_results(args.results)
    except (OSError, ValueError) as exc:
        print(f"gradconform: cannot read results file: {exc}", file=sys.stderr)
        return 2
    print("\n".join(baseline(doc)))
    return 0


# ---------------------------------------------------------------------------- rerun

def cmd_rerun(args: argparse.Namespace) -> int:

    try:
        doc = load_results(args.results)
    except (OSError, ValueError) as exc:
        print(f"gradconform: cannot read results file: {exc}", file=sys.stderr)
        return 2
    matches = [c for c in doc["cases"] + [ce["case"] for ce in doc.get("counterexamples", [])] if c["id"] == args.case]
    if not matches:
        print(f"gradconform: no case {args.case!r} in {args.results}", file=sys.stderr)
        return 2
    try:
        case = Case.from_json(matches[0])
    except (ValueError, TypeError, KeyError, LookupError) as exc:  # bad hex, shape or dtype in a tampered file
        print(f"gradconform: case {args.case!r} of {args.results} is malformed ({type(exc).__name__}: "
              f"{str(exc)[:200]}); it cannot be rerun from this file", file=sys.stderr)
        return 2
    try:
        if args.spec or not doc["spec"].get("text") or Path(doc["spec"].get("path") or "").is_file():
            spec = load_spec(args.spec or (doc["spec"].get("path") or None))
        else:  # the spec file is not here (another machine): use the copy the results file embeds
            spec = load_spec_text(doc["spec"]["text"], name=f"{doc['spec'].get('name', 'spec')} (embedded in {args.results})")
    except GradconformError as exc:
        print(f"gradconform: {exc}", file=sys.stderr)
        return 2
    if spec.sha256 != doc["spec"]["sha256"]:
        print(f"warning: the spec file's hash differs from the one these results were made with", file=sys.stderr)
    backend = _current_name(args.backend or doc["backend"].get("requested") or doc["backend"]["name"])
    try:
        with Run(spec, backend, isolate=not args.no_isolate) as run:
            _warn_if_another_backend(run, doc["backend"], args.results)
            records, bits = run.evaluate_case(case, only=[args.quantity] if args.quantity else None)
    except GradconformError as exc:
        print(f"gradconform: {exc}", file=sys.stderr)
        return 2
    print(f"case {case.id}: layout {case.layout}, dtype {case.dtype}, regime {case.regime}, family {case.family}"
          + (f", magnitude {case.magnitude:g}" if case.magnitude is not None else "") + f"; oracle certified at {bits} bits")
    for k, v in case.inputs.items():
        print(f"  {k} = {v.astype(float).tolist()}")
    rows = [[r.quantity, r.status + (f" ({r.detail})" if r.detail else ""), _num(r.max_ratio), _num(r.max_ulp, "{:.0f}"),
             _num(r.max_rel_err), r.message.splitlines()[0][:80] if r.message else ""] for r in records]
    _print_table(rows, ["quantity", "status", "error/allowed", "max ulp", "max rel err", "message"])
    return 0 if all(r.status == "pass" for r in records) else 1


def _warn_if_another_backend(run: Run, recorded: Mapping[str, Any], results: str) -> None:
    """Say so when the backend answering now describes itself otherwise than the one that made the results (an old
    results file of ``torch``, say, was the composed loss, which is now ``torch-composed``)."""
    then, now = str(recorded.get("description") or ""), run.info.description or ""
    if run.info.available and then and now and then != now:
        print(f"warning: backend {run.info.name!r} is not the one that made {results}: that was {then!r}, this is "
              f"{now!r}; give --backend NAME to choose (`gradconform backends -v` describes each)", file=sys.stderr)


def _num(x: object, fmt: str = "{:.3g}") -> str:
    if x is None:
        return "-"
    try:
        return fmt.format(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)


# ---------------------------------------------------------------------------- report

def cmd_report(args: argparse.Namespace) -> int:
    from jsonschema import ValidationError

    from conformance.report import build_reports, find_results  # lazy: jinja2 and matplotlib, for reports only

    out = Path(args.out)
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        print(f"gradconform: no such results file: {missing[0]}", file=sys.stderr)
        return 2
    # first: a --out that cannot hold reports is the problem, whatever else (no results there is then no news)
    problem = output_problem(out, directory=True)
    if problem is not None:
        print(f"gradconform: --out {args.out}: {problem}; choose another directory", file=sys.stderr)
        return 2
    if not args.results and not find_results(out):
        print(f"gradconform: no results under {out}/ (expected {out}/<backend>/results.json[.gz]); "
              f"give results files, or run `gradconform run --out {out}` first", file=sys.stderr)
        return 2
    try:
        built = build_reports(out, args.results)
    except (OSError, ValueError) as exc:  # unreadable or invalid results files, mismatched shards
        print(f"gradconform: cannot build the reports: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"gradconform: cannot build the reports: a results file does not match the schema: {exc.message} "
              f"(at {'/'.join(map(str, exc.absolute_path)) or 'the top level'})", file=sys.stderr)
        return 2
    for a in built:
        folder = report_dir_name(a.backend)  # the name as the file gives it may hold anything (a path, escapes)
        print(f"{folder}: {out / folder}/index.html and REPORT.md ({a.overall.passed}/{a.overall.total} checks pass)")
    print(f"scoreboard: {out}/index.html and {out}/README.md")
    return 0


# ---------------------------------------------------------------------------- verify

def cmd_verify(args: argparse.Namespace) -> int:

    try:
        spec = load_spec(args.spec)
    except GradconformError as exc:
        print(f"gradconform: {exc}", file=sys.stderr)
        return 2
    run = Run(spec, "numpy", isolate=False)
    rows, bad = [], 0
    for lname, lay in spec.layouts.items():
        for ident in lay.identities:
            vs = run.verifications(lname, ident.id, per_regime=args.per_regime)
            n_ok = sum(v["verdict"] == "holds" for v in vs)
            refuted = [v for v in vs if v["verdict"] not in ("holds", "error")]
            errors = [v for v in vs if v["verdict"] == "error"]  # the oracle failed: no verdict on the identity
            bad += bool(refuted or errors) or not vs
            first = (refuted or errors or [{}])[0]
            note = first.get("reason", "") if first else ("no applicable case" if not vs else "")
            verdict = "REFUTED" if refuted else "oracle error" if errors else "holds" if vs else "unchecked"
            rows.append([ident.id, lname, f"{n_ok}/{len(vs)}", verdict, note])
    _print_table(rows, ["identity", "layout", "cases", "verdict", "note"])
    return 1 if bad else 0


# ---------------------------------------------------------------------------- lint, check

def cmd_lint(args: argparse.Namespace) -> int:

    paths: list[Path] = []
    for given in args.spec or [str(spec_dir())]:
        p = Path(given)
        if p.is_dir():
            paths.extend(spec_files(p))
        elif p.exists():
            paths.append(p)
        else:
            print(f"gradconform: no such spec file or directory: {given}", file=sys.stderr)
            return 2
    failed = 0
    for p in paths:
        report = lint(p)
        print(report.render(verbose=args.verbose))
        failed += not report.ok
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:

    return main_check(args)


# ---------------------------------------------------------------------------- merge

def cmd_merge(args: argparse.Namespace) -> int:

    docs = []
    for path in args.inputs:
        try:
            docs.append(load_results(path))
        except (OSError, ValueError) as exc:
            print(f"gradconform: cannot read results file {path}: {exc}", file=sys.stderr)
            return 2
    parsed = {}
    for doc, path in zip(docs, args.inputs):
        shard = doc.get("settings", {}).get("shard")
        if shard is not None:
            try:
                parsed[shard] = parse_shard(str(shard))
            except ValueError as exc:
                print(f"gradconform: {path}: settings.shard is not a shard: {exc}", file=sys.stderr)
                return 2
    counts = {str(p.count) for p in parsed.values()}
    shards = sorted(parsed, key=lambda s: (parsed[s].count, parsed[s].index))
    if len(counts) > 1:
        print(f"gradconform: these files are shards of different splits ({', '.join(shards)})", file=sys.stderr)
        return 2
    if shards and not args.allow_partial:
        n = int(next(iter(counts)))
        missing = [f"{i}/{n}" for i in range(1, n + 1) if f"{i}/{n}" not in shards]
        if missing:
            print(f"gradconform: shard(s) {', '.join(missing)} missing (pass --allow-partial to merge anyway)",
                  file=sys.stderr)
            return 2
    try:
        out = merge(docs, args.inputs)
    except ValueError as exc:
        print(f"gradconform: {exc}", file=sys.stderr)
        return 2
    out["settings"] = dict(out.get("settings", {}))
    out["settings"]["shard"] = None
    if shards:
        out["settings"]["merged_shards"] = shards
    try:
        write_json_atomic(args.out, out)
    except OSError as exc:
        print(f"gradconform: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"merged {len(docs)} results file(s) into {args.out}: {len(out['cases'])} cases, "
          f"{len(out['records'])} records")
    return 0


# ---------------------------------------------------------------------------- bench

def cmd_bench(args: argparse.Namespace) -> int:
    from conformance.views.bench import main as bench_main  # lazy: the benchmark's peers import torch/jax

    return bench_main(args)


# ---------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradconform", description="A spec-driven conformance suite for gradients.")
    p.add_argument("--version", action="version", version=f"gradconform {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the conformance suite for the installed backends and write the reports")
    r.add_argument("--backend", action="append", help="backend to run (repeatable); default: every built-in one installed")
    r.add_argument("--out", default="reports", help="directory for results and reports (default: reports)")
    r.add_argument("--spec", default=None, help="spec file (default: the shipped seed network)")
    r.add_argument("--examples", type=int, default=None, help="cases per (family, magnitude) cell")
    r.add_argument("--wide", action="store_true",
                   help="also the regimes of the wide shape families (realistic widths; slow, a few minutes)")
    r.add_argument("-n", "--workers", default=None, help="pytest-xdist workers (e.g. 2 or auto)")
    r.add_argument("--oracle", default=None, choices=["mpmath", "flint"], help="oracle engine")
    r.add_argument("--oracle-cache", default=None, metavar="on|off|DIR", help="cache of oracle results")
    r.add_argument("--shard", default=None, metavar="i/N", help="run the i-th of N parts (merge with `merge`)")
    r.add_argument("-k", "--select", action="append", default=None, metavar="TEXT",
                   help="only the tests whose id contains TEXT (repeatable: any one)")
    r.add_argument("--xfails-file", default=None, metavar="FILE", help="known failures (see `gradconform baseline`)")
    r.set_defaults(func=cmd_run)

    bl = sub.add_parser("baseline", help="print a known-failures file (--gc-xfails-file) from a results file")
    bl.add_argument("results", help="a results.json[.gz] written by a run")
    bl.set_defaults(func=cmd_baseline)

    b = sub.add_parser("backends", help="list the backends found, with versions or why they are unavailable")
    b.add_argument("-v", "--verbose", action="store_true",
                   help="also say what each backend computes, and how (loads every backend, as --load)")
    b.add_argument("--load", action="store_true",
                   help="load every backend in its worker (imports torch, jax: slow) instead of probing the built-ins "
                        "from their installed distributions; finds installs that are present but broken")
    b.set_defaults(func=cmd_backends)

    rr = sub.add_parser("rerun", help="recompute one case of a results file, exactly")
    rr.add_argument("results", help="a results.json written by a run")
    rr.add_argument("case", help="the case id (12 hex digits)")
    rr.add_argument("--quantity", default=None, help="only this quantity (e.g. dL/dx)")
    rr.add_argument("--backend", default=None, help="another backend than the one in the file")
    rr.add_argument("--spec", default=None, help="the spec file (default: the one named in the results)")
    rr.add_argument("--no-isolate", action="store_true", help="run the backend in this process")
    rr.set_defaults(func=cmd_rerun)

    rp = sub.add_parser("report", help="(re)build the HTML and markdown reports and the scoreboard from results files")
    rp.add_argument("results", nargs="*", help="results files to place under OUT/<backend>/ (several files of one backend "
                                               "are merged); none: rebuild from OUT/*/results.json[.gz]")
    rp.add_argument("--out", default="reports", help="reports directory (default: reports)")
    rp.set_defaults(func=cmd_report)

    v = sub.add_parser("verify", help="check every identity of a spec against the derivative of its forward definitions")
    v.add_argument("--spec", default=None, help="spec file (default: the shipped seed network)")
    v.add_argument("--per-regime", type=int, default=2, help="cases per regime (default 2)")
    v.set_defaults(func=cmd_verify)

    li = sub.add_parser("lint", help="static checks of spec files: shapes over named dimensions, layout discrimination")
    li.add_argument("spec", nargs="*", help="spec files or directories (default: the shipped specs)")
    li.add_argument("-v", "--verbose", action="store_true", help="show how each confusion is told apart")
    li.set_defaults(func=cmd_lint)


    ch = sub.add_parser("check", help="check a hand-derived gradient or Jacobian: shapes, value, diagnosis")
    add_check_arguments(ch)
    ch.set_defaults(func=cmd_check)

    m = sub.add_parser("merge", help="merge results files of shards or machines (one backend, spec, seed)")
    m.add_argument("out", help="the merged results file to write")
    m.add_argument("inputs", nargs="+", help="results files (for example one per --shard i/N)")
    m.add_argument("--allow-partial", action="store_true", help="merge even if some shards are missing")
    m.set_defaults(func=cmd_merge)

    from conformance.views.bench import add_arguments  # lazy: the benchmark's peers import torch/jax

    bn = sub.add_parser("bench", help="measure oracle engines by width, harness overhead, suite times, peers")
    add_arguments(bn)
    bn.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
