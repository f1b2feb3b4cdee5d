"""Bad input on a duplex message channel (what stdio carries, one message per line), driven
through serve_duplex with memory streams on a virtual clock: arbitrary bytes, arbitrary JSON and
mutated valid messages are answered with well-formed JSON-RPC and leave no task behind."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mcp.duplex_fuzz_checks import check_duplex_answers
from tests.mcp.mcp_fuzz_support import build_fuzz_server, mutated_messages, payloads, run_virtual
from trio_sandbox.mcp import serve_duplex

FAST = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FAST
@given(
    lines=st.lists(
        payloads | mutated_messages().map(lambda m: __import__("json").dumps(m).encode()),
        min_size=1,
        max_size=8,
    ),
)
def test_duplex_bad_lines(lines: list[bytes]) -> None:
    server = build_fuzz_server()
    sent_out: list[bytes | str] = []

    async def scenario() -> None:
        inbound_send, inbound_receive = trio.open_memory_channel[bytes](math.inf)
        for line in lines:
            inbound_send.send_nowait(line)

        async def incoming() -> AsyncIterator[bytes]:
            async for line in inbound_receive:
                yield line

        async def send_bytes(data: bytes) -> None:
            sent_out.append(data)
            await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_duplex, server, incoming(), send_bytes)
            # Let every request finish (virtual time), then hang up.
            await trio.sleep(60)
            inbound_send.close()
        assert server._sessions == set(), "the session outlived its channel"

    run_virtual(scenario)
    check_duplex_answers(list(lines), sent_out)
