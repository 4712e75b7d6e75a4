"""A test hook that makes a run fail at a named point, to prove that failures leave published outputs intact.

Set ``CHURN_FAIL_AT`` to a point name (for example ``score.after_scoring`` or ``publish.after_first_list``); the
run raises :class:`InjectedFailure` when it gets there. Unset, the hook does nothing.
"""

from __future__ import annotations

import os

FAULT_ENV = "CHURN_FAIL_AT"
POINTS = ("score.after_scoring", "publish.after_staging", "publish.sql_after_first_list", "publish.after_first_list")


class InjectedFailure(RuntimeError):
    """Raised where ``$CHURN_FAIL_AT`` asks for a failure."""


def checkpoint(point: str) -> None:
    """Raise :class:`InjectedFailure` when ``$CHURN_FAIL_AT`` names ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown failure point {point!r}; known: {POINTS}")
    if os.environ.get(FAULT_ENV) == point:
        raise InjectedFailure(f"failure injected at {point} (${FAULT_ENV})")
