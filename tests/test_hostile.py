"""Nothing a backend returns or a cache holds is trusted (docs/results.md, "Threat model").

A backend's results cross into the harness as plain data (never pickle), its
process group dies with its worker, its messages are capped and its inputs
are its own copies; a cache entry is authenticated with a key kept outside
the cache, a refused entry (forged, a FIFO, a symlink, oversized) is a miss,
and an audit re-derives hits.
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import conformance.cache.store as store_module
from conformance.cache.oracle_cache import OracleCache, cached_evaluate, cached_verify_identity
from conformance.cache.store import BlobStore, CacheAuditError, CacheAuthError
from conformance.cases.generate import generate_cases
from conformance.execution import wire
from conformance.run.run import Run
from conformance.spec.model import load_spec
from tests.isolation_backends import MARKER_ENV

SPEC = load_spec(None)
ROOT = Path(__file__).resolve().parent.parent


def _target(cls: str) -> str:
    return f"tests.isolation_backends:{cls}"


@pytest.fixture(scope="module")
def case():
    return generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(path))  # inherited by the worker process (spawned after this)
    return path


@pytest.fixture(autouse=True)
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "cache.key"
    monkeypatch.setenv(store_module.ENV_KEY_FILE, str(path))
    monkeypatch.delenv(store_module.ENV_AUDIT, raising=False)
    return path


def _by_kind(records):
    return {kind: {(r.status, r.detail) for r in records if r.kind == kind} for kind in ("value", "gradient")}


# ---------------------------------------------------------------------------- results are plain data

def test_a_result_that_runs_code_when_unpickled_is_an_error_not_a_command(case, marker):
    with Run(SPEC, _target("ReturnsCodeOnUnpickle")) as run:
        records, _ = run.evaluate_case(case)
    assert not marker.exists()  # nothing ran in the harness
    kinds = _by_kind(records)
    assert kinds["gradient"] == {("error", "exception")} and kinds["value"] == {("pass", "")}
    assert all("result has dtype object" in r.message for r in records if r.kind == "gradient")


def test_a_result_that_aborts_when_unpickled_does_not_kill_the_harness(case):
    script = ("from conformance.run.run import Run; from conformance.spec.model import load_spec; "
              "from conformance.cases.generate import generate_cases; s = load_spec(None); "
              "c = generate_cases(s, 'row', 'float32', 'benign', examples=1)[0]; "
              f"r = Run(s, '{_target('ReturnsAbortOnUnpickle')}'); "
              "print(sorted({(x.kind, x.status) for x in r.evaluate_case(c)[0]})); r.close()")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "('gradient', 'error')" in done.stdout and "('value', 'pass')" in done.stdout


def test_an_object_only_the_worker_can_import_costs_only_its_quantities(case):
    with Run(SPEC, _target("ReturnsWorkerOnlyObject")) as run:
        records, _ = run.evaluate_case(case)
        assert run.worker.restarts == 0
    kinds = _by_kind(records)
    assert kinds["gradient"] == {("error", "exception")} and kinds["value"] == {("pass", "")}


def test_garbage_on_the_connection_is_an_error_and_the_run_goes_on():
    f16 = generate_cases(SPEC, "row", "float16", "benign", examples=1)[0]
    f32 = generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]
    with Run(SPEC, _target("WritesGarbageOnFloat16"), timeout=10) as run:
        bad, _ = run.evaluate_case(f16)
        good, _ = run.evaluate_case(f32)
        assert run.worker.restarts == 1
        start = time.monotonic()
    assert time.monotonic() - start < 10  # close() does not hang on the garbled connection
    assert {(r.status, r.detail) for r in bad} == {("error", "exception")}
    assert all("sent an unreadable reply" in r.message for r in bad)
    assert {r.status for r in good} == {"pass"}


def _reply_header(desc: dict, payload: bytes = b"\0" * 8) -> tuple[dict, memoryview]:
    return {"status": "ok", "message": "", "seconds": 0.0, "values": [{"id": "q", "array": desc}]}, memoryview(payload)


@pytest.mark.parametrize("desc, why", [
    ({"dtype": "object", "order": "|", "shape": [1], "offset": 0, "nbytes": 8}, "not a numeric dtype"),
    ({"dtype": "void", "order": "|", "shape": [1], "offset": 0, "nbytes": 8}, "not a numeric dtype"),
    ({"dtype": "float64", "order": "<", "shape": [2], "offset": 0, "nbytes": 8}, "needs 16 bytes"),
    ({"dtype": "float64", "order": "<", "shape": [1], "offset": 4, "nbytes": 8}, "outside a payload"),
    ({"dtype": "float64", "order": "<", "shape": [-1], "offset": 0, "nbytes": 8}, "is not a list"),
    ({"dtype": "float64", "order": "|", "shape": [1], "offset": 0, "nbytes": 8}, "byte order"),
])
def test_a_bad_array_description_is_that_quantitys_error(desc, why):
    reply = wire.decode_reply(*_reply_header(desc))
    assert reply.status == "ok" and reply.values["q"][0] == "error" and why in reply.values["q"][1]


def test_a_good_array_round_trips_bit_for_bit_and_in_its_layout():
    from conformance.backend import numpy_dtype

    arrays = {"c": np.arange(6.0).reshape(2, 3), "f": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
              "b": np.array([[1.5, -0.0]], dtype=numpy_dtype("bfloat16")), "be": np.arange(3, dtype=">f8"),
              "s": np.array(7)}
    data = wire.encode_reply(wire.Reply("ok", arrays))
    got = wire.decode_reply(*wire.unpack(data[wire.FRAME.size:]))
    for k, a in arrays.items():
        assert got.values[k].dtype == a.dtype and got.values[k].shape == a.shape
        assert got.values[k].tobytes(order="A") == a.tobytes(order="A")
        assert got.values[k].flags.f_contiguous == a.flags.f_contiguous
        assert got.values[k].flags.writeable


@pytest.mark.parametrize("body", [b"", b"\x05\x00\x00\x00{}", b"\x02\x00\x00\x00[]", b"\x02\x00\x00\x00{x",
                                  pickle.dumps({"status": "ok"})])
def test_a_malformed_message_is_a_protocol_error(body):
    with pytest.raises(wire.ProtocolError):
        wire.decode_reply(*wire.unpack(body))


# ---------------------------------------------------------------------------- process groups

def _dead(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is gone (or a zombie waiting for init) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "fork"),
                                reason="reads process states from /proc (Linux)")


@needs_proc
def test_a_backend_that_forks_then_crashes_is_a_prompt_crash_and_leaves_nothing(case, marker):
    with Run(SPEC, _target("ForksThenAborts"), timeout=30) as run:
        start = time.monotonic()
        records, _ = run.evaluate_case(case)
        elapsed = time.monotonic() - start
    assert {r.status for r in records} == {"crashed"}, records[0].message
    assert "killed by signal SIGABRT" in records[0].message
    assert elapsed < 10  # noticed by polling the process, not after the 30 s timeout the grandchild would cause
    assert _dead(int(marker.read_text()))


@needs_proc
@pytest.mark.parametrize("cls", ["ForksAndAnswers", "ForksThenHangs"])
def test_forked_children_die_with_the_worker(case, marker, cls):
    with Run(SPEC, _target(cls), timeout=2) as run:
        records, _ = run.evaluate_case(case)
        pid = int(marker.read_text())
        if cls == "ForksThenHangs":
            assert {r.status for r in records} == {"timed_out"}
            assert _dead(pid)  # killed with the hung worker
        else:
            assert {r.status for r in records} == {"pass"}
            assert not _dead(pid, within=0.2)  # alive while the worker is
    assert _dead(pid)  # and gone after close


# ---------------------------------------------------------------------------- messages are capped

def test_a_huge_message_is_capped_and_says_so():
    f32 = generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]
    f64 = generate_cases(SPEC, "row", "float64", "benign", examples=1)[0]
    with Run(SPEC, _target("HugeMessages")) as run:
        raised, _ = run.evaluate_case(f32)
        declined, _ = run.evaluate_case(f64)
    for r in raised + [r for r in declined if r.kind == "gradient"]:
        assert len(r.message) <= wire.MESSAGE_LIMIT + 40, len(r.message)
        assert r.message.endswith(" chars]") and "... [truncated, " in r.message
    assert {r.status for r in raised} == {"error"}
    assert {r.status for r in declined if r.kind == "gradient"} == {"not_supported"}


# ---------------------------------------------------------------------------- inputs are the backend's own

@pytest.mark.parametrize("isolate", [False, True])
def test_a_backend_that_writes_to_its_inputs_gets_an_error_and_the_case_is_untouched(isolate):
    case = generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]
    before = {k: v.copy() for k, v in case.inputs.items()}
    with Run(SPEC, _target("ZeroesInputs"), isolate=isolate) as run:
        records, _ = run.evaluate_case(case)
    assert {(r.status, r.detail) for r in records} == {("error", "exception")}
    assert "read-only" in records[0].message
    for k, v in before.items():
        assert np.array_equal(case.inputs[k], v)


# ---------------------------------------------------------------------------- authenticated caches

def _capture_puts(monkeypatch) -> list[tuple[str, dict, dict, dict]]:
    """Record every cache write (kind, key, arrays, meta), as an attacker who sees the cache would."""
    seen: list[tuple[str, dict, dict, dict]] = []
    original = BlobStore.put

    def put(self, key, arrays, meta):
        seen.append((self.kind, dict(key), {k: np.array(v) for k, v in arrays.items()}, dict(meta)))
        return original(self, key, arrays, meta)

    monkeypatch.setattr(BlobStore, "put", put)
    return seen


def _forge(root: Path, writes, kind: str, scale: float, monkeypatch, key_path: Path) -> None:
    """Rewrite the entries of ``kind`` with well-formed values times ``scale``, signed with a key of one's own."""
    monkeypatch.setenv(store_module.ENV_KEY_FILE, str(key_path.with_name("attacker.key")))
    for k, key, arrays, meta in list(writes):
        if k == kind:
            BlobStore(root, kind).put(key, {n: a * scale for n, a in arrays.items()}, meta)
    monkeypatch.setenv(store_module.ENV_KEY_FILE, str(key_path))


