"""Published conformance reports: per backend (HTML and markdown) and a scoreboard, from results files only.

    build_backend_report(results_path, out_dir)   out_dir/index.html, out_dir/REPORT.md, out_dir/figures/
    build_all(reports_dir)                        every reports_dir/<backend>/ report, then the scoreboard
    build_reports(out_dir, results_files)         what ``gradconform report`` does

Modules, one job each: :mod:`.numbers` (reading and printing figures),
:mod:`.spec_source` (the verified spec of a results file), :mod:`.notation`,
:mod:`.mathml` and :mod:`.latex` (formulas), :mod:`.stats` (counting rules),
:mod:`.context` (the words around the figures), :mod:`.failures` (failure groups),
:mod:`.findings` (failure groups by cause), :mod:`.grades` (accuracy table),
:mod:`.analysis` (putting the aggregates together),
:mod:`.plots` (SVG figures), :mod:`.render` (templates), :mod:`.scoreboard`,
:mod:`.publish` (atomic writes) and :mod:`.build` (putting them together).
See docs/reports.md.
"""

from __future__ import annotations

from .build import build_all, build_backend_report, build_reports, find_results

__all__ = ["build_backend_report", "build_all", "build_reports", "find_results"]
