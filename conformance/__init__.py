"""gradconform: a spec-driven conformance suite for gradients.

Public entry points: :func:`conformance.spec.load_spec`, :class:`conformance.run.Run`,
the backend contract in :mod:`conformance.backend`, the command line
``gradconform`` and the pytest suite ``pytest conformance --backend NAME``.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("gradconform")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