@pytest.mark.parametrize("kind, scale, backend, expected", [
    ("oracle", 2.0, "numpy", "pass"),  # a forged oracle would fail a right backend
    ("bounds", 1e18, _target("SkewedGradients"), "fail"),  # forged bounds would pass a wrong one
])
def test_a_forged_entry_is_rejected_and_the_verdicts_stand(tmp_path, monkeypatch, key_file, kind, scale, backend,
                                                           expected):
    case = generate_cases(SPEC, "row", "float64", "benign", examples=1)[0]
    cache = tmp_path / "cache"
    writes = _capture_puts(monkeypatch)
    with Run(SPEC, "numpy", isolate=False, cache_dir=cache) as run:
        run.evaluate_case(case)
    _forge(cache, writes, kind, scale, monkeypatch, key_file)
    with Run(SPEC, backend, isolate=False, cache_dir=cache) as run:
        records, _ = run.evaluate_case(case)
        stats = run.oracle_cache.stats if kind == "oracle" else run.oracle_cache.stats["bounds"]
    assert {r.status for r in records if r.kind == "gradient"} == {expected}
    assert stats["rejected"] >= 1 and stats["hits"] == 0


def test_the_key_is_made_once_private_and_outside_the_cache(tmp_path, key_file):
    store = BlobStore(tmp_path / "cache", "t")
    store.put({"k": 1}, {"a": np.arange(3.0)}, {})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    made = key_file.read_bytes()
    assert BlobStore(tmp_path / "cache", "t").get({"k": 1}) is not None and key_file.read_bytes() == made
    assert not list((tmp_path / "cache").rglob("*.key"))


