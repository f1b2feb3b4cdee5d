"""An in-process stand-in for a sandbox generation, driven by the test (die, hang, slow start).

It plugs into ``open_sandbox(..., launcher=...)``: the supervisor, health monitor and proxy are
the real ones, only the warden and the tool server are replaced by an :class:`McpServer` reached
through the in-memory MCP transport, so that everything runs under a virtual clock.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from trio_sandbox.mcp import (
    Implementation,
    JsonObject,
    McpServer,
    Request,
    RequestContext,
    memory_transport,
)
from trio_sandbox.sandbox import (
    Launched,
    LaunchHooks,
    SandboxConfig,
    SandboxStartError,
    WardenExited,
)


@attrs.define(eq=False)
class _FakeToolServer(McpServer):
    generation: FakeGeneration | None = None

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        assert self.generation is not None
        if self.generation.hung:
            await trio.sleep_forever()  # like a SIGSTOPped server: the socket is open, no answer
        if request.method == "tools/call":
            self.generation.call_meta.append(dict(ctx.meta))
        return await super().handle_request(request, ctx)


@attrs.define(eq=False)
class FakeGeneration:
    """One fake sandbox. ``die()`` ends it like a warden exiting; ``hung`` stops its answers."""

    number: int
    started_at: float
    server: _FakeToolServer
    hung: bool = False
    up_at: float | None = None
    died: trio.Event = attrs.field(factory=trio.Event)
    stopped: trio.Event = attrs.field(factory=trio.Event)
    # How many times each tool ran on this sandbox.
    runs: dict[str, int] = attrs.field(factory=dict)
    # The ``_meta`` of every tools/call that reached this sandbox.
    call_meta: list[dict[str, Any]] = attrs.field(factory=list)
    # Released by the test to let a ``block`` call finish.
    release: trio.Event = attrs.field(factory=trio.Event)
    entered_block: trio.Event = attrs.field(factory=trio.Event)

    def die(self) -> None:
        self.died.set()


def _make_server(number: int) -> _FakeToolServer:
    server = _FakeToolServer(Implementation("fake-tools", "1.0"))
    empty: dict[str, Any] = {"type": "object", "properties": {}}

    @server.tool(
        "echo", input_schema={"type": "object", "properties": {"text": {"type": "string"}}}
    )
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        generation = server.generation
        assert generation is not None
        generation.runs["echo"] = generation.runs.get("echo", 0) + 1
        return f"{arguments.get('text', '')} from generation {generation.number}"

    @server.tool("block", input_schema=empty)
    async def block(arguments: dict[str, Any], ctx: RequestContext) -> str:
        generation = server.generation
        assert generation is not None
        generation.runs["block"] = generation.runs.get("block", 0) + 1
        generation.entered_block.set()
        await generation.release.wait()
        return "released"

    return server


@attrs.define(eq=False)
class FakeLauncher:
    """Starts :class:`FakeGeneration` s; ``fail_starts`` makes the next starts fail."""

    start_delay: float = 0.0
    fail_starts: int = 0
    generations: list[FakeGeneration] = attrs.field(factory=list)
    _launched: trio.Event = attrs.field(factory=trio.Event)

    @property
    def current(self) -> FakeGeneration:
        return self.generations[-1]

    async def wait_launches(self, count: int) -> FakeGeneration:
        while len(self.generations) < count:
            await self._launched.wait()
        return self.generations[count - 1]

    async def __call__(
        self,
        config: SandboxConfig,
        hooks: LaunchHooks,
        *,
        task_status: trio.TaskStatus[Launched],
    ) -> None:
        server = _make_server(len(self.generations) + 1)
        generation = FakeGeneration(len(self.generations) + 1, trio.current_time(), server)
        server.generation = generation
        self.generations.append(generation)
        launched, self._launched = self._launched, trio.Event()
        launched.set()
        try:
            await trio.sleep(self.start_delay)
            if self.fail_starts > 0:
                self.fail_starts -= 1
                raise SandboxStartError(
                    "ca", "fake: no CA block", exit_status=3, stderr_tail="fake warden stderr"
                )
            async with hooks.client.open_client(
                memory_transport(server, name=f"fake-{generation.number}")
            ) as client:
                generation.up_at = trio.current_time()
                task_status.started(Launched(client, None, None, {"ready": generation.up_at}))
                await generation.died.wait()
                hooks.went_down("the fake sandbox died")
                raise WardenExited(137, "fake: killed")
        finally:
            generation.stopped.set()


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this run, to check that a test left none behind."""
    tasks: set[trio.lowlevel.Task] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        tasks.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return tasks
