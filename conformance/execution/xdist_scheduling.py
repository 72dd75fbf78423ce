"""Scheduling the suite on pytest-xdist workers by group, so that no group is computed twice.

All the tests of one (layout, dtype, regime) share that group's cases, oracle
values and backend replies, computed on first use by the process that runs
them. Spread over workers test by test (xdist's ``load``), every worker would
compute every group. This scheduler is xdist's ``loadscope`` with the group as
the scope: a worker receives whole groups; each spec-identity test is a scope
of its own. The group is read from the test's id (``qid-layout-dtype-regime``),
so test ids stay as they are (no ``@group`` suffix: with pytest 9.2 xdist's own
``loadgroup`` no longer manages to rename node ids).

Used for ``-n N`` (xdist's default ``load``) and ``--dist loadgroup``; other
``--dist`` modes are left to xdist.
"""

from __future__ import annotations

from typing import Any

__all__ = ["scope_of", "make_scheduler"]

_GROUPED = ("test_forward", "test_identity")


def scope_of(nodeid: str) -> str | None:
    """The scheduling scope of one of the suite's tests, or None for a test that is not the suite's."""
    head, sep, params = nodeid.partition("[")
    name = head.rsplit("::", 1)[-1]
    if not sep or not params.endswith("]"):
        return None
    params = params[:-1]
    if name in _GROUPED:
        parts = params.rsplit("-", 3)
        if len(parts) == 4:
            return "gradconform:" + ":".join(parts[1:])
    if name == "test_spec_identity":
        return "gradconform-spec:" + params
    return None


def make_scheduler(config: Any, log: Any) -> Any:
    """An xdist scheduler that hands out whole groups (call only where xdist is installed)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)
