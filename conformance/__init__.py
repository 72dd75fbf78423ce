"""gradconform: a spec-driven conformance suite for gradients.

Public entry points: :func:`conformance.spec.load_spec`, :class:`conformance.run.Run`,
the backend contract in :mod:`conformance.backend`, :func:`conformance.check` (is a
hand-derived gradient conformable and right?), :func:`conformance.lint.lint` (static checks of a
spec), the command line ``gradconform`` and the pytest suite ``pytest conformance --backend NAME``.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("gradconform")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "check"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``check`` is imported on first use: a backend importing the contract pays nothing for it."""
    if name == "check":
        from .identity_check import check

        return check
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
