"""A directory of authenticated, atomically written entries: the storage under gradconform's caches.

One file per entry, named by the SHA-256 of its key. A file holds a magic
line, an HMAC-SHA256 tag, a JSON header (the full key, array descriptions,
metadata) and a payload of raw array bytes. The tag covers everything after
it and is made with a secret key kept outside the cache directory (see
:func:`key_file`), so whoever can write to the cache but not read the key
cannot forge an entry: an entry rewritten with well-formed wrong values fails
authentication like a corrupted one. Reading checks everything: the file is
a regular file (never a FIFO, a device or a symlink, which are refused
without being read), of bounded size, with the right magic, a valid tag, the
format version, and the stored key equal to the key asked for (not only its
hash). Anything that does not check out is reported as a miss and counted as
rejected; the caller recomputes and overwrites it. A cache entry is never
trusted on its name alone.

An audit mode re-derives a sample of the hits (``audit_fraction``, or
``$GRADCONFORM_CACHE_AUDIT``): the caches above this one compare the fresh
result with the stored one and raise :class:`CacheAuditError` on a
difference (a leaked key, or code a key does not cover).

Writes go to a temporary file in the same directory and are renamed into
place (``os.replace`` is atomic on POSIX and Windows), so parallel workers
never see a torn entry: a reader gets the old file, the new one, or none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import platformdirs

from conformance.atomic import create_exclusive, write_bytes_atomic
from conformance.errors import GradconformError

__all__ = ["BlobStore", "Entry", "StoreStats", "key_digest", "key_file", "CacheAuthError", "CacheAuditError",
           "ENV_KEY_FILE", "ENV_AUDIT", "MAX_ENTRY_BYTES"]

MAGIC = b"GRADCONFORM-CACHE\n"
FORMAT = 2
ENV_KEY_FILE = "GRADCONFORM_CACHE_KEY_FILE"
ENV_AUDIT = "GRADCONFORM_CACHE_AUDIT"
MAX_ENTRY_BYTES = 256 * 2**20  # an entry is kilobytes; anything near this is not one of ours
_TAG_BYTES = hashlib.sha256().digest_size
_KEY_MIN, _KEY_MAX = 16, 4096


class CacheAuthError(GradconformError):
    """The cache's secret key file is unusable (too short, too long, or writable by others)."""


class CacheAuditError(GradconformError):
    """An audited cache hit differs from the result computed afresh: the cache cannot be trusted."""


def key_digest(key: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a key."""
    return hashlib.sha256(_canonical(key)).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def key_file() -> Path:
    """Where the cache's secret key lives: ``$GRADCONFORM_CACHE_KEY_FILE``, else ``cache.key`` in the user's
    configuration directory (never in the cache directory, which is what the key protects)."""
    env = os.environ.get(ENV_KEY_FILE)
    return Path(env) if env else Path(platformdirs.user_config_dir("gradconform")) / "cache.key"


def _read_regular(path: Path, limit: int, *, follow: bool) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes: a FIFO or a device is refused
    without reading (and without blocking), and with ``follow=False`` so is a symlink. OSError otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} holds {st.st_size} bytes, over the limit of {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise OSError(f"{path} grew past the limit of {limit} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


_keys: dict[str, bytes] = {}


def _secret(path: Path) -> bytes:
    """The HMAC key in ``path``, created (random, mode 0600) on first use; read once per process."""
    k = str(path)
    if k not in _keys:
        if not path.exists():
            create_exclusive(path, secrets.token_bytes(32), mode=0o600)
        data = _read_regular(path, _KEY_MAX, follow=True)  # a key file may be a link (a mounted CI secret)
        if not _KEY_MIN <= len(data) <= _KEY_MAX:
            raise CacheAuthError(f"the cache key file {path} holds {len(data)} bytes; it needs {_KEY_MIN} to "
                                 f"{_KEY_MAX} (delete it to have a new one made, or set ${ENV_KEY_FILE})")
        if os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CacheAuthError(f"the cache key file {path} is writable by other users, who could then forge "
                                 f"cache entries: chmod 600 {path}")
        _keys[k] = data
    return _keys[k]


def _audit_fraction(value: float | None) -> float:
    if value is None:
        text = os.environ.get(ENV_AUDIT, "").strip()
        try:
            value = float(text) if text else 0.0
        except ValueError:
            raise CacheAuditError(f"${ENV_AUDIT}={text!r} is not a fraction between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise CacheAuditError(f"the cache audit fraction {value} is not between 0 and 1")
    return value


@dataclass(frozen=True)
class Entry:
    """What an entry holds: named arrays and JSON metadata."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]


@dataclass
class StoreStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0  # files that existed but failed a check (corrupt, forged, stale, foreign): recomputed
    writes: int = 0
    audited: int = 0  # hits re-derived by the audit mode
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "rejected": self.rejected, "writes": self.writes}

    def reject(self, why: str) -> None:
        """Count a file that exists but is not a usable entry (a miss the caller recomputes)."""
        self.misses += 1
        self.rejected += 1
        self.reasons[why] = self.reasons.get(why, 0) + 1


