"""Shared fixtures of the harness's own tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from conformance.cache.oracle_cache import ENV_CACHE
from conformance.cache.store import ENV_KEY_FILE
from conformance.spec import Spec, load_spec

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = REPO / "spec"
SEED_SPEC = SPEC_DIR / "two_layer_sigmoid_xent.yaml"


@pytest.fixture(scope="session", autouse=True)
def temporary_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test, and every process it starts, caches into one temporary directory of this session, with a
    temporary key: nothing is written into the checkout or the user's cache, and no test reads entries a
    previous session (or another checkout) left. A test that needs its own location sets the variables itself
    (monkeypatch restores this one afterwards)."""
    root = tmp_path_factory.mktemp("gradconform-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_CACHE, str(root / "cache"))
        mp.setenv(ENV_KEY_FILE, str(root / "cache.key"))
        yield root


@pytest.fixture(scope="session")
def seed_spec() -> Spec:
    return load_spec(SEED_SPEC)


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED_SPEC.read_text(encoding="utf-8")
