"""Cancelling the proxy leaves nothing behind: no task, no listener, no tunnel socket, no pipe."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import trio

from tests.egress.egress_harness import (
    LOOPBACK,
    map_resolver,
    open_connection,
    receive_until,
    running_proxy,
    serving_site,
)
from tests.sandbox.sandbox_fakes import all_tasks
from trio_sandbox.egress import EgressPolicy


def open_descriptors() -> collections.Counter[str]:
    """This process's file descriptors by kind (socket, pipe, anon_inode, file)."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the descriptor listdir itself used
        kinds[target.split(":")[0] if ":" in target else "file"] += 1
    return kinds


async def echo_or_flood(stream: trio.SocketStream) -> None:
    """An upstream that echoes, or after b"flood" sends without end."""
    try:
        async with stream:
            while data := await stream.receive_some(65536):
                while data == b"flood":
                    await stream.send_all(bytes(65536))
                await stream.send_all(data)
    except trio.BrokenResourceError:
        pass  # the proxy went away


async def test_cancelling_the_proxy_closes_every_connection_and_leaves_no_task(
    tmp_path: Path,
) -> None:
    (upstream_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    echo_port = upstream_listener.socket.getsockname()[1]
    async with serving_site(tmp_path) as origins, trio.open_nursery() as servers:
        servers.start_soon(trio.serve_listeners, echo_or_flood, [upstream_listener])
        await trio.testing.wait_all_tasks_blocked()
        tasks_before = all_tasks()
        descriptors_before = open_descriptors()
        policy = EgressPolicy.parse([f"echo.test:{echo_port}", f"files.test:{origins.http}"])
        resolver = map_resolver({"echo.test": [LOOPBACK], "files.test": [LOOPBACK]})
        clients: list[trio.SocketStream] = []
        async with running_proxy(policy, resolver) as proxy:
            # A busy CONNECT tunnel whose client stopped reading (its pump holds a pipe), an
            # idle SOCKS5 tunnel, a keep-alive HTTP client with its upstream kept, a client
            # mid-head, and a silent one.
            busy = await open_connection(proxy.port)
            await busy.send_all(f"CONNECT echo.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
            await receive_until(busy, b"\r\n\r\n")
            await busy.send_all(b"flood")
            await receive_until(busy, bytes(1000))
            socks = await open_connection(proxy.port)
            await socks.send_all(
                b"\x05\x01\x00\x05\x01\x00\x03\x09echo.test" + echo_port.to_bytes(2, "big")
            )
            assert await receive_until(socks, bytes(6)) == b"\x05\x00\x05\x00\x00\x01" + bytes(6)
            kept = await open_connection(proxy.port)
            await kept.send_all(
                f"GET http://files.test:{origins.http}/hello.txt HTTP/1.1\r\n\r\n".encode()
            )
            assert (await receive_until(kept, b"egress proxy\n")).endswith(b"egress proxy\n")
            partial = await open_connection(proxy.port)
            await partial.send_all(b"GET http://files.test/ HTTP/1.1\r\nHost")
            silent = await open_connection(proxy.port)
            clients = [busy, socks, kept, partial, silent]
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.stats.upstreams_open == 3
            assert proxy.stats.connections_open == 5
            assert open_descriptors()["pipe"] > descriptors_before["pipe"]
        # The proxy is gone: every client sees its connection end.
        for client in clients:
            with trio.fail_after(5):
                while await client.receive_some(65536):
                    pass
            await client.aclose()
        with trio.fail_after(5):
            # The echo handlers see their EOFs and end (a task set has no event to wait on).
            while all_tasks() != tasks_before:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert open_descriptors() == descriptors_before
        assert proxy.stats.connections_open == 0
        assert proxy.stats.upstreams_open == 0
        servers.cancel_scope.cancel()
