"""Letting one meaningful error out of a nursery as itself rather than inside an ExceptionGroup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``error``, however deeply its groups nest (``error`` if none)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a group that holds exactly one error besides cancellations as that error.

    ``async with open_sandbox(...)`` should raise ``SandboxFailed``, not a group around it; a
    group with several real errors is left as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        real = [leaf for leaf in leaves(group) if not isinstance(leaf, trio.Cancelled)]
        if len(real) == 1:
            raise real[0] from None
        raise
