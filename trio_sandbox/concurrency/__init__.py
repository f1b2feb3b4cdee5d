"""Small helpers every layer shares: one error policy for exception groups, one broadcast value
(AsyncValue), one byte relay (splicing where the kernel allows), one signal runner (with what
must happen before Trio runs), one way to stop a child's process group, the host's processes by
parentage and data handed to a child in memory.

It imports only :mod:`trio_sandbox.program` of this package. ``memfd_holding``,
``process_table``, ``descendants``, the early signal record and the relay's errors need only the
standard library, and the warden takes them before it imports Trio: the Trio-based names load on
first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..program import lazy_exports
from ._early_signals import STOP_SIGNALS as STOP_SIGNALS
from ._early_signals import early_signals as early_signals
from ._early_signals import record_early_signals as record_early_signals
from ._errors import LineTooLong as LineTooLong
from ._errors import StreamEnded as StreamEnded
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
    from ._relay import CAN_SPLICE as CAN_SPLICE
    from ._relay import PIPE_KEPT_IDLE as PIPE_KEPT_IDLE
    from ._relay import RELAY_CHUNK as RELAY_CHUNK
    from ._relay import Buffered as Buffered
    from ._relay import BufferedSocket as BufferedSocket
    from ._relay import ByteCounter as ByteCounter
    from ._relay import Pump as Pump
    from ._relay import relay_tunnel as relay_tunnel
    from ._signals import SignalHandler as SignalHandler
    from ._signals import run_until_signalled as run_until_signalled

_LAZY_NAMES: dict[str, str] = {
    "AsyncValue": "._broadcast",
    "collapse_exception_group": "._groups",
    "exception_leaves": "._groups",
    "single_error": "._groups",
    "GroupLeader": "._process_group",
    "signal_process_group": "._process_group",
    "stop_process_group": "._process_group",
    "stopping_process_group": "._process_group",
    "CAN_SPLICE": "._relay",
    "PIPE_KEPT_IDLE": "._relay",
    "RELAY_CHUNK": "._relay",
    "Buffered": "._relay",
    "BufferedSocket": "._relay",
    "ByteCounter": "._relay",
    "Pump": "._relay",
    "relay_tunnel": "._relay",
    "SignalHandler": "._signals",
    "run_until_signalled": "._signals",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_NAMES)
