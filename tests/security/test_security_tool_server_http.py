"""What a Streamable HTTP server may send our client: bounded bodies, events and lines (a tool
server in a sandbox that refuses WebSocket is reached over this), and the SSE line reader
against a plain reference over any chunking."""

from __future__ import annotations

import re

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.mcp import McpConnectionError, http_transport, open_mcp_client
from trio_sandbox.mcp.client._http11 import LineReader
from trio_sandbox.mcp.protocol._errors import HttpClientError

LINE_END = re.compile("\r\n|\r|\n")


class Chunks:
    """A response body handed out in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    async def receive_some(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


async def all_lines(pieces: list[bytes], max_line: int = 1 << 30) -> list[str]:
    reader = LineReader(Chunks(pieces), max_line)  # type: ignore[arg-type]
    lines = []
    while (line := await reader.next_line()) is not None:
        lines.append(line)
    return lines


def reference(text: str) -> list[str]:
    lines = LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


@given(
    st.lists(st.sampled_from(["a", "é", "\r", "\n", "\r\n", "😀", " "]), max_size=60).map("".join),
    st.lists(st.integers(0, 80), max_size=8),
)
def test_lines_are_the_same_however_the_body_is_cut(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    pieces = [piece for piece in pieces if piece]  # b"" is the end of the body
    assert trio.run(all_lines, pieces) == reference(text)


async def test_a_line_over_the_bound_fails_as_it_grows() -> None:
    with pytest.raises(HttpClientError, match="over 1000 characters"):
        await all_lines([b"data: " + b"x" * 600, b"x" * 600, b"\n"], max_line=1000)


async def one_response(head: bytes, body: bytes, task_status: trio.TaskStatus[int]) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive_some()
            await stream.send_all(head + body)
            await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"jsonrpc": "2.0", "id": 1, "result": {"pad": "' + b"x" * 300_000),
        ("text/event-stream", b"data: " + b"x" * 300_000 + b"\n\n"),
        ("text/event-stream", b"data: xxxxxxxxxx\n" * 30_000 + b"\n"),
    ],
    ids=["json-body", "sse-line", "sse-event"],
)
async def test_a_message_over_the_bound_fails_the_request_clearly(
    nursery: trio.Nursery, content_type: str, body: bytes
) -> None:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    port = await nursery.start(one_response, head, body)
    transport = http_transport(f"http://127.0.0.1:{port}/mcp", max_received_bytes=100_000)
    with trio.fail_after(10), pytest.raises(McpConnectionError, match="over 100000"):
        async with open_mcp_client(transport):
            pass
