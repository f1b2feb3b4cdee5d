"""Port publishing: listen on host loopback, relay each connection to the sandboxed server.

The sandbox has no network but its own loopback, so the warden opens the inner end of each
connection *inside* the sandbox's network namespace: setns(2) to /proc/PID/ns/net, socket(),
setns back. A socket keeps the namespace it was created in, so after that it is an ordinary
socket of the warden, relayed by Trio tasks in the warden's nursery. This needs no helper
process or tool inside the image and no shared directory; it needs CAP_SYS_ADMIN, i.e. a
root warden (the rootful case this machine kind runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from ._spec import PortSpec

CLONE_NEWNET = 0x40000000
_RELAY_CHUNK = 65536

Connector = Callable[[int], Awaitable[trio.SocketStream]]


def _setns(fd: int, nstype: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def socket_in_netns(netns_fd: int, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket that belongs to the network namespace `netns_fd`. Runs synchronously in
    the calling thread (namespaces are per thread), which is back in its own namespace on
    return; if it cannot get back, the warden must not go on."""
    own_netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd, CLONE_NEWNET)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            try:
                _setns(own_netns, CLONE_NEWNET)
            except OSError as exc:  # pragma: no cover - would mean a kernel refusal
                print(
                    f"trio-sandbox-warden: cannot leave the sandbox netns: {exc}", file=sys.stderr
                )
                os._exit(125)
    finally:
        os.close(own_netns)


async def connect_in_netns(netns_fd: int, port: int) -> trio.SocketStream:
    sock = trio.socket.from_stdlib_socket(socket_in_netns(netns_fd))
    try:
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def connect_on_host(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


def as_listener(sock: socket.socket) -> trio.SocketListener:
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


async def serve_relays(
    ports: Sequence[PortSpec],
    sockets: Sequence[socket.socket],
    connect: Connector,
    *,
    host_network: bool,
) -> None:
    """One relay per published port, until cancelled. On the host network a port published
    under its own number needs none: the command binds it itself (its socket is released)."""
    async with trio.open_nursery() as nursery:
        for sock, port in zip(sockets, ports, strict=True):
            if host_network and port.host_port == port.container_port:
                sock.close()
                continue
            nursery.start_soon(
                serve_published_port, as_listener(sock), connect, port.container_port
            )


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while data := await source.receive_some(_RELAY_CHUNK):
            await sink.send_all(data)
        await sink.send_eof()


async def _relay(client: trio.SocketStream, connect: Connector, container_port: int) -> None:
    async with client:
        try:
            inner = await connect(container_port)
        except OSError:
            return  # nothing listens inside (yet): the client sees a closed connection
        async with inner, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, inner)
            nursery.start_soon(_pump, inner, client)


async def serve_published_port(
    listener: trio.SocketListener,
    connect: Connector,
    container_port: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Relay every connection accepted on `listener` until cancelled."""
    async with listener, trio.open_nursery() as nursery:
        task_status.started()
        while True:
            client = await listener.accept()
            nursery.start_soon(_relay, client, connect, container_port)
