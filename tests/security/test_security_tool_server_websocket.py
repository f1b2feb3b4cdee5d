"""A WebSocket server that answers the upgrade badly, or misbehaves after it, against our client
(the host's transport to a sandbox's tool server: the server is the attacker). Each case gets a
clear McpConnectionError (or McpHttpStatusError) promptly, and bounded work on our side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage

from trio_sandbox.mcp import (
    McpConnectionError,
    McpHttpStatusError,
    Message,
    open_mcp_client,
    websocket_transport,
)

Behaviour = Callable[[trio.SocketStream], Awaitable[None]]
UPGRADE_SEEN = b"\r\n\r\n"


async def read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while UPGRADE_SEEN not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def serving(behaviour: Behaviour, task_status: trio.TaskStatus[int]) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await behaviour(stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def connect(nursery: trio.Nursery, behaviour: Behaviour) -> None:
    port = await nursery.start(serving, behaviour)
    transport = websocket_transport(f"ws://127.0.0.1:{port}/mcp")
    async with open_mcp_client(transport) as client:
        await client.ping()


def raw_answer(head: bytes) -> Behaviour:
    async def behaviour(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(head)
        await trio.sleep_forever()

    return behaviour


@pytest.mark.parametrize(
    "head",
    [
        # 101 with a Sec-WebSocket-Accept that answers another key.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
        b"Sec-WebSocket-Protocol: mcp\r\n\r\n",
        # 101 without the upgrade's headers.
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        # Not HTTP at all.
        b"\x16\x03\x01 garbage that is not a status line\r\n\r\n",
        # A head over any bound.
        b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["bad-accept", "no-upgrade-headers", "not-http", "huge-head"],
)
async def test_a_malformed_answer_to_the_upgrade_is_a_connection_error(
    nursery: trio.Nursery, head: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(McpConnectionError) as caught:
        await connect(nursery, raw_answer(head))
    assert not isinstance(caught.value, McpHttpStatusError)


async def test_a_refusal_is_its_status_without_reading_an_endless_body(
    nursery: trio.Nursery,
) -> None:
    async def behaviour(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100000000000\r\n\r\n")
        while True:  # a body that never ends
            await stream.send_all(b"x" * 65536)

    with trio.fail_after(5):  # real time: the refusal must not wait for the body
        with pytest.raises(McpHttpStatusError) as caught:
            await connect(nursery, behaviour)
    assert caught.value.status == 403


async def test_the_connection_ending_before_the_answer_says_so_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def behaviour(stream: trio.SocketStream) -> None:
        await read_request(stream)

    start = trio.current_time()
    with pytest.raises(McpConnectionError, match="ended before the server answered"):
        await connect(nursery, behaviour)
    assert trio.current_time() - start < 1  # not the 10 s connect timeout


def accepting(then: Callable[[trio.SocketStream, WSConnection], Awaitable[None]]) -> Behaviour:
    async def behaviour(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(await read_request(stream))
        for event in ws.events():
            if isinstance(event, Request):
                await stream.send_all(ws.send(AcceptConnection(subprotocol="mcp")))
        await then(stream, ws)

    return behaviour


async def test_a_ping_flood_gets_few_pongs(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pongs = 0
    pings = 5000

    async def flood(stream: trio.SocketStream, ws: WSConnection) -> None:
        nonlocal pongs
        await stream.send_all(b"".join(ws.send(Ping(b"%d" % n)) for n in range(pings)))
        with trio.move_on_after(1):
            while True:
                data = await stream.receive_some()
                if not data:
                    break
                ws.receive_data(data)
                pongs += sum(isinstance(event, Pong) for event in ws.events())

    port = await nursery.start(serving, accepting(flood))
    transport = websocket_transport(f"ws://127.0.0.1:{port}/mcp")
    async with transport(_Inbox()):
        await trio.sleep(1.5)
    assert 1 <= pongs < pings // 10, pongs


async def test_a_text_message_is_bounded_in_bytes_not_characters(nursery: trio.Nursery) -> None:
    # 300,000 characters of 4 UTF-8 bytes each: 1.2 MB, over a 1 MB bound that counts bytes.
    async def send_big(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.send_all(ws.send(TextMessage("\U0001f600" * 300_000)))
        await trio.sleep_forever()

    port = await nursery.start(serving, accepting(send_big))
    transport = websocket_transport(f"ws://127.0.0.1:{port}/mcp", max_received_size=1_000_000)
    inbox = _Inbox()
    async with transport(inbox):
        with trio.fail_after(5):
            await inbox.closed.wait()
    assert inbox.received == []


class _Inbox:
    """What the transport hands its client: nothing here should arrive."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.closed = trio.Event()

    async def deliver(self, message: Message) -> None:
        self.received.append(message)

    def connection_lost(self, error: McpConnectionError) -> None:
        self.closed.set()
