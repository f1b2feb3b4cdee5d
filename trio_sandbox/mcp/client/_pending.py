"""A client request waiting for its answer, and what arrives for it meanwhile."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

import attrs
import trio

from ..protocol._errors import McpConnectionError
from ..protocol._messages import ErrorResponse, Response

logger = logging.getLogger("trio_sandbox.mcp.client")

# Bounds what waits for a request's slow progress callback before further notes are dropped.
_MAX_QUEUED_PER_REQUEST: Final = 256

Thunk: TypeAlias = Callable[[], Awaitable[None]]


@attrs.define(eq=False)
class PendingRequest:
    """One request waiting for its answer, in the task that sent it.

    What arrives for the request in another task (a message channel's reader, a resumed SSE
    stream) is queued here and handled by the request's own task, in arrival order: its progress
    callbacks first, then its answer. So a slow callback delays only its own request, never the
    reader that delivers everyone's answers. When the answer comes on another stream, the
    request's own send is cancelled through ``scope``.
    """

    task: trio.lowlevel.Task = attrs.field(factory=trio.lowlevel.current_task)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    outcome: Response | ErrorResponse | McpConnectionError | None = None
    sending: bool = False
    queued: int = 0
    # Made when something must wait for the request's task: most requests never need one (an
    # answer delivered in the request's own task, over HTTP or in process, before it waits).
    _queue: (
        tuple[trio.MemorySendChannel[Thunk | None], trio.MemoryReceiveChannel[Thunk | None]] | None
    ) = None

    def _channel(
        self,
    ) -> tuple[trio.MemorySendChannel[Thunk | None], trio.MemoryReceiveChannel[Thunk | None]]:
        if self._queue is None:
            self._queue = trio.open_memory_channel[Thunk | None](math.inf)
        return self._queue

    @property
    def answered(self) -> bool:
        return self.outcome is not None

    def settle(self, outcome: Response | ErrorResponse | McpConnectionError) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self._queue is not None:
            self._queue[0].send_nowait(None)
        if self.sending and trio.lowlevel.current_task() is not self.task:
            self.scope.cancel()

    async def run_or_queue(self, thunk: Thunk) -> None:
        """Run ``thunk`` now when in the request's own task, else queue it for that task."""
        if trio.lowlevel.current_task() is self.task:
            await thunk()
        elif self.outcome is None and self.queued < _MAX_QUEUED_PER_REQUEST:
            self.queued += 1
            self._channel()[0].send_nowait(thunk)
        else:
            logger.debug("dropping a notification for a request that is answered or flooded")

    async def wait_answer(self) -> None:
        """Handle what was queued for the request, until its answer."""
        if self.outcome is not None and self._queue is None:
            await trio.lowlevel.checkpoint()
            return
        async for thunk in self._channel()[1]:
            if thunk is None:
                return
            self.queued -= 1
            await thunk()
