"""The package's one policy for exception groups (DESIGN.md §6, strict exception groups).

A nursery wraps what its tasks raise in a group, so an ``except McpConnectionError`` above a
nursery that also saw a Cancelled never matches. The rule, as trio-websocket applies it: a group
that holds exactly one error besides cancellations *is* that error; a group of cancellations
only stays a group (cancel scopes know how to catch it); several real errors stay a group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


def exception_leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``error``, however deeply its groups nest (``error`` if none)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from exception_leaves(inner)
    else:
        yield error


def collapse_exception_group(error: BaseException) -> BaseException:
    """``error`` as callers should see it: its one non-Cancelled leaf, or ``error`` itself."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    real = [leaf for leaf in exception_leaves(error) if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else error


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a group from the block as :func:`collapse_exception_group` says.

    Put it around every nursery that sits in a request path or behind an ``open_*``. The one
    error keeps its own ``__cause__``; the group it came in is its ``__context__``.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        collapsed = collapse_exception_group(group)
        if collapsed is group:
            raise
        raise collapsed  # noqa: B904 - the group stays reachable as __context__
