"""The on-disk caches: a hit is the very evaluation a miss computes; a bad entry is detected, never trusted."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from conformance.oracle import evaluate as oracle
from conformance.cache.store import BlobStore, key_digest
from conformance.cache.case_cache import CaseCache
from conformance.cases.generate import generate_cases
from conformance.oracle.engines.select import get_engine
from platformdirs import user_cache_dir

from conformance.cache.oracle_cache import DEFAULT_DIR, OracleCache, resolve_cache_dir, cached_evaluate, cached_verify_identity


def _case(spec, regime="benign", dtype="float32"):
    lay = spec.layouts["row"]
    case = generate_cases(spec, "row", dtype, regime, examples=1)[0]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    return lay, case, sized


def _same(a: oracle.OracleEvaluation, b: oracle.OracleEvaluation) -> None:
    assert a.preconditions == b.preconditions and a.precision == b.precision
    assert list(a.values) == list(b.values)
    for k in a.values:
        assert np.array_equal(a.values[k].hi, b.values[k].hi) and np.array_equal(a.values[k].lo, b.values[k].lo)
        assert a.values[k].undecided == b.values[k].undecided
    assert list(a.nodes) == list(b.nodes)
    for e in a.nodes:
        assert np.array_equal(a.nodes[e], b.nodes[e], equal_nan=True)
        assert a.nodes[e].flags.f_contiguous == b.nodes[e].flags.f_contiguous  # same layout: same float sums


def _only_file(root: Path, kind: str = "oracle") -> Path:
    files = [p for p in (root / kind).rglob("*.bin")]
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("engine", ["mpmath", "flint"])
def test_a_hit_is_the_evaluation(seed_spec, tmp_path, engine):
    lay, case, sized = _case(seed_spec, "saturated_sigmoid")
    cache = OracleCache(tmp_path)
    fresh = cached_evaluate(lay, case.inputs, sized, engine=engine, cache=cache)
    assert cache.stats["misses"] == 1 and cache.stats["writes"] == 1
    hit = cached_evaluate(lay, case.inputs, sized, engine=engine, cache=cache)
    assert cache.stats["hits"] == 1
    _same(fresh, hit)
    _same(fresh, oracle.evaluate(lay, case.inputs, sized, engine=engine))


def test_the_key_separates_what_the_result_depends_on(seed_spec, tmp_path):
    lay, case, sized = _case(seed_spec)
    cache = OracleCache(tmp_path)
    base = cache.key(get_engine("mpmath"), lay, case.inputs, sized, 128)
    other_engine = cache.key(get_engine("flint"), lay, case.inputs, sized, 128)
    other_bits = cache.key(get_engine("mpmath"), lay, case.inputs, sized, 256)
    fewer = cache.key(get_engine("mpmath"), lay, case.inputs, sized[:-1], 128)
    flipped = dict(case.inputs)
    x = np.array(flipped["x"], dtype=np.float64)
    # one ulp, or the sign of a zero (-0.0 and 0.0 are different inputs: log, 1/x)
    x[0, 0] = np.copysign(0.0, -np.copysign(1.0, x[0, 0])) if x[0, 0] == 0 else np.nextafter(x[0, 0], np.inf)
    moved = cache.key(get_engine("mpmath"), lay, {**case.inputs, "x": x}, sized, 128)
    col = cache.key(get_engine("mpmath"), seed_spec.layouts["column"], case.inputs, [], 128)
    digests = {key_digest(k) for k in (base, other_engine, other_bits, fewer, moved, col)}
    assert len(digests) == 6
    assert base["engine"]["version"] == get_engine("mpmath").version()
    # the oracle's view of a case is its float64 values: the same values in another dtype share the entry
    as64 = {k: np.asarray(v, dtype=np.float64) for k, v in case.inputs.items()}
    assert key_digest(cache.key(get_engine("mpmath"), lay, as64, sized, 128)) == key_digest(base)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "other_key"])
def test_a_damaged_entry_is_recomputed_never_trusted(seed_spec, tmp_path, damage):
    lay, case, sized = _case(seed_spec)
    cache = OracleCache(tmp_path)
    fresh = cached_evaluate(lay, case.inputs, sized, engine="flint", cache=cache)
    path = _only_file(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-100] ^= 0x40  # a bit of an array value
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(b"\x00" * len(data))
    else:  # a valid entry for another key, under this key's name (a collision, or a file copied around)
        other = OracleCache(tmp_path / "other")
        lay2, case2, sized2 = _case(seed_spec, "onehot")
        cached_evaluate(lay2, case2.inputs, sized2, engine="flint", cache=other)
        data = bytearray(_only_file(tmp_path / "other").read_bytes())
    path.write_bytes(bytes(data))
    again = OracleCache(tmp_path)
    got = cached_evaluate(lay, case.inputs, sized, engine="flint", cache=again)
    assert again.stats["rejected"] == 1 and again.stats["hits"] == 0 and again.stats["writes"] == 1
    _same(fresh, got)
    third = OracleCache(tmp_path)  # the entry was overwritten with a good one
    cached_evaluate(lay, case.inputs, sized, engine="flint", cache=third)
    assert third.stats["hits"] == 1 and third.stats["rejected"] == 0


def test_a_stale_entry_is_not_found(seed_spec, tmp_path, monkeypatch):
    """A new engine version (or oracle source) makes a new key: the old entry is never read."""
    lay, case, sized = _case(seed_spec)
    cache = OracleCache(tmp_path)
    cached_evaluate(lay, case.inputs, sized, engine="mpmath", cache=cache)
    eng = get_engine("mpmath")
    monkeypatch.setattr(type(eng), "version", lambda self: "0.0-stale")
    again = OracleCache(tmp_path)
    cached_evaluate(lay, case.inputs, sized, engine="mpmath", cache=again)
    assert again.stats["hits"] == 0 and again.stats["misses"] == 1


def test_a_format_change_is_rejected(tmp_path, monkeypatch):
    store = BlobStore(tmp_path, "t")
    store.put({"k": 1}, {"a": np.arange(3.0)}, {"m": 1})
    assert store.get({"k": 1}) is not None
    import conformance.cache.store as cs

    monkeypatch.setattr(cs, "FORMAT", cs.FORMAT + 1)
    fresh = BlobStore(tmp_path, "t")
    assert fresh.get({"k": 1}) is None and fresh.stats.rejected == 1


def _hammer(root: str, seed: int, rounds: int, q: "mp.Queue[str]") -> None:
    """Write and read the same few keys as fast as possible; report anything but a valid entry or a miss."""
    store = BlobStore(root, "race")
    rng = np.random.default_rng(seed)
    try:
        for i in range(rounds):
            k = {"key": int(rng.integers(3))}
            arr = np.full(20000, float(k["key"]))  # large enough that a torn write would show
            store.put(k, {"a": arr}, {"key": k["key"]})
            got = store.get(k)
            if got is not None and not (np.all(got.arrays["a"] == k["key"]) and got.meta["key"] == k["key"]):
                q.put("torn")
        q.put("ok" if store.stats.rejected == 0 else f"rejected {store.stats.rejected}")
    except Exception as exc:  # pragma: no cover - the failure this test exists for
        q.put(f"{type(exc).__name__}: {exc}")


def test_parallel_writers_never_see_a_torn_entry(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), s, 150, q)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = [q.get(timeout=5) for _ in procs]
    assert results == ["ok"] * 3
    assert not list((tmp_path / "race").rglob("*.tmp"))  # no temporary file left behind


def test_case_cache_round_trip_and_check(seed_spec, tmp_path):
    cc = CaseCache(tmp_path)
    cases = generate_cases(seed_spec, "column", "bfloat16", "tiny_inputs", examples=1)
    key = (seed_spec.sha256, "column", "bfloat16", "tiny_inputs", 7, 1)
    assert cc.get(*key) is None
    cc.put(*key, cases)
    got = cc.get(*key)
    assert [c.id for c in got] == [c.id for c in cases]
    for a, b in zip(cases, got):
        for k in a.inputs:
            assert a.inputs[k].dtype == b.inputs[k].dtype
            assert np.array_equal(a.inputs[k].astype(np.float64), b.inputs[k].astype(np.float64))
            assert np.array_equal(np.signbit(a.inputs[k].astype(np.float64)), np.signbit(b.inputs[k].astype(np.float64)))
    # a stored case whose inputs no longer hash to its id is rejected (checksum passes: the content was re-signed)
    store = cc.store
    entry = store.get(cc.key(*key))
    arrays = dict(entry.arrays)
    name = next(iter(arrays))
    arrays[name] = arrays[name] + 1.0
    store.put(cc.key(*key), arrays, entry.meta)
    assert cc.get(*key) is None and cc.stats["rejected"] == 1


def test_cache_location_and_off(monkeypatch, tmp_path):
    monkeypatch.delenv("GRADCONFORM_CACHE", raising=False)
    assert resolve_cache_dir(None) == DEFAULT_DIR == Path(user_cache_dir("gradconform"))  # never the working directory
    assert resolve_cache_dir("on") == DEFAULT_DIR
    assert resolve_cache_dir("off") is None
    assert resolve_cache_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("GRADCONFORM_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir(None) == tmp_path / "env"


def test_verification_cache(seed_spec, tmp_path):
    lay, case, _ = _case(seed_spec, dtype="float64")
    ident = lay.identity("dL/dx")
    cache = OracleCache(tmp_path)
    a = cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=cache)
    b = cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=cache)
    assert a == b == oracle.verify_identity(lay, ident, case.inputs, case.sizes)
    assert cache.verify_store.stats.hits == 1
