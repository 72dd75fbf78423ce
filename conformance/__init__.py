"""gradconform: a spec-driven conformance suite for gradients.

Public entry points: :func:`conformance.spec.load_spec`, :class:`conformance.run.run.Run`,
the backend contract in :mod:`conformance.backend`, :func:`conformance.check` (is a
hand-derived gradient conformable and right?), :func:`conformance.checks.lint.lint` (static checks of a
spec), the command line ``gradconform`` and the pytest suite ``pytest conformance --backend NAME``.
"""

from __future__ import annotations

from conformance._version import __version__

__all__ = ["__version__", "check"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``check`` is imported on first use: a backend importing the contract pays nothing for it."""
    if name == "check":
        from conformance.checks.formula import check

        return check
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
