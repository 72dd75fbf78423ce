"""The harness version, from the installed distribution's metadata (recorded in every results file)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("gradconform")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
