"""Scheduling the suite on pytest-xdist workers by group, so that no group is computed twice.

All the tests of one (layout, dtype, regime) share that group's cases, oracle
values and backend replies, computed on first use by the process that runs
them. Spread over workers test by test (xdist's ``load``), every worker would
compute every group. This scheduler is xdist's ``loadscope`` with the group as
the scope: a worker receives whole groups; each spec-identity test is a scope
of its own. The scope is read from the test's id by the caller's ``scope_of``
(conformance.results.naming.scheduling_scope, where the id format is), so test
ids stay as they are (no ``@group`` suffix: with pytest 9.2 xdist's own
``loadgroup`` no longer manages to rename node ids).

Used for ``-n N`` (xdist's default ``load``) and ``--dist loadgroup``; other
``--dist`` modes are left to xdist.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["make_scheduler"]


def make_scheduler(config: Any, log: Any, scope_of: Callable[[str], str | None]) -> Any:
    """An xdist scheduler that hands out whole units of work: tests with the same ``scope_of(nodeid)`` go to
    one worker; a test whose scope is None is xdist's usual scope (call only where xdist is installed)."""
    from xdist.scheduler import LoadScopeScheduling  # lazy: xdist is optional

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)
