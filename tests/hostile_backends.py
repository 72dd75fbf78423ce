"""Backends that describe themselves badly (test-only): the harness must still write a valid results file.

Loaded by target, e.g. ``tests.hostile_backends:FloatVersions``.
"""

from __future__ import annotations

from typing import Any

from impls.numpy import NumpyBackend


class FloatVersions(NumpyBackend):
    """``versions()`` gives a float."""

    name = "float-versions"

    def versions(self) -> Any:
        return 1.5


class NoneVersions(NumpyBackend):
    """``versions()`` gives None."""

    name = "none-versions"

    def versions(self) -> Any:
        return None


class OddVersions(NumpyBackend):
    """``versions()`` gives a mapping of odd keys and values (None, a float, a nested mapping, a huge text)."""

    name = "odd-versions"

    def versions(self) -> Any:
        return {"lib": None, 2: 3.5, "nested": {"a": 1}, "long": "v" * 100_000}


class OddName(NumpyBackend):
    """A name and description that are not text."""

    name = 12345  # type: ignore[assignment]
    description = None  # type: ignore[assignment]
