"""Describing the built-in backends without importing their frameworks (``gradconform backends`` in a second).

Loading a backend in its worker (:mod:`conformance.execution.worker`) is the exact answer, and what a run does;
it costs an interpreter and an import of torch or jax each (tens of seconds cold on a small machine, for a command
that only lists what is installed). For the built-ins the answer is known from the installed distributions alone:
a backend is available when its framework's distributions are installed and their top-level modules can be found
(``importlib.metadata`` and ``importlib.util.find_spec``, which locate and import nothing), its versions are the
distributions' versions, its dtypes are all of :data:`conformance.backend.DTYPES` (each built-in implements every
one). Devices: ``cuda`` where the framework's installed build supports CUDA and an NVIDIA driver is loaded (its
device files), which is what ``torch.cuda.is_available()`` and ``jax.devices("gpu")`` report on a working machine.

Where the module that ``import`` would find is not the installed distribution's files (a directory shadowing it
on sys.path, an editable install), the probe does not guess and the backend is loaded. What it cannot see: a
distribution that is installed but broken (its import fails). ``gradconform backends
--load`` (and every run) loads the backend in its worker and says so. ``tests/test_probe.py`` checks that the
probe agrees with the loaded backends on this machine. Backends that are not built-in (entry points,
``module:attr``) are never probed this way: their needs are unknown until they are loaded.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from conformance.backend import DTYPES
from conformance.execution.registry import BackendRef
from conformance.execution.wire import BackendInfo

__all__ = ["BuiltinNeeds", "BUILTIN_NEEDS", "probe", "nvidia_driver_loaded"]


@dataclass(frozen=True)
class BuiltinNeeds:
    """What a built-in backend needs: (distribution, top-level module) pairs, in the order its versions are
    listed, the pip extra that installs them, and how its framework is told to support CUDA (``None``: cpu only).
    """

    needs: tuple[tuple[str, str], ...]
    extra: str | None
    cuda: str | None = None  # "torch" (torch/version.py names a CUDA version) | "jax" (a CUDA plugin installed)
    #: distributions listed after the framework's in ``versions`` but not needed to be available (numpy: the
    #: harness's own dependency, always there)
    also_versions: tuple[str, ...] = ()


_NUMPY = BuiltinNeeds(needs=(("numpy", "numpy"), ("ml_dtypes", "ml_dtypes")), extra=None)
_TORCH = BuiltinNeeds(needs=(("torch", "torch"),), extra="torch", cuda="torch", also_versions=("numpy",))
_JAX = BuiltinNeeds(needs=(("jax", "jax"), ("jaxlib", "jaxlib")), extra="jax", cuda="jax", also_versions=("numpy",))

#: The needs of each built-in backend (conformance.execution.registry.BUILTIN), by name.
BUILTIN_NEEDS: dict[str, BuiltinNeeds] = {
    "numpy": _NUMPY, "numpy-composed": _NUMPY,
    "torch": _TORCH, "torch-fused": _TORCH,
    "jax": _JAX, "jax-fused": _JAX,
}

_JAX_CUDA_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_cuda11_plugin")
_TORCH_CUDA = re.compile(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


class _Unsure(Exception):
    """The module that ``import`` would find is not the installed distribution's (a shadowing directory on
    sys.path, an editable install): the probe does not guess, the backend is loaded instead."""


def _installed(dist: str, module: str) -> str | None:
    """The version of ``dist`` when it is installed and ``import module`` would import its files; None when it
    is not installed or the module cannot be found; raises _Unsure when the module found is another one."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    try:
        spec = importlib.util.find_spec(module)  # a top-level name: locates, imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.origin and spec.origin != "namespace" else \
        next(iter(spec.submodule_search_locations or ()), None)
    if origin is None:
        raise _Unsure(module)
    try:
        Path(origin).resolve().relative_to(Path(str(d.locate_file(""))).resolve())
    except ValueError:
        raise _Unsure(module) from None
    return d.version


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def nvidia_driver_loaded() -> bool:
    """Whether an NVIDIA driver is loaded (its control device or its /proc entry exists)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def _torch_cuda_version() -> str | None:
    """The CUDA version torch was built with, read from torch/version.py (None for a cpu build)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    m = _TORCH_CUDA.search(text)
    return m.group(1) if m else None


def _missing_reason(needs: BuiltinNeeds, missing: str) -> str:
    """The reason the backend itself gives when its framework is missing (impls/*), word for word."""
    if needs.extra is None:
        return f"{missing} is not installed (pip install {missing})"
    if needs.extra == "torch":
        return "torch is not installed (pip install 'gradconform[torch]')"
    return f"{missing} is not installed (pip install 'gradconform[{needs.extra}]')"


def probe(ref: BackendRef) -> BackendInfo | None:
    """The description of a built-in backend from its installed distributions, importing none of them; None
    for a backend that is not built-in, or when the module ``import`` would find is not the installed
    distribution's (load the backend in its worker to describe it)."""
    needs = BUILTIN_NEEDS.get(ref.name)
    if ref.source != "built-in" or needs is None:
        return None
    versions: dict[str, str] = {}
    try:
        for dist, module in needs.needs:
            v = _installed(dist, module)
            if v is None:
                return BackendInfo(ref.name, ref.target, ref.source, False, _missing_reason(needs, dist))
            versions[dist] = v
        for dist in needs.also_versions:
            v = _installed(dist, dist)
            if v is not None:
                versions[dist] = v
    except _Unsure:
        return None
    if not _findable(ref.target.partition(":")[0].split(".")[0]):
        return BackendInfo(ref.name, ref.target, ref.source, False,
                           f"the module of backend {ref.name!r} ({ref.target}) cannot be found; reinstall gradconform")
    devices: tuple[str, ...] = ("cpu",)
    if needs.cuda is not None and nvidia_driver_loaded():
        if needs.cuda == "torch":
            cuda = _torch_cuda_version()
            if cuda is not None:
                devices, versions["cuda"] = ("cpu", "cuda"), cuda
        elif any(_findable(p) for p in _JAX_CUDA_PLUGINS):
            devices = ("cpu", "cuda")
    return BackendInfo(name=ref.name, target=ref.target, source=ref.source, available=True, versions=versions,
                       dtypes=tuple(sorted(DTYPES)), devices=devices)
