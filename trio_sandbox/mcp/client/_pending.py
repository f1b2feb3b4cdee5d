"""A client request waiting for its answer, and what arrives for it meanwhile."""

from __future__ import annotations

import collections
import logging
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
    _thunks: collections.deque[Thunk] = attrs.field(factory=collections.deque)
    # Set when a thunk or the answer arrives while the request's task waits for them.
    _wakeup: trio.Event | None = None

    @property
    def answered(self) -> bool:
        return self.outcome is not None

    def settle(self, outcome: Response | ErrorResponse | McpConnectionError) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self._wakeup is not None:
            self._wakeup.set()
        if self.sending and trio.lowlevel.current_task() is not self.task:
            self.scope.cancel()

    async def run_or_queue(self, thunk: Thunk) -> None:
        """Run ``thunk`` now when in the request's own task, else queue it for that task."""
        if trio.lowlevel.current_task() is self.task:
            await thunk()
        elif self.outcome is None and self.queued < _MAX_QUEUED_PER_REQUEST:
            self.queued += 1
            self._thunks.append(thunk)
            if self._wakeup is not None:
                self._wakeup.set()
        else:
            logger.debug("dropping a notification for a request that is answered or flooded")

    async def wait_answer(self) -> None:
        """Handle what was queued for the request, until its answer."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            while self._thunks:
                self.queued -= 1
                await self._thunks.popleft()()
                await trio.lowlevel.checkpoint()  # a server's flood of notes is not one step
                waited = True
            # Nothing is queued once the answer is in: what was queued before it has run.
            if self.outcome is not None:
                if not waited:
                    await trio.lowlevel.checkpoint()
                return
            self._wakeup = trio.Event()
            await self._wakeup.wait()
            self._wakeup = None
            waited = True
