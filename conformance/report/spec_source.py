"""Find the spec a results file was judged against, and say honestly where it came from.

A report shows the identities as mathematics, so it needs their expression
trees. Results files written by this harness embed the spec's text
(``spec.text``); its sha256 must equal the recorded ``spec.sha256``. Older
files, or files from other writers, may not: then the spec file named in the
results (``spec.path``) or the shipped spec of that name is used, but only if
its bytes hash to the recorded value. A spec that cannot be found, or whose
hash differs, is reported as such; the report is still built (without the
formulas) rather than failing or, worse, showing formulas that were not the
ones tested.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from conformance.errors import GradconformError
from conformance.spec import Spec, load_spec_text, spec_dir

__all__ = ["SpecSource", "resolve_spec"]


@dataclass(frozen=True)
class SpecSource:
    spec: Spec | None
    status: str  # embedded | file | mismatch | absent | invalid
    note: str

    @property
    def ok(self) -> bool:
        return self.spec is not None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_spec(spec_info: Mapping[str, Any]) -> SpecSource:
    """The spec of a results document's ``spec`` object, verified against its recorded sha256."""
    want = str(spec_info.get("sha256", ""))
    name = str(spec_info.get("name", "?"))
    text = spec_info.get("text")
    problems: list[str] = []
    if isinstance(text, str) and text:
        raw = text.encode("utf-8")
        if _sha(raw) == want:
            try:
                spec = load_spec_text(text, name=f"{name} (embedded in the results file)", digest_of=raw)
            except GradconformError as exc:
                return SpecSource(None, "invalid", f"The spec embedded in the results file does not load: {exc}")
            return SpecSource(spec, "embedded",
                              "The spec was read from the copy embedded in the results file; its sha256 matches "
                              "the recorded one.")
        problems.append("the spec text embedded in the results file does not hash to the recorded sha256")
    candidates: list[Path] = []
    if spec_info.get("path"):
        candidates.append(Path(str(spec_info["path"])))
    candidates.append(spec_dir() / f"{name}.yaml")
    for p in candidates:
        try:
            raw = p.read_bytes()
        except OSError:
            continue
        if _sha(raw) != want:
            problems.append(f"the spec file {p.name} found for it has sha256 {_sha(raw)[:12]}…, not the recorded "
                            f"{want[:12]}…")
            continue
        try:
            spec = load_spec_text(raw.decode("utf-8", errors="replace"), name=str(p), digest_of=raw)
        except GradconformError as exc:
            return SpecSource(None, "invalid", f"The spec file {p.name} has the recorded hash but does not load: {exc}")
        return SpecSource(spec, "file", f"The spec was read from the file {p.name}; its sha256 matches the recorded one.")
    if problems:
        return SpecSource(None, "mismatch",
                          "The spec these results were judged against was not found: " + "; ".join(problems)
                          + ". The identities are listed by name only, since the formulas at hand may not be the ones "
                            "that were tested.")
    return SpecSource(None, "absent",
                      f"The spec file of these results ({name}, sha256 {want[:12]}…) was not found and the results "
                      "file does not embed it; the identities are listed by name only.")
