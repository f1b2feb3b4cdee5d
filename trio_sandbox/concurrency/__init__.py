"""Small helpers every layer shares: one error policy for exception groups, one broadcast value
(AsyncValue), one way to stop a child's process group, the host's processes by parentage, data
handed to a child in memory, and leaving a process that has cleaned up.

This package is an independent root: it imports nothing else of trio_sandbox. ``exit_now``,
``memfd_holding``, ``process_table`` and ``descendants`` need only the standard library, and the
warden takes them before it imports Trio: the Trio-based names load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exit import exit_now as exit_now
from ._lazy import lazy_exports as lazy_exports
from ._memfd import memfd_holding as memfd_holding
from ._processes import descendants as descendants
from ._processes import process_table as process_table

if TYPE_CHECKING:
    from ._broadcast import AsyncValue as AsyncValue
    from ._groups import collapse_exception_group as collapse_exception_group
    from ._groups import exception_leaves as exception_leaves
    from ._groups import single_error as single_error
    from ._process_group import GroupLeader as GroupLeader
    from ._process_group import signal_process_group as signal_process_group
    from ._process_group import stop_process_group as stop_process_group
    from ._process_group import stopping_process_group as stopping_process_group

_LAZY_NAMES: dict[str, str] = {
    "AsyncValue": "._broadcast",
    "collapse_exception_group": "._groups",
    "exception_leaves": "._groups",
    "single_error": "._groups",
    "GroupLeader": "._process_group",
    "signal_process_group": "._process_group",
    "stop_process_group": "._process_group",
    "stopping_process_group": "._process_group",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_NAMES)
