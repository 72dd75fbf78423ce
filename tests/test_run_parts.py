"""The parts of a run that do not need a backend: the results collector and the phase clock."""

import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from conformance.run.collector import SECTIONS, ResultsCollector, TestRecord
from conformance.run.phases import PhaseClock


def test_collected_records_go_to_their_section_in_order():
    c = ResultsCollector()
    assert not c.has("tests")
    c.record(TestRecord("a::t[1]", "passed"))
    c.record(TestRecord("a::t[2]", "failed", "why"))
    out = c.sections_json()
    assert list(out) == list(SECTIONS)
    assert out["tests"] == [{"nodeid": "a::t[1]", "outcome": "passed", "message": ""},
                            {"nodeid": "a::t[2]", "outcome": "failed", "message": "why"}]
    assert c.has("tests") and out["refutations"] == []


def test_a_record_for_a_section_the_file_does_not_have_is_refused():
    @dataclass(frozen=True)
    class Stray:
        section: ClassVar[str] = "nowhere"

        def to_json(self) -> dict:
            return {}

    with pytest.raises(ValueError, match="nowhere"):
        ResultsCollector().record(Stray())


def test_the_phase_clock_counts_a_reentered_phase_once():
    clock = PhaseClock()
    with clock.phase("bounds"):
        with clock.phase("bounds"):
            time.sleep(0.02)
        with clock.phase("compare"):
            time.sleep(0.01)
    assert 0.03 <= clock.seconds["bounds"] < 0.5
    assert 0.01 <= clock.seconds["compare"] < clock.seconds["bounds"]
