"""Loads the gradconform pytest plugin for ``pytest conformance`` (see conformance/pytest_plugin.py)."""

from conformance.views.pytest_plugin import (  # noqa: F401  (pytest finds hooks and fixtures by name)
    gradconform,
    pytest_collection_modifyitems,
    pytest_addoption,
    pytest_configure,
    pytest_generate_tests,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_xdist_make_scheduler,
)
