"""Finding backends: built-in names, the ``gradconform.backends`` entry points, and ``module:attr``.

Resolution never imports a backend's library in the harness process: a
:class:`BackendRef` is only a name and an import target; loading happens in
the worker process (:mod:`conformance.execution.worker`), so a backend that crashes on
import cannot take the harness down.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from conformance.backend import Backend
from conformance.errors import BackendNotFound

__all__ = ["BackendRef", "BUILTIN", "RENAMED", "BackendRenamed", "renamed", "object_ref", "ENTRY_POINT_GROUP", "find",
           "discover", "load", "BackendLoadError"]

ENTRY_POINT_GROUP = "gradconform.backends"

#: Built-in backends: name -> import target. One naming rule for every library: the plain name is the library's
#: idiomatic stable form (the loss through log_softmax / the fused cross-entropy), ``-composed`` the formula exactly
#: as written (log of softmax), so that a verdict on ``torch`` is a verdict on what a careful torch user writes.
BUILTIN: dict[str, str] = {
    "numpy": "impls.numpy:NumpyBackend",
    "numpy-composed": "impls.numpy:NumpyComposedBackend",
    "torch": "impls.torch:TorchBackend",
    "torch-composed": "impls.torch:TorchComposedBackend",
    "jax": "impls.jax:JaxBackend",
    "jax-composed": "impls.jax:JaxComposedBackend",
}

#: Old names, still accepted with a deprecation notice: old name -> the built-in it now means. Results are
#: recorded under the new name (the backend object names itself).
RENAMED: dict[str, str] = {
    "torch-fused": "torch",
    "jax-fused": "jax",
}


class BackendRenamed(DeprecationWarning):
    """A backend was asked for by a name that is deprecated (see :data:`RENAMED`)."""


def renamed(name: str) -> str | None:
    """The deprecation notice for an old backend name, or None when ``name`` is not an old name."""
    new = RENAMED.get(name)
    if new is None:
        return None
    return (f"backend name {name!r} is deprecated, use {new!r}: the plain name is now the stable form and "
            f"'{new}-composed' the formula as written; these results are recorded as {new!r}")

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class BackendLoadError(Exception):
    """The backend's module could not be imported or its object is not a backend."""


@dataclass(frozen=True)
class BackendRef:
    name: str
    target: str  # "package.module:attr"
    source: str  # "built-in", "entry point (<distribution>)", "module:attr" or "object"
    #: source "object": the backend class or instance itself (the Python API; loaded in process only)
    obj: Any = field(default=None, compare=False, repr=False)


def discover() -> list[BackendRef]:
    """Every backend known by name: built-ins first, then entry points (which may not shadow them)."""
    refs = [BackendRef(n, t, "built-in") for n, t in BUILTIN.items()]
    seen = set(BUILTIN) | set(RENAMED)
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:
            continue
        dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
        refs.append(BackendRef(ep.name, ep.value, f"entry point ({dist})"))
        seen.add(ep.name)
    return refs


def find(name: str) -> BackendRef:
    """Resolve a backend name or a ``package.module:attr`` target. An old name (:data:`RENAMED`) resolves to the
    backend it now means, with a :class:`BackendRenamed` warning."""
    notice = renamed(name)
    if notice is not None:
        warnings.warn(notice, BackendRenamed, stacklevel=2)
        name = RENAMED[name]
    for ref in discover():
        if ref.name == name:
            return ref
    if _TARGET.match(name):
        top = name.partition(":")[0].split(".")[0]
        _search_working_directory(top)
        if importlib.util.find_spec(top) is None:  # locates, imports nothing
            raise BackendNotFound(f"backend {name!r}: no module {top!r} can be found (sys.path: the current "
                                  "directory, installed packages); check the spelling, or install the package")
        return BackendRef(name.split(":")[1], name, "module:attr")
    known = ", ".join(r.name for r in discover())
    raise BackendNotFound(
        f"unknown backend {name!r}. Known backends: {known}. A backend of your own can be given as "
        f"'package.module:attr', or registered in the {ENTRY_POINT_GROUP!r} entry-point group "
        "(see docs/backends.md, 'Writing a backend'); `gradconform backends` lists what is found."
    )


def _search_working_directory(top: str) -> None:
    """Put the working directory on sys.path when it holds ``top`` and sys.path does not (plain ``pytest``, the
    ``gradconform`` script): the worker processes inherit sys.path, so they find the module too."""
    cwd = os.getcwd()
    if importlib.util.find_spec(top) is None and importlib.machinery.PathFinder.find_spec(top, [cwd]) is not None:
        sys.path.insert(0, cwd)


def object_ref(backend: Any) -> BackendRef:
    """A backend given as a class or an instance (the Python API): by its import target when the class can be
    imported by name (then it can run in a worker process), else the object itself (in process only)."""
    cls = backend if inspect.isclass(backend) else type(backend)
    name = str(getattr(backend, "name", None) or cls.__name__)
    target = f"{cls.__module__}:{cls.__qualname__}"
    if inspect.isclass(backend) and cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__:
        return BackendRef(name, target, "module:attr")
    return BackendRef(name, target, "object", obj=backend)


def load(ref: BackendRef) -> Any:
    """Import and instantiate the backend (call this in the worker process)."""
    if ref.obj is not None:
        return _check_backend(ref, ref.obj() if inspect.isclass(ref.obj) else ref.obj)
    module_name, _, attr = ref.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            why = f"module {missing!r} not found (is the package installed, and the name right?)"
        elif missing:
            why = f"{missing} is not installed (needed by {module_name})"
        else:
            why = str(exc)
        raise BackendLoadError(f"backend {ref.name!r} cannot be imported: {why}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BackendLoadError(f"{module_name} has no attribute {attr!r} (backend {ref.name!r})") from None
    if inspect.isclass(obj):
        obj = obj()
    elif callable(obj) and not hasattr(obj, "evaluate"):
        obj = obj()
    return _check_backend(ref, obj)


def _check_backend(ref: BackendRef, obj: Any) -> Any:
    """``obj`` if it is a backend, else a BackendLoadError saying what it lacks."""
    if not callable(getattr(obj, "evaluate", None)):
        raise BackendLoadError(f"{ref.target} is not a backend: it has no evaluate(request) method "
                               "(subclass conformance.backend.Backend)")
    if not isinstance(obj, Backend) and not hasattr(obj, "name"):
        raise BackendLoadError(f"{ref.target} has no 'name' attribute (subclass conformance.backend.Backend)")
    return obj