def test_a_key_file_others_can_write_is_refused(tmp_path, key_file):
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"k" * 32)
    key_file.chmod(0o666)
    with pytest.raises(CacheAuthError, match="writable by other users"):
        BlobStore(tmp_path, "t").get({"k": 1})


def test_a_key_that_cannot_be_made_means_no_cache_not_an_unauthenticated_one(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(store_module.ENV_KEY_FILE, str(blocker / "sub" / "cache.key"))  # under a file: unmakeable
    store = BlobStore(tmp_path / "cache", "t")
    with pytest.warns(RuntimeWarning, match="cache is not used"):
        assert not store.put({"k": 1}, {"a": np.arange(3.0)}, {})
    with pytest.warns(RuntimeWarning):
        assert store.get({"k": 1}) is None
    assert store.stats.writes == 0 and not (tmp_path / "cache").exists()


def _entry_path(root: Path) -> tuple[BlobStore, Path]:
    store = BlobStore(root, "t")
    return store, store.path_for(store_module.key_digest({"k": 1}))


def _returns_quickly(fn, seconds: float = 5.0):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert out, "the cache blocked on the entry"
    return out[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_entry_is_refused_without_blocking_and_then_replaced(tmp_path):
    store, path = _entry_path(tmp_path)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert _returns_quickly(lambda: store.get({"k": 1})) is None
    assert store.stats.rejected == 1
    assert store.put({"k": 1}, {"a": np.arange(3.0)}, {}) and path.is_file()
    assert BlobStore(tmp_path, "t").get({"k": 1}) is not None


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="O_NOFOLLOW is POSIX")
def test_a_symlinked_entry_is_refused_even_to_a_valid_entry(tmp_path):
    elsewhere, good = _entry_path(tmp_path / "elsewhere")
    elsewhere.put({"k": 1}, {"a": np.arange(3.0)}, {})
    store, path = _entry_path(tmp_path / "cache")
    path.parent.mkdir(parents=True)
    path.symlink_to(good)
    assert store.get({"k": 1}) is None and store.stats.rejected == 1
    path.unlink()
    path.symlink_to("/dev/zero")  # endless: refused at open, never read
    assert _returns_quickly(lambda: store.get({"k": 1})) is None and store.stats.rejected == 2


def test_an_oversized_entry_is_refused_unread(tmp_path, monkeypatch):
    store, _ = _entry_path(tmp_path)
    store.put({"k": 1}, {"a": np.arange(1000.0)}, {})
    monkeypatch.setattr(store_module, "MAX_ENTRY_BYTES", 1000)
    fresh = BlobStore(tmp_path, "t")
    assert fresh.get({"k": 1}) is None and fresh.stats.reasons == {"not_a_file": 1}


# ---------------------------------------------------------------------------- audits

def _oracle_case():
    lay = SPEC.layouts["row"]
    case = generate_cases(SPEC, "row", "float32", "benign", examples=1)[0]
    sized = [i for i in lay.identities if all(case.sizes.get(d) == v for d, v in i.when.items())]
    return lay, case, sized


def test_an_audit_of_honest_hits_passes(tmp_path, monkeypatch):
    lay, case, sized = _oracle_case()
    cached_evaluate(lay, case.inputs, sized, engine="flint", cache=OracleCache(tmp_path))
    monkeypatch.setenv(store_module.ENV_AUDIT, "1")
    audited = OracleCache(tmp_path)
    cached_evaluate(lay, case.inputs, sized, engine="flint", cache=audited)
    assert audited.store.stats.hits == 1 and audited.store.stats.audited == 1


def test_an_audit_fails_loudly_on_a_wrong_entry_signed_with_the_key(tmp_path, monkeypatch):
    """The key leaked (or the cache key misses some code): only re-deriving shows the entry is wrong."""
    lay, case, sized = _oracle_case()
    writes = _capture_puts(monkeypatch)
    cached_evaluate(lay, case.inputs, sized, engine="flint", cache=OracleCache(tmp_path))
    (kind, key, arrays, meta), = writes
    BlobStore(tmp_path, kind).put(key, {n: a * 2 for n, a in arrays.items()}, meta)  # with the real key
    assert cached_evaluate(lay, case.inputs, sized, engine="flint", cache=OracleCache(tmp_path, audit_fraction=0))
    with pytest.raises(CacheAuditError, match="differs from a fresh evaluation"):
        cached_evaluate(lay, case.inputs, sized, engine="flint", cache=OracleCache(tmp_path, audit_fraction=1.0))


def test_an_audit_of_verifications_and_bounds_fails_loudly(tmp_path, monkeypatch):
    lay, case, _ = _oracle_case()
    ident = lay.identity("dL/dx")
    writes = _capture_puts(monkeypatch)
    cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=OracleCache(tmp_path))
    (kind, key, arrays, meta), = [w for w in writes if w[0] == "verify"]
    BlobStore(tmp_path, kind).put(key, arrays, {**meta, "verdict": "refuted"})
    with pytest.raises(CacheAuditError, match="verification"):
        cached_verify_identity(lay, ident, case.inputs, case.sizes, cache=OracleCache(tmp_path, audit_fraction=1))

    with Run(SPEC, "numpy", isolate=False, cache_dir=tmp_path / "run") as run:
        run.evaluate_case(case)
    for kind, key, arrays, meta in list(writes):
        if kind == "bounds":
            BlobStore(tmp_path / "run", kind).put(key, {n: a * 1e18 for n, a in arrays.items()}, meta)
    monkeypatch.setenv(store_module.ENV_AUDIT, "1")
    with Run(SPEC, "numpy", isolate=False, cache_dir=tmp_path / "run") as run:
        with pytest.raises(CacheAuditError, match="bounds"):
            run.evaluate_case(case)


def test_a_bad_audit_fraction_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(store_module.ENV_AUDIT, "lots")
    with pytest.raises(CacheAuditError, match="GRADCONFORM_CACHE_AUDIT"):
        OracleCache(tmp_path)
    with pytest.raises(CacheAuditError):
        OracleCache(tmp_path, audit_fraction=1.5)
