"""Bad input on the WebSocket face, driven in-process through ASGI websocket events on a virtual
clock: arbitrary frames (text and binary), arbitrary JSON and mutated valid messages. The server
answers each with well-formed JSON-RPC, keeps the connection, and leaves no task behind."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mcp.asgi_harness import call_websocket
from tests.mcp.duplex_fuzz_checks import check_duplex_answers
from tests.mcp.mcp_fuzz_support import (
    build_fuzz_server,
    check_outgoing_message,
    payloads,
    run_virtual,
)
from trio_sandbox.mcp import HttpSettings, McpHttpApp

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
FRAME_LIMIT = 2048

frames = st.lists(
    st.one_of(
        payloads,
        payloads.map(lambda data: data.decode("utf-8", "replace")),
        st.binary(min_size=FRAME_LIMIT + 1, max_size=FRAME_LIMIT + 16),
    ),
    min_size=1,
    max_size=6,
)


@FAST
@given(frames=frames)
def test_websocket_bad_frames(frames: list[bytes | str]) -> None:
    app = McpHttpApp(build_fuzz_server(), HttpSettings(max_body_bytes=FRAME_LIMIT))

    async def scenario() -> None:
        result = await call_websocket(app, frames)
        assert result.accepted
        assert result.subprotocol == "mcp"
        small = [frame for frame in frames if len(frame) <= FRAME_LIMIT]
        too_big = len(frames) - len(small)
        out = list(result.sent)
        oversize_errors = [
            frame
            for frame in out
            if "too large" in json.dumps(check_outgoing_message(frame).get("error", {}))
        ]
        assert len(oversize_errors) == too_big
        check_duplex_answers(small, [frame for frame in out if frame not in oversize_errors])
        # The server ends the connection cleanly once the peer has gone.
        assert result.close_code in (None, 1000)

    run_virtual(scenario)


@settings(max_examples=20, deadline=None, database=None)
@given(
    subprotocols=st.lists(st.sampled_from(["mcp", "graphql-ws", ""]), max_size=2),
    path=st.sampled_from(["/mcp", "/nope"]),
    host=st.sampled_from(["127.0.0.1", "evil.example"]),
)
def test_websocket_refusals(subprotocols: list[str], path: str, host: str) -> None:
    app = McpHttpApp(build_fuzz_server())

    async def scenario() -> None:
        result = await call_websocket(
            app,
            ['{"jsonrpc":"2.0","id":1,"method":"ping"}'],
            path=path,
            headers=[("host", host)],
            subprotocols=subprotocols,
        )
        if host == "evil.example":
            assert not result.accepted
            assert result.close_code == 1008
        elif path != "/mcp" or "mcp" not in subprotocols:
            assert not result.accepted
            assert result.close_code == 1002
        else:
            assert result.accepted
            assert [check_outgoing_message(frame)["id"] for frame in result.sent] == [1]
        assert result.accepted or result.sent == []

    run_virtual(scenario)
