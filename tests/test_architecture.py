"""The layout's rules that import-linter cannot see: module size and function-local imports.

import-linter (``lint-imports``, run in CI, contracts in pyproject.toml) enforces the one-way flow between the
subpackages. What it cannot see is an import placed inside a function to hide a circle from it, or a module
that grew into several jobs. A function-local import of a gradconform module is allowed only where it keeps a
heavy or optional library out of a light entry point, and says so with a ``# lazy:`` comment on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "conformance"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_spec" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_at_most_600_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {lines} lines (at most {MAX_LINES}): split it by job"


def _local_imports(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                internal = node.level > 0 or mod == "conformance" or mod.startswith("conformance.")
            elif isinstance(node, ast.Import):
                internal = any(a.name == "conformance" or a.name.startswith("conformance.") for a in node.names)
            else:
                continue
            if internal and "# lazy:" not in lines[node.lineno - 1]:
                found.append((node.lineno, lines[node.lineno - 1].strip()))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_local_import_of_the_package(path: Path) -> None:
    found = _local_imports(path)
    assert not found, (f"{path.relative_to(PACKAGE.parent)}: function-local imports of gradconform modules "
                       f"(import at the top, or mark a deliberate lazy import with '# lazy: why'): {found}")
