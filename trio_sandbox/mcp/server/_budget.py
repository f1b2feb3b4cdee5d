"""Requests in flight counted against a bound: per session, and per face."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..protocol._errors import McpError
from ..protocol._messages import LIMIT_REACHED


@attrs.define(eq=False)
class RequestBudget:
    """How many requests run now, against ``limit`` (None: unbounded); ``what`` names whose
    bound it is in the refusal ("a session", "this server")."""

    limit: int | None
    what: str
    used: int = 0

    def refusal(self) -> McpError:
        return McpError(
            LIMIT_REACHED,
            f"too many requests in flight: {self.what} runs at most {self.limit} at once;"
            " retry when one ends",
        )


def first_spent(budgets: Sequence[RequestBudget], count: int) -> RequestBudget | None:
    """The first budget that cannot take ``count`` more requests (None: all can)."""
    for budget in budgets:
        if budget.limit is not None and budget.used + count > budget.limit:
            return budget
    return None


def take(budgets: Sequence[RequestBudget], count: int) -> None:
    """Count ``count`` requests against every budget (checked first with :func:`first_spent`)."""
    for budget in budgets:
        budget.used += count


def give(budgets: Sequence[RequestBudget], count: int) -> None:
    for budget in budgets:
        budget.used -= count
