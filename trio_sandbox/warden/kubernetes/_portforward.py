"""Published ports through the API server's port-forward (WebSocket, ``v4.channel.k8s.io``).

Each connection accepted on the warden's ``127.0.0.1:HOSTPORT`` gets its own WebSocket to
``pods/NAME/portforward?ports=PORT``, so the bytes (the host's TLS session with the tool
server) pass through the API server and the kubelet untouched: TLS runs end to end.

The framing, per WebSocket: every message starts with a channel byte; a port has a data
channel (0) and an error channel (1); the first message on each carries the port number (two
bytes, little endian); after that, data messages carry the stream and an error message says
why the kubelet gave up (e.g. nothing listens on that port). The protocol has no half-close:
the tunnel ends when either side closes.

``serve_relays`` wants a ``trio.SocketStream`` per connection, so the tunnel is carried by a
task of this connector's nursery between a socket pair and the WebSocket.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import httpx_ws
import trio

from ...concurrency import exception_leaves
from .._errors import PortForwardError
from ._api import KubeApi

PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"
_DATA_CHANNEL = 0
_ERROR_CHANNEL = 1
_CHUNK = 65536
_MAX_MESSAGE = 1024 * 1024
_HANDSHAKE_SECONDS = 30.0
_CLOSE_WAIT_SECONDS = 5.0


async def _handshake(ws: httpx_ws.AsyncWebSocketSession, port: int) -> None:
    """Both channels announce the port before any data flows."""
    expected = port.to_bytes(2, "little")
    announced: set[int] = set()
    while announced != {_DATA_CHANNEL, _ERROR_CHANNEL}:
        message = await ws.receive_bytes()
        if len(message) != 3 or message[0] not in (_DATA_CHANNEL, _ERROR_CHANNEL):
            raise PortForwardError(f"unexpected port-forward greeting {message[:16]!r}")
        if message[1:] != expected:
            raise PortForwardError(
                f"port-forward announced port {int.from_bytes(message[1:], 'little')}"
            )
        announced.add(message[0])


async def _socket_to_ws(stream: trio.SocketStream, ws: httpx_ws.AsyncWebSocketSession) -> None:
    while data := await stream.receive_some(_CHUNK):
        await ws.send_bytes(bytes([_DATA_CHANNEL]) + data)


async def _ws_to_socket(stream: trio.SocketStream, ws: httpx_ws.AsyncWebSocketSession) -> None:
    while True:
        try:
            message = await ws.receive_bytes()
        except httpx_ws.WebSocketDisconnect:
            return
        if not message:
            continue
        if message[0] == _ERROR_CHANNEL:
            if len(message) > 1:
                raise PortForwardError(message[1:].decode("utf-8", "replace").strip())
            continue
        if message[0] != _DATA_CHANNEL:
            raise PortForwardError(f"data on unknown port-forward channel {message[0]}")
        if len(message) > 1:
            await stream.send_all(message[1:])


Pump = Callable[[trio.SocketStream, httpx_ws.AsyncWebSocketSession], Awaitable[None]]


async def _carry_both_ways(stream: trio.SocketStream, ws: httpx_ws.AsyncWebSocketSession) -> None:
    async with trio.open_nursery() as nursery:

        async def one_way(pump: Pump) -> None:
            await pump(stream, ws)
            nursery.cancel_scope.cancel()  # either end closing ends the tunnel

        nursery.start_soon(one_way, _socket_to_ws)
        nursery.start_soon(one_way, _ws_to_socket)


async def _close_gently(stream: trio.SocketStream) -> None:
    """EOF first, then close once the relay is done with its end: closing a socket with
    unread data resets it, and the relay would never tell the client."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        with trio.move_on_after(_CLOSE_WAIT_SECONDS):
            await stream.send_eof()
            while await stream.receive_some(_CHUNK):
                pass
    await stream.aclose()


def _primary(error: BaseException) -> Exception | None:
    """The error to report (the kubelet's own word first), None for cancellation and the like.
    Both directions may fail as the tunnel breaks: the send side's error is only an echo."""
    leaves = [leaf for leaf in exception_leaves(error) if not isinstance(leaf, trio.Cancelled)]
    if not leaves or not all(isinstance(leaf, Exception) for leaf in leaves):
        return None
    for leaf in leaves:
        if isinstance(leaf, PortForwardError):
            return leaf
    first = leaves[0]
    return first if isinstance(first, Exception) else None


def _describe(error: BaseException) -> str:
    if isinstance(error, httpx_ws.WebSocketUpgradeError):
        response = error.response
        body = response.text.strip()[:200]
        return f"the API server refused the port-forward (HTTP {response.status_code}: {body})"
    if isinstance(error, httpx_ws.WebSocketDisconnect):
        return f"the port-forward closed ({error.code} {error.reason or ''})".strip()
    return str(error) or repr(error)


@attrs.define(eq=False)
class PortForwarder:
    """Opens forwarded connections to one Pod; ``connect`` fits ``serve_relays``."""

    kube: KubeApi
    pod: str
    nursery: trio.Nursery

    async def connect(self, port: int) -> trio.SocketStream:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        outer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        try:
            await self.nursery.start(self._carry, inner, port)
        except BaseException:
            await outer.aclose()
            raise
        return outer

    async def _carry(
        self, stream: trio.SocketStream, port: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await self._tunnel(stream, port, task_status)
        finally:
            stream.socket.close()  # closed already, unless cancelled

    async def _tunnel(
        self, stream: trio.SocketStream, port: int, task_status: trio.TaskStatus[None]
    ) -> None:
        started = False
        try:
            websocket = self.kube.websocket(
                self.pod,
                "portforward",
                {"ports": str(port)},
                [PORTFORWARD_PROTOCOL],
                max_message_size_bytes=_MAX_MESSAGE,
            )
            async with websocket as ws:
                with trio.fail_after(_HANDSHAKE_SECONDS):
                    await _handshake(ws, port)
                started = True
                task_status.started()
                await _carry_both_ways(stream, ws)
        except BaseException as error:
            leaf = _primary(error)
            if leaf is None:
                raise
            reason = _describe(leaf)
            print(
                f"trio-sandbox-warden: note: port-forward to Pod {self.pod}: {reason}",
                file=sys.stderr,
                flush=True,
            )
            if not started:
                # The client of the published port just sees its connection closed.
                raise ConnectionRefusedError(reason) from None
        await _close_gently(stream)


@contextlib.asynccontextmanager
async def open_port_forwarder(kube: KubeApi, pod: str) -> AsyncIterator[PortForwarder]:
    async with trio.open_nursery() as nursery:
        yield PortForwarder(kube, pod, nursery)
        nursery.cancel_scope.cancel()
