"""Shared set-up of the harness's own tests."""

pytest_plugins = ["pytester"]  # runs `pytest conformance ...` sessions inside tests (tests/test_isolation.py)
