"""gradconform: a spec-driven conformance suite for gradients.

Public entry points: :func:`conformance.run_suite` (the whole suite from Python, typed results),
:func:`conformance.spec.load_spec`, :class:`conformance.run.run.Run`,
the backend contract in :mod:`conformance.backend`, :func:`conformance.check` (is a
hand-derived gradient conformable and right?), :func:`conformance.checks.lint.lint` (static checks of a
spec), the command line ``gradconform`` and the pytest suite ``pytest --pyargs conformance --gc-backend NAME``.
"""

from __future__ import annotations

from conformance._version import __version__

__all__ = ["__version__", "check", "run_suite", "SuiteResult", "TestResult"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``check`` and the suite's API are imported on first use: a backend importing the contract pays nothing."""
    if name == "check":
        from conformance.checks.formula import check  # lazy: keeps `import conformance.backend` light

        return check
    if name in ("run_suite", "SuiteResult", "TestResult"):
        from conformance.views import api  # lazy: keeps `import conformance.backend` light

        return getattr(api, name)
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
