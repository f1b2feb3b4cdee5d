"""One sandbox generation: launched, attached to its upstream, listed, held until it ends.

A generation may start as a warm spare behind an upstream of its own and be moved to the upstream
that serves (:meth:`Generation.move_to`): its client's relays follow it, and so does the watch
that ends it when a call finds its session broken.

A generation ends in exactly one recorded way (:meth:`Generation.end`): its warden exited, a call
found its session broken, the monitor or the user asked for a restart, or its owner stopped it.
The tasks that notice an ending record it and cancel the generation's nursery, rather than race
to raise different errors out of it; so :func:`run_generation` either raises one error (the
generation never served) or returns (it served, then ended for ``generation.end_reason``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import attrs
import trio

from ..concurrency import single_error
from ..mcp import JsonObject, McpConnectionError, McpError, Notification
from ..proxy import ClientHooks, Upstream
from ._config import SandboxConfig
from ._errors import SandboxStartError, WardenExited
from ._launcher import Launched, Launcher, LaunchHooks
from ._report import EgressCallback

logger = logging.getLogger("trio_sandbox.sandbox")

# What ends a generation without being a bug of ours.
GENERATION_ENDINGS = (SandboxStartError, WardenExited, McpConnectionError, McpError)


def first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def as_start_error(error: BaseException) -> SandboxStartError:
    """A generation that never served, in the terms of :class:`SandboxStartError`."""
    if isinstance(error, SandboxStartError):
        return error
    if isinstance(error, WardenExited):
        return SandboxStartError(
            "ready", "the warden exited", exit_status=error.status, stderr_tail=error.stderr_tail
        )
    return SandboxStartError("session", str(error))


@attrs.define(eq=False)
class Generation:
    """One running sandbox and how it ended."""

    upstream: Upstream
    launched: Launched | None = None
    up: bool = False  # it served: passed readiness and its first listing
    proved_healthy: bool = False  # a health probe passed while it served
    ended: trio.Event = attrs.field(factory=trio.Event)
    end_reason: str | None = None
    # The end was asked for by the user (Sandbox.restart), not caused by a fault.
    user_restart: bool = False
    _down_reason: str | None = None
    # The watch of the current upstream's session (restarted on the next one by ``move_to``).
    _broken_watch: trio.CancelScope | None = None
    # Where its connections to the network go, named by its upstream and its number.
    on_egress: EgressCallback | None = None
    # Its number among the generations of its sandbox, once it serves there (``numbered``).
    number: int | None = None

    @property
    def client_hooks(self) -> ClientHooks:
        """The relays of this generation's client: to whichever upstream it serves now."""
        return ClientHooks(
            self._relay_notification, self._relay_answer, self.upstream.protocol_version
        )

    async def _relay_notification(self, note: Notification) -> None:
        await self.upstream.hooks.on_notification(note)

    async def _relay_answer(self, method: str, params: JsonObject) -> JsonObject:
        return await self.upstream.hooks.answer(method, params)

    def move_to(self, upstream: Upstream) -> None:
        """Serve ``upstream`` from now on (a spare handed out): its calls go to this
        generation's session, which the proxy lists again in its own task."""
        assert self.launched is not None, "only a generation that serves can move"
        listing = self.upstream.listing
        self.upstream = upstream
        self.launched.report.sandbox = upstream.name
        upstream.attach(self.launched.client)
        if upstream.listing is None:
            upstream.listing = listing
        if self._broken_watch is not None:
            self._broken_watch.cancel()  # watch the new upstream's session instead

    def numbered(self, number: int) -> None:
        """It serves as generation ``number`` of its sandbox (its reports say so from now)."""
        self.number = number
        if self.launched is not None:
            self.launched.report.generation = number

    def went_down(self, reason: str) -> None:
        """The sandbox is gone (or going): fail its calls in flight now, with this reason."""
        if self._down_reason is None:
            self._down_reason = reason
            self.upstream.detach(f"the sandbox went down: {reason}")

    def end(self, reason: str, *, user_restart: bool = False) -> None:
        """Record why the generation ends (the first reason wins) and let it be stopped."""
        if self.end_reason is None:
            self.end_reason = self._down_reason or reason
            self.user_restart = user_restart
        self.went_down(reason)
        self.ended.set()


@attrs.define
class _RecordingStatus:
    """A task status that remembers whether ``started`` was called."""

    inner: trio.TaskStatus[Launched]
    started_yet: bool = False

    def started(self, value: Any = None) -> None:
        self.started_yet = True
        self.inner.started(value)


async def _run_launcher(
    launcher: Launcher,
    config: SandboxConfig,
    generation: Generation,
    *,
    task_status: trio.TaskStatus[Launched],
) -> None:
    """Run the launcher; an ending after it reported is recorded, not raised."""
    status = _RecordingStatus(task_status)
    hooks = LaunchHooks(
        generation.client_hooks,
        generation.went_down,
        on_egress=generation.on_egress,
        sandbox=generation.upstream.name,
    )
    try:
        with single_error():
            await launcher(config, hooks, task_status=status)
    except GENERATION_ENDINGS as exc:
        if not status.started_yet:
            raise  # out of nursery.start: the generation never served
        generation.end(first_line(exc))
        return
    generation.end("the launcher returned")


async def _end_when_broken(generation: Generation) -> None:
    """A call that lost the session is the earliest sign of a dead sandbox: end the generation
    now rather than after ``respawn_threshold`` failed probes. Follows the generation to the
    upstream it serves."""
    while not generation.ended.is_set():
        upstream = generation.upstream
        with trio.CancelScope() as watch:
            generation._broken_watch = watch
            await upstream.wait_broken()
            generation.end(upstream.last_error or "the session to the sandbox broke")


async def run_generation(
    launcher: Launcher,
    config: SandboxConfig,
    generation: Generation,
    *,
    warm: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start ``generation`` and hold it until it ends; reports started once it serves (and,
    with ``warm``, once a liveness request is answered: our tool server answers it when its
    first call will not pay a lazy import, so a spare is handed out warm).

    Raises one of :data:`GENERATION_ENDINGS` when it never served. Every deadline of the start
    (CA block, readiness, first listing) ends when the start ends.
    """
    upstream = generation.upstream
    with single_error():
        async with trio.open_nursery() as nursery:
            launched: Launched = await nursery.start(
                partial(_run_launcher, launcher, config, generation)
            )
            generation.launched = launched
            upstream.attach(launched.client)
            await upstream.refresh_listing(limit=config.ready_timeout)
            if upstream.listing is None or upstream.listing_stale:
                raise SandboxStartError("listing", upstream.last_error or "no tool listing")
            if warm:
                with trio.move_on_after(config.ready_timeout):
                    await launched.client.ping()
                    warm = False
                if warm:
                    raise SandboxStartError(
                        "listing",
                        f"no answer to a ping within {config.ready_timeout:g} s of the listing",
                    )
            if generation.ended.is_set():
                # It died while being listed: it never served.
                raise SandboxStartError("listing", generation.end_reason or "the sandbox ended")
            nursery.start_soon(_end_when_broken, generation)
            generation.up = True
            task_status.started()
            await generation.ended.wait()
            nursery.cancel_scope.cancel()
