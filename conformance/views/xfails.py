"""Known failures (``--gc-xfails-file``, the model is array-api-tests' ``--xfails-file``): a text file of test ids.

A listed test is still run; it is recorded as ``xfail`` when it fails (never a pass) and as ``xpass`` when it
passes, so that a baseline that has become stale shows. An id is a test's ``function[param]``
(``test_identity[dL/dx-row-float32-large_logits]``), optionally with the module path before ``::``; it is
matched exactly, never as a substring (``L-row-...`` must not select ``dL/dtheta-row-...``). ``#`` starts a
comment. ``gradconform baseline RESULTS`` writes such a file from a results file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from conformance.statuses import TEST_FAILED, TEST_XFAIL
from conformance.views.suite import SuiteItem

__all__ = ["Xfails", "load_xfails", "parse_xfails", "baseline"]


def _short(test_id: str) -> str:
    """``function[param]`` of a node id (the part after the module path, whatever the rootdir)."""
    return test_id.split("::", 1)[1] if "::" in test_id else test_id


@dataclass(frozen=True)
class Xfails:
    """The entries of a known-failures file (``path``: where they came from, for messages)."""

    path: str
    entries: tuple[str, ...]

    def lists(self, item: SuiteItem) -> bool:
        short = _short(item.node_id)
        return any(_short(e) == short for e in self.entries)

    def unmatched(self, items: Iterable[SuiteItem]) -> list[str]:
        """The entries that name no test of the suite (a typo, or a test that no longer exists)."""
        known = {_short(i.node_id) for i in items}
        return [e for e in self.entries if _short(e) not in known]


def parse_xfails(text: str, path: str = "<xfails>") -> Xfails:
    entries = []
    for line in text.splitlines():
        entry = line.split(" #", 1)[0].strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
    return Xfails(path, tuple(entries))


def load_xfails(path: str | Path) -> Xfails:
    return parse_xfails(Path(path).read_text(encoding="utf-8"), str(path))


def baseline(doc: Mapping[str, Any]) -> list[str]:
    """The known-failures file's lines for a results document: every test that failed (or was a known failure)."""
    backend = doc.get("backend", {})
    head = [f"# known failures of {backend.get('requested') or backend.get('name')} "
            f"(spec {doc.get('spec', {}).get('name', '?')}, seed {doc.get('settings', {}).get('seed', '?')})"]
    failed = sorted({_short(str(t["nodeid"])) for t in doc.get("tests", [])
                     if t.get("outcome") in (TEST_FAILED, TEST_XFAIL)})
    return head + failed
