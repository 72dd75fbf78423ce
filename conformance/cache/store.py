"""A directory of checksummed, atomically written entries: the storage under gradconform's caches.

One file per entry, named by the SHA-256 of its key. A file holds a magic
line, a JSON header (the full key, array descriptions, metadata, and the
SHA-256 of the payload) and a payload of raw array bytes. Reading checks
everything: the magic and format version, that the stored key equals the key
asked for (not only its hash), and the payload checksum. Anything that does
not check out (a truncated or corrupted file, an entry from another format
version, a key collision) is reported as a miss and counted as rejected; the
caller recomputes and overwrites it. A cache entry is never trusted on its
name alone.

Writes go to a temporary file in the same directory and are renamed into
place (``os.replace`` is atomic on POSIX and Windows), so parallel workers
never see a torn entry: a reader gets the old file, the new one, or none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from conformance.atomic import write_bytes_atomic

__all__ = ["BlobStore", "Entry", "StoreStats", "key_digest"]

MAGIC = b"GRADCONFORM-CACHE\n"
FORMAT = 1


def key_digest(key: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a key."""
    return hashlib.sha256(_canonical(key)).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Entry:
    """What an entry holds: named arrays and JSON metadata."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]


@dataclass
class StoreStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0  # files that existed but failed a check (corrupt, stale, foreign): recomputed
    writes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "rejected": self.rejected, "writes": self.writes}


class BlobStore:
    """Entries under ``root/kind/``. Every failure to read or write is a miss, never an exception."""

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.dir = self.root / kind
        self.kind = kind
        self.stats = StoreStats()

    def path_for(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.bin"

    # ------------------------------------------------------------------ read
    def get(self, key: Mapping[str, Any]) -> Entry | None:
        digest = key_digest(key)
        path = self.path_for(digest)
        try:
            data = path.read_bytes()
        except OSError:
            self.stats.misses += 1
            return None
        entry, why = _decode(data, key)
        if entry is None:
            self.stats.misses += 1
            self.stats.rejected += 1
            self.stats.reasons[why] = self.stats.reasons.get(why, 0) + 1
            return None
        self.stats.hits += 1
        return entry

    # ------------------------------------------------------------------ write
    def put(self, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bool:
        digest = key_digest(key)
        path = self.path_for(digest)
        try:
            write_bytes_atomic(path, _encode(key, arrays, meta))
        except (OSError, TypeError, ValueError):
            return False  # a read-only or full disk, an unencodable value: the run goes on uncached
        self.stats.writes += 1
        return True


def _encode(key: Mapping[str, Any], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
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
    header = {"format": FORMAT, "key": key, "arrays": described, "meta": meta,
              "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}
    head = _canonical(header)
    return MAGIC + len(head).to_bytes(8, "little") + head + payload


def _decode(data: bytes, key: Mapping[str, Any]) -> tuple[Entry | None, str]:
    if not data.startswith(MAGIC):
        return None, "magic"
    start = len(MAGIC) + 8
    try:
        n = int.from_bytes(data[len(MAGIC):start], "little")
        header = json.loads(data[start:start + n])
    except (ValueError, UnicodeDecodeError):
        return None, "header"
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None, "format"
    if _canonical(header.get("key")) != _canonical(key):
        return None, "key"
    payload = data[start + n:]
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        return None, "checksum"
    arrays: dict[str, np.ndarray] = {}
    try:
        for d in header["arrays"]:
            raw = payload[d["offset"]:d["offset"] + d["nbytes"]]
            arrays[d["name"]] = np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
    except (KeyError, TypeError, ValueError):
        return None, "arrays"
    return Entry(arrays, header.get("meta", {})), ""
