"""`gradconform bench` runs and writes its report (a smoke test: the figures themselves are not asserted)."""

from __future__ import annotations

import json

import pytest

from conformance.views.cli import main


@pytest.mark.slow
def test_bench_quick_writes_the_report(tmp_path):
    out = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--widths", "5,16", "--repeat", "1", "--sections", "oracle,seed",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Oracle per case, by engine and width" in text and "| 16 |" in text
    assert "## One seed-shape case" in text
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["machine"]["cpu_count"] >= 1 and "load_average" in doc["machine"]
    # the conformance check catches every seeded fault (that it does is the point of the comparison)
    assert doc["faults_caught_by_us"] == {"rel7": True, "rel4": True, "f32": True}
    # a second run of one section keeps the other sections of the file
    assert main(["bench", "--quick", "--widths", "5", "--repeat", "1", "--sections", "oracle",
                 "--out", str(out)]) == 0
    doc2 = json.loads(out.with_suffix(".json").read_text())
    assert doc2["seed_case"] == doc["seed_case"] and len(doc2["oracle"]) < len(doc["oracle"])
