"""Read a spec file's YAML as plain data that cannot hurt the harness: bounded, unambiguous, finite.

A spec file may come from anyone (a pull request, a downloaded model). YAML
itself can make a small file expensive or ambiguous, so before the schema sees
the data this module refuses:

* a file larger than :data:`MAX_SPEC_BYTES`;
* more than :data:`MAX_ALIASES` aliases (``*name``), a recursive alias, or a
  document whose aliases expand to more than :data:`MAX_EXPANDED_NODES` nodes
  (the "billion laughs" alias bomb: a few hundred bytes that expand to
  gigabytes once anything walks them);
* nesting deeper than :data:`MAX_NESTING` (Python's recursion limit otherwise);
* a key given twice in one mapping (YAML's "last one wins" would silently
  override, e.g., a safety factor);
* a number that is not finite (``.nan``, ``.inf``, ``-.inf``, ``1.0e+999``)
  or an integer beyond float64, anywhere: a NaN error constant makes every
  error bound infinite, and then every answer passes.

Every refusal is a :class:`~conformance.errors.SpecError` naming the file and
the key path (``tolerance.elementary_error_u.sigmoid``) or the line.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from conformance.errors import SpecError

__all__ = ["MAX_SPEC_BYTES", "MAX_ALIASES", "MAX_EXPANDED_NODES", "MAX_NESTING", "safe_yaml_load",
           "check_size", "check_finite"]

#: the largest spec file read, in bytes (the shipped specs are about 20 KB)
MAX_SPEC_BYTES = 1 << 20
#: the most aliases (``*name``) one spec file may use
MAX_ALIASES = 100
#: the most nodes a spec's YAML may have once every alias is expanded
MAX_EXPANDED_NODES = 100_000
#: the deepest nesting of YAML collections
MAX_NESTING = 50


def check_size(size: int, file: str) -> None:
    """Refuse a spec text of ``size`` bytes beyond :data:`MAX_SPEC_BYTES` (before anything parses it)."""
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"the spec file is {size} bytes, more than the limit of {MAX_SPEC_BYTES} bytes; "
                        "a spec is a short description of one model", file=file)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases and refusing duplicate keys."""

    def __init__(self, stream: str, file: str) -> None:
        super().__init__(stream)
        self.file = file
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise SpecError(f"line {mark.line + 1}: more than {MAX_ALIASES} YAML aliases (*name); "
                                "write the values out", file=self.file)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                continue
            if first is not None:
                raise SpecError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                f"(first given on line {first}); YAML would silently keep the last one",
                                file=self.file)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node, file: str) -> None:
    """Refuse a node graph that expands past :data:`MAX_EXPANDED_NODES`, is recursive or nests too deep.

    Aliases make the graph a DAG whose tree can be exponentially larger; the
    sizes are memoised per node, so this walk is linear in the graph."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: Node, depth: int) -> int:
        nid = id(node)
        if nid in sizes:
            return sizes[nid]
        if nid in on_path:
            raise SpecError(f"line {node.start_mark.line + 1}: a recursive YAML alias (a value that contains itself)",
                            file=file)
        if depth > MAX_NESTING:
            raise SpecError(f"line {node.start_mark.line + 1}: YAML nested deeper than {MAX_NESTING} levels", file=file)
        total = 1
        if isinstance(node, (SequenceNode, MappingNode)):
            on_path.add(nid)
            children = node.value if isinstance(node, SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    raise SpecError(f"line {node.start_mark.line + 1}: the YAML expands to more than "
                                    f"{MAX_EXPANDED_NODES} values (an alias bomb?)", file=file)
            on_path.discard(nid)
        sizes[nid] = total
        return total

    size(root, 0)


def safe_yaml_load(text: str, file: str) -> Any:
    """The data of one YAML document, within the limits above; YAML syntax errors become a :class:`SpecError`
    with line and column."""
    check_size(len(text.encode("utf-8", errors="replace")), file)
    loader = _SpecLoader(text, file)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _expanded_size(root, file)
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"not valid YAML: {where}{problem}", file=file) from None
    except RecursionError:
        raise SpecError(f"YAML nested too deeply (the limit is {MAX_NESTING} levels)", file=file) from None
    except ValueError as exc:  # e.g. an integer literal of more digits than Python converts
        raise SpecError(f"not valid YAML: {exc}", file=file) from None


def _spelling(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    return ".inf" if value > 0 else "-.inf"


def check_finite(data: Any, file: str, path: str = "") -> None:
    """Refuse any number in ``data`` that is not finite, or an integer float64 cannot hold, naming its key path."""
    if isinstance(data, bool):
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise SpecError(f"{_spelling(data)} is not a finite number", file=file, key=path or "(top level)")
    elif isinstance(data, int):
        if abs(data) > 2 ** 1023:
            raise SpecError("an integer too large for a float64 (write a finite number within 1e308)",
                            file=file, key=path or "(top level)")
    elif isinstance(data, dict):
        for k, v in data.items():
            check_finite(k, file, path)
            check_finite(v, file, f"{path}.{k}" if path else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            check_finite(v, file, f"{path}[{i}]")