class BlobStore:
    """Entries under ``root/kind/``. Every failure to read or write is a miss, never an exception.

    ``audit_fraction``: the share of hits the caller should re-derive (:meth:`audit`); None reads
    ``$GRADCONFORM_CACHE_AUDIT`` (unset: 0).
    """

    def __init__(self, root: str | Path, kind: str, *, audit_fraction: float | None = None) -> None:
        self.root = Path(root)
        self.dir = self.root / kind
        self.kind = kind
        self.stats = StoreStats()
        self.audit_fraction = _audit_fraction(audit_fraction)
        self._rng = random.Random()

    def path_for(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.bin"

    def _key(self) -> bytes | None:
        try:
            return _secret(key_file())
        except OSError as exc:  # no home directory, a read-only one: run uncached rather than unauthenticated
            warnings.warn(f"the gradconform cache is not used: its key file {key_file()} cannot be read or made "
                          f"({exc}); set ${ENV_KEY_FILE} to a writable path", RuntimeWarning, stacklevel=3)
            return None

    def audit(self) -> bool:
        """Whether the caller should re-derive the hit it just got and compare (counted as audited)."""
        if self.audit_fraction <= 0 or self._rng.random() >= self.audit_fraction:
            return False
        self.stats.audited += 1
        return True

    # ------------------------------------------------------------------ read
    def get(self, key: Mapping[str, Any]) -> Entry | None:
        secret = self._key()
        if secret is None:
            self.stats.misses += 1
            return None
        path = self.path_for(key_digest(key))
        try:
            data = _read_regular(path, MAX_ENTRY_BYTES, follow=False)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except OSError:  # a symlink, FIFO, device, directory or oversized file where an entry should be
            self.stats.reject("not_a_file")
            return None
        entry, why = _decode(data, key, secret)
        if entry is None:
            self.stats.reject(why)
            return None
        self.stats.hits += 1
        return entry

    def unhit(self, why: str) -> None:
        """Turn the last hit into a rejection: its contents did not make sense to the cache above."""
        self.stats.hits -= 1
        self.stats.reject(why)

    # ------------------------------------------------------------------ write
    def put(self, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bool:
        secret = self._key()
        if secret is None:
            return False
        path = self.path_for(key_digest(key))
        try:
            write_bytes_atomic(path, _encode(key, arrays, meta, secret))
        except (OSError, TypeError, ValueError):
            return False  # a read-only or full disk, an unencodable value: the run goes on uncached
        self.stats.writes += 1
        return True


def _encode(key: Mapping[str, Any], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], secret: bytes) -> bytes:
    parts: list[bytes] = []
    described = []
    offset = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects")
        raw = a.tobytes()
        described.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                          "nbytes": len(raw)})
        parts.append(raw)
        offset += len(raw)
    payload = b"".join(parts)
    header = {"format": FORMAT, "key": key, "arrays": described, "meta": meta, "payload_bytes": len(payload)}
    head = _canonical(header)
    body = len(head).to_bytes(8, "little") + head + payload
    return MAGIC + hmac.new(secret, body, hashlib.sha256).digest() + body


def _decode(data: bytes, key: Mapping[str, Any], secret: bytes) -> tuple[Entry | None, str]:
    if not data.startswith(MAGIC):
        return None, "magic"
    tag, body = data[len(MAGIC):len(MAGIC) + _TAG_BYTES], data[len(MAGIC) + _TAG_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(secret, body, hashlib.sha256).digest()):
        return None, "authentication"  # corrupted, or written by someone without the key: nothing is parsed
    try:
        n = int.from_bytes(body[:8], "little")
        header = json.loads(body[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return None, "header"
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None, "format"
    if _canonical(header.get("key")) != _canonical(key):
        return None, "key"
    payload = body[8 + n:]
    if len(payload) != header.get("payload_bytes"):
        return None, "length"
    arrays: dict[str, np.ndarray] = {}
    try:
        for d in header["arrays"]:
            dt = np.dtype(d["dtype"])
            if dt.hasobject:
                return None, "arrays"
            raw = payload[d["offset"]:d["offset"] + d["nbytes"]]
            arrays[d["name"]] = np.frombuffer(raw, dtype=dt).reshape(d["shape"]).copy()
    except (KeyError, TypeError, ValueError):
        return None, "arrays"
    return Entry(arrays, header.get("meta", {})), ""
