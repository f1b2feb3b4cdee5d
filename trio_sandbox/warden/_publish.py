"""Port publishing: listen on host loopback, relay each connection to the sandboxed server.

The sandbox has no network but its own loopback, so the warden opens the inner end of each
connection inside the sandbox's network namespace, with a socket the namespace helper made there
(:mod:`._netns`); the same works as root and as an ordinary user, and needs nothing inside the
image and no shared directory. After that it is an ordinary socket of the warden, relayed by Trio
tasks in the warden's nursery, through the package's one byte relay (splicing where the kernel
allows, as the egress proxy's tunnels do).
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from ..concurrency import BufferedSocket, relay_tunnel
from ._errors import NamespaceError
from ._netns import NetnsHelper
from ._spec import PortSpec

Connector = Callable[[int], Awaitable[trio.SocketStream]]


@attrs.define(eq=False)
class SandboxSockets:
    """Asks the namespace helper for sockets that live in the sandbox's network namespace."""

    helper: NetnsHelper
    _channel: trio.socket.SocketType | None = None
    _lock: trio.Lock = attrs.field(factory=trio.Lock)
    entered: trio.Event = attrs.field(factory=trio.Event)
    failure: str | None = None

    def _trio_channel(self) -> trio.socket.SocketType:
        if self._channel is None:
            self._channel = trio.socket.from_stdlib_socket(self.helper.channel)
        return self._channel

    async def _ask(self, request: bytes, fds: Sequence[int] = ()) -> tuple[bytes, list[int]]:
        channel = self._trio_channel()
        async with self._lock:
            ancillary = []
            if fds:
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            await channel.sendmsg([request], ancillary)
            data, ancdata, _flags, _address = await channel.recvmsg(
                16, socket.CMSG_SPACE(array.array("i", [0]).itemsize)
            )
        received: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds_array = array.array("i")
                fds_array.frombytes(payload[: len(payload) - len(payload) % fds_array.itemsize])
                received.extend(fds_array)
        return data, received

    async def enter(self, pidfd: int) -> None:
        """Have the helper enter the namespaces of the process behind ``pidfd``."""
        try:
            answer, _ = await self._ask(b"N", [pidfd])
        except OSError as exc:
            self.failure = f"the namespace helper is gone: {exc}"
            raise NamespaceError(self.failure) from exc
        if answer != b"0":
            code = int(answer) if answer.isdigit() else 0
            self.failure = f"cannot enter the sandbox's network namespace: {os.strerror(code)}"
            raise NamespaceError(code, self.failure)
        self.entered.set()

    async def socket(self, family: int = socket.AF_INET) -> trio.socket.SocketType:
        """A new TCP socket in the sandbox's network namespace."""
        await self.entered.wait()
        answer, fds = await self._ask(b"4" if family == socket.AF_INET else b"6")
        if answer != b"S" or not fds:
            for fd in fds:
                os.close(fd)
            code = int(answer) if answer.isdigit() else 0
            raise NamespaceError(code, f"no socket in the sandbox: {os.strerror(code)}")
        return trio.socket.from_stdlib_socket(socket.socket(fileno=fds[0]))

    async def connect(self, port: int) -> trio.SocketStream:
        """A connection to 127.0.0.1:``port`` inside the sandbox."""
        sock = await self.socket()
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


async def _relay(client: trio.SocketStream, connect: Connector, container_port: int) -> None:
    async with client:
        try:
            inner = await connect(container_port)
        except OSError:
            return  # nothing listens inside (yet): the client sees a closed connection
        async with inner:
            await relay_tunnel(BufferedSocket(client), BufferedSocket(inner))


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
