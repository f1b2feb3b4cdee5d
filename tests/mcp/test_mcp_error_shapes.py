"""Every failure reaches the caller as one typed error, never as an ExceptionGroup.

A server killed at any moment while calls with their own deadlines are in flight; a client that
refuses an elicitation; a ping whose deadline coincides with the transport failing. Hypothesis
picks the kill points and call mixes; a virtual clock makes the timing exact.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.mcp.killable_link import KillableLink
from tests.mcp.mcp_server_harness import serve
from trio_sandbox.mcp import (
    Implementation,
    JsonObject,
    McpConnectionError,
    McpError,
    McpServer,
    Request,
    RequestContext,
    ToolError,
    ToolReturn,
    open_mcp_client,
)

# What a caller may see: an answer, an error it can name, or its own deadline.
TYPED = (McpConnectionError, McpError)


def make_server() -> McpServer:
    server = McpServer(Implementation("shapes", "1"))

    @server.tool(
        "work",
        input_schema={
            "type": "object",
            "properties": {"seconds": {"type": "number"}, "fail": {"type": "boolean"}},
        },
    )
    async def work(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.report_progress(0.5, 1.0)
        await trio.sleep(arguments.get("seconds", 0))
        if arguments.get("fail"):
            raise ToolError("asked to fail")
        return "done"

    @server.tool("ask")
    async def ask(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = await ctx.elicit("Name?", {"type": "object", "properties": {}})
        return f"answer: {answer.get('action')}"

    return server


@attrs.define(eq=False)
class SlowPing(McpServer):
    """Answers ping after ``delay`` seconds."""

    delay: float = 0.0

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        if request.method == "ping":
            await trio.sleep(self.delay)
        return await super().handle_request(request, ctx)


calls = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=5),  # how long the tool works
        st.booleans(),  # whether it fails as a tool
        st.one_of(st.none(), st.floats(min_value=0.01, max_value=6)),  # the caller's deadline
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(calls=calls, kill_at=st.floats(min_value=0, max_value=6), progress=st.booleans())
def test_calls_end_typed_whenever_the_server_dies(
    calls: list[tuple[float, bool, float | None]], kill_at: float, progress: bool
) -> None:
    outcomes: list[object] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await trio.sleep(0.1)  # a slow consumer: it must only delay its own call

    async def main() -> None:
        link = KillableLink(make_server())
        async with open_mcp_client(link.factory(), protocol_version="2025-11-25") as client:

            async def one_call(seconds: float, fail: bool, deadline: float | None) -> None:
                with trio.move_on_after(deadline if deadline is not None else 1e9) as scope:
                    try:
                        result = await client.call_tool(
                            "work",
                            {"seconds": seconds, "fail": fail},
                            progress=on_progress if progress else None,
                        )
                        outcomes.append(result)
                        return
                    except TYPED as exc:
                        outcomes.append(exc)
                        return
                    except BaseException as exc:
                        if isinstance(exc, trio.Cancelled):
                            raise
                        outcomes.append(exc)  # the test fails on it below
                        return
                if scope.cancelled_caught:
                    outcomes.append("deadline")

            async def killer() -> None:
                await trio.sleep(kill_at)
                link.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer)
                for seconds, fail, deadline in calls:
                    nursery.start_soon(one_call, seconds, fail, deadline)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(outcomes) == len(calls)
    for outcome in outcomes:
        assert not isinstance(outcome, BaseExceptionGroup), outcome
        assert isinstance(outcome, (*TYPED, str)) or hasattr(outcome, "content"), outcome


@settings(max_examples=60, deadline=None)
@given(
    answer_after=st.floats(min_value=0, max_value=3),
    kill_at=st.floats(min_value=0, max_value=3),
    patience=st.floats(min_value=0.01, max_value=3),
)
def test_a_probe_fails_with_a_reason_when_its_deadline_meets_a_dying_transport(
    answer_after: float, kill_at: float, patience: float
) -> None:
    """The health monitor's probe: an answer, or a reason; it never raises."""
    from trio_sandbox.sandbox._monitor import probe

    reasons: list[str | None] = []
    server = SlowPing(Implementation("slow-ping", "1"), delay=answer_after)

    async def main() -> None:
        link = KillableLink(server)
        async with (
            open_mcp_client(link.factory(), protocol_version="2025-11-25") as client,
            trio.open_nursery() as nursery,
        ):

            async def killer() -> None:
                await trio.sleep(kill_at)
                link.kill()

            nursery.start_soon(killer)
            reasons.append(await probe(client, patience))
            await trio.sleep(kill_at + 1)
            reasons.append(await probe(client, patience))  # the link is cut by now

    # Ties are a matter of task order, not of the policy under test.
    times = sorted([answer_after, kill_at, patience])
    assume(times[1] - times[0] > 1e-3)
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    first, second = reasons
    if answer_after < min(kill_at, patience):
        assert first is None
    elif patience < kill_at:
        assert first == f"no answer to ping within {patience:g} s"
    else:
        assert str(first).startswith("ping failed")
    assert str(second).startswith("ping failed")


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
async def test_a_refused_elicitation_is_the_clients_error_not_a_group(
    era: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(params: JsonObject) -> JsonObject:
        raise McpError(-32601, "this user does not answer forms")

    async with (
        serve(make_server()) as served,
        open_mcp_client(served.url, protocol_version=era, elicitation=refuse) as client,
    ):
        with pytest.raises(McpError) as raised:
            await client.call_tool("ask", {})
    assert "this user does not answer forms" in raised.value.message
    assert "ExceptionGroup" not in raised.value.message
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_declined_elicitation_is_an_answer() -> None:
    async def decline(params: JsonObject) -> JsonObject:
        return {"action": "decline"}

    async with (
        serve(make_server()) as served,
        open_mcp_client(served.url, protocol_version="2025-11-25", elicitation=decline) as client,
    ):
        result = await client.call_tool("ask", {})
    assert result.text_content == "answer: decline"
