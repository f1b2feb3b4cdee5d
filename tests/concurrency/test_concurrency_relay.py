"""The one byte relay (the published port's and the egress proxy's), on real TCP connections on
127.0.0.1: bytes arrive exact and counted, an end of stream passes as a half-close, large
transfers splice (or copy), a peer that resets ends the tunnel quietly, and a cancelled relay
leaves no descriptor behind."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from trio_sandbox.concurrency import (
    CAN_SPLICE,
    PIPE_KEPT_IDLE,
    BufferedSocket,
    Pump,
    StreamEnded,
    relay_tunnel,
)

ZERO_COPY = [pytest.param(True, id="splice"), pytest.param(False, id="copy")]


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Both ends of one TCP connection on 127.0.0.1."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        outer = await trio.open_tcp_stream("127.0.0.1", port)
        inner = await listener.accept()
    return outer, inner


@asynccontextmanager
async def tunnel(
    zero_copy: bool, sent: list[int], received: list[int]
) -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream, trio.Nursery]]:
    """A client and a server with the relay between them, running in the nursery yielded."""
    client, relay_client_side = await tcp_pair()
    relay_server_side, server = await tcp_pair()

    async def relay() -> None:
        # as the published port does: both sockets close when the relay ends
        async with relay_client_side, relay_server_side:
            await relay_tunnel(
                BufferedSocket(relay_client_side),
                BufferedSocket(relay_server_side),
                sent=sent.append,
                received=received.append,
                zero_copy=zero_copy,
            )

    async with client, server, trio.open_nursery() as nursery:
        nursery.start_soon(relay)
        yield client, server, nursery


async def read_all(stream: trio.SocketStream) -> bytes:
    chunks = []
    while data := await stream.receive_some(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.mark.parametrize("zero_copy", ZERO_COPY)
async def test_bytes_arrive_exact_both_ways_and_are_counted(zero_copy: bool) -> None:
    sent: list[int] = []
    received: list[int] = []
    request = bytes(range(256)) * 1000
    answer = b"answer:" + bytes(reversed(range(256))) * 500
    async with tunnel(zero_copy, sent, received) as (client, server, _nursery):
        await client.send_all(request)
        await client.send_eof()
        assert await read_all(server) == request
        await server.send_all(answer)
        await server.send_eof()
        assert await read_all(client) == answer
    assert sum(sent) == len(request)
    assert sum(received) == len(answer)


@pytest.mark.parametrize("zero_copy", ZERO_COPY)
async def test_a_half_close_passes_through_and_the_other_way_stays_open(zero_copy: bool) -> None:
    async with tunnel(zero_copy, [], []) as (client, server, _nursery):
        await client.send_all(b"question")
        await client.send_eof()  # the client is done sending, not done reading
        assert await read_all(server) == b"question"
        for part in (b"one ", b"two ", b"three"):
            await trio.sleep(0.01)
            await server.send_all(part)
        await server.send_eof()
        assert await read_all(client) == b"one two three"


@pytest.mark.parametrize("zero_copy", ZERO_COPY)
async def test_a_large_transfer_arrives_whole(zero_copy: bool) -> None:
    size = 64 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, not one repeated byte
    expected = hashlib.sha256()
    got = hashlib.sha256()
    total = 0
    received: list[int] = []

    async def produce(server: trio.SocketStream) -> None:
        for index in range(size // len(block)):
            data = struct.pack("!I", index) + block[4:]
            expected.update(data)
            await server.send_all(data)
        await server.send_eof()

    async with tunnel(zero_copy, [], received) as (client, server, nursery):
        nursery.start_soon(produce, server)
        while data := await client.receive_some(1 << 20):
            got.update(data)
            total += len(data)
        await client.send_eof()
    assert total == size
    assert got.hexdigest() == expected.hexdigest()
    assert sum(received) == size


async def test_a_peer_that_resets_ends_the_tunnel_quietly() -> None:
    with trio.fail_after(10):
        async with tunnel(True, [], []) as (client, server, _nursery):
            await client.send_all(b"hello")
            assert await server.receive_some(5) == b"hello"
            # SO_LINGER 0: close sends a reset, not an end of stream
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await server.aclose()
            try:
                while await client.receive_some(1024):
                    pass
            except trio.BrokenResourceError:
                pass  # the client may see the reset itself: either way the tunnel is over
        # the relay's task ended on its own (no exception), or the nursery would not exit


@pytest.mark.parametrize("zero_copy", ZERO_COPY)
async def test_cancelling_a_busy_relay_leaves_no_descriptor(zero_copy: bool) -> None:
    before = open_fds()
    async with tunnel(zero_copy, [], []) as (client, server, nursery):

        async def flood() -> None:
            block = b"x" * (1 << 20)
            while True:
                await server.send_all(block)

        nursery.start_soon(flood)
        await client.receive_some(1 << 16)  # bytes flowing: the pump holds its pipe now
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert open_fds() == before


async def test_a_pump_moves_exactly_the_limit_from_its_buffer_then_the_socket() -> None:
    source_far, source = await tcp_pair()
    sink, sink_far = await tcp_pair()
    async with source_far, source, sink, sink_far:
        buffered = BufferedSocket(source, bytearray(b"head-"))
        await source_far.send_all(b"body-and-more")
        counted: list[int] = []
        pump = Pump(CAN_SPLICE)
        try:
            await pump.move(buffered, sink, counted.append, len(b"head-body"))
        finally:
            pump.close()
        await sink.send_eof()
        assert await read_all(sink_far) == b"head-body"
        assert sum(counted) == len(b"head-body")
        assert await source.receive_some(100) == b"-and-more"  # left for the next reader


@pytest.mark.parametrize("zero_copy", ZERO_COPY)
async def test_a_pump_whose_source_ends_early_raises_stream_ended(zero_copy: bool) -> None:
    source_far, source = await tcp_pair()
    sink, sink_far = await tcp_pair()
    async with source_far, source, sink, sink_far:
        await source_far.send_all(b"short")
        await source_far.send_eof()
        pump = Pump(zero_copy)
        try:
            with pytest.raises(StreamEnded):
                await pump.move(BufferedSocket(source), sink, lambda _n: None, 100)
        finally:
            pump.close()


def open_pipes() -> int:
    return sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        for fd in open_fds()
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


@pytest.mark.skipif(not CAN_SPLICE, reason="no splice(2) here: no pipes")
async def test_a_tunnel_keeps_its_pipes_through_a_pause_and_gives_them_back_when_idle(
    autojump_clock: Any,
) -> None:
    pipes_before = open_pipes()
    async with tunnel(True, [], []) as (client, server, nursery):
        for message in (b"one", b"two"):
            await client.send_all(message)
            assert await server.receive_some(10) == message
            await server.send_all(message)
            assert await client.receive_some(10) == message
            await trio.sleep(PIPE_KEPT_IDLE / 10)  # a pause within a conversation
            assert open_pipes() == pipes_before + 4  # each way's pump holds its pipe (2 ends)
        await trio.sleep(PIPE_KEPT_IDLE * 2)
        assert open_pipes() == pipes_before  # idle: no pipe held
        await client.send_all(b"three")
        assert await server.receive_some(10) == b"three"  # and a new one when bytes come
        nursery.cancel_scope.cancel()
    assert open_pipes() == pipes_before
