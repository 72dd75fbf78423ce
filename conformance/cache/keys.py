"""The code version part of a cache key: a hash of the source of the modules a cached result depends on.

Modules are named by the module objects themselves (imported where the key is built), never by file
names: a module that moves keeps invalidating the cache when it changes, and a module whose source
cannot be read is an error, not a silent ``<missing>`` (which would let an edited oracle read its
predecessor's entries).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from types import ModuleType

from conformance.errors import GradconformError

__all__ = ["CacheKeyError", "code_hash"]


class CacheKeyError(GradconformError):
    """A module a cache key depends on has no readable source."""


@lru_cache(maxsize=None)
def _module_digest(name: str, origin: str) -> bytes:
    try:
        with open(origin, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError as e:
        raise CacheKeyError(f"cannot key the cache on module {name}: its source {origin} is unreadable ({e}); "
                            "reinstall gradconform or run with --gc-oracle-cache off") from e


def code_hash(*modules: ModuleType) -> str:
    """SHA-256 over the names and sources of ``modules`` (in the order given)."""
    h = hashlib.sha256()
    for m in modules:
        spec = getattr(m, "__spec__", None)
        origin = getattr(spec, "origin", None) or getattr(m, "__file__", None)
        if not origin or not str(origin).endswith(".py"):
            raise CacheKeyError(f"cannot key the cache on module {m.__name__}: it has no Python source file")
        h.update(m.__name__.encode() + b"\0")
        h.update(_module_digest(m.__name__, str(origin)))
    return h.hexdigest()
