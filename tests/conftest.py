"""Shared fixtures of the harness's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.spec import Spec, load_spec

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = REPO / "spec"
SEED_SPEC = SPEC_DIR / "two_layer_sigmoid_xent.yaml"


@pytest.fixture(scope="session")
def seed_spec() -> Spec:
    return load_spec(SEED_SPEC)


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED_SPEC.read_text(encoding="utf-8")
