"""The statuses of a check, one vocabulary for the judge, the run, the results files and the reports.

Distinct and counted honestly: ``not_supported`` is never a pass; ``crashed`` and ``timed_out`` are the backend's
process failing, ``error`` a quantity that could not be judged (an exception, an oracle failure, an unreadable
answer). A base module, so that the report layer can name statuses without importing the judge.
"""

from __future__ import annotations

__all__ = ["PASS", "FAIL", "ERROR", "NOT_SUPPORTED", "CRASHED", "TIMED_OUT", "STATUSES", "TEST_PASSED", "TEST_FAILED",
           "TEST_NOT_SUPPORTED", "TEST_XFAIL", "TEST_XPASS", "TEST_OUTCOMES"]

PASS = "pass"
FAIL = "fail"
ERROR = "error"
NOT_SUPPORTED = "not_supported"
CRASHED = "crashed"
TIMED_OUT = "timed_out"

#: every status, in the order reports list them
STATUSES: tuple[str, ...] = (PASS, FAIL, ERROR, NOT_SUPPORTED, CRASHED, TIMED_OUT)

#: the outcome of a test of the suite (the results file's ``tests``): ``xfail`` is a failure listed in a
#: known-failures file (``--gc-xfails-file``), never a pass; ``xpass`` a listed test that passed
TEST_PASSED = "passed"
TEST_FAILED = "failed"
TEST_NOT_SUPPORTED = "not_supported"
TEST_XFAIL = "xfail"
TEST_XPASS = "xpass"
TEST_OUTCOMES: tuple[str, ...] = (TEST_PASSED, TEST_FAILED, TEST_NOT_SUPPORTED, TEST_XFAIL, TEST_XPASS)
