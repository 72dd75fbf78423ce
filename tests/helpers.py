"""Shared helpers of the harness's own tests: spec copies broken on purpose."""

from __future__ import annotations

from pathlib import Path

from conformance.spec import default_spec_path

SEED_SPEC = default_spec_path()


def spec_copy(tmp_path: Path, *replacements: tuple[str, str], name: str = "broken.yaml") -> Path:
    """The seed spec with each (old, new) replaced exactly once (a test that edits nothing is a broken test)."""
    text = SEED_SPEC.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"the edit {old!r} must match exactly once, matches {text.count(old)}"
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
