"""A test hook that makes a run fail at a named point, to prove that failures leave published outputs intact.

Set ``CHURN_FAIL_AT`` to a point name (for example ``score.after_scoring``, ``publish.after_first_list`` or
``forget.after_first_file``); the run raises :class:`InjectedFailure` when it gets there. Set ``CHURN_KILL_AT``
instead and the process kills itself there with SIGKILL (as ``kill -9`` or a power cut would: no ``finally``, no
rollback). Unset, the hook does nothing.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "CHURN_FAIL_AT"
KILL_ENV = "CHURN_KILL_AT"
# in the order a run meets them
PUBLISH_POINTS = ("publish.after_first_list", "publish.while_staging", "publish.after_staging",
                  "publish.sql_after_first_list", "publish.after_sql_written", "publish.after_pointer",
                  "publish.after_commit", "publish.during_cleanup")
FORGET_POINTS = ("forget.after_plan", "forget.after_published", "forget.after_first_file")  # serving/forget.py
POINTS = ("score.after_scoring", *PUBLISH_POINTS, *FORGET_POINTS)


class InjectedFailure(RuntimeError):
    """Raised where ``$CHURN_FAIL_AT`` asks for a failure."""


def checkpoint(point: str) -> None:
    """Raise :class:`InjectedFailure` when ``$CHURN_FAIL_AT`` names ``point``; die when ``$CHURN_KILL_AT`` does."""
    if point not in POINTS:
        raise ValueError(f"unknown failure point {point!r}; known: {POINTS}")
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(FAULT_ENV) == point:
        raise InjectedFailure(f"failure injected at {point} (${FAULT_ENV})")
