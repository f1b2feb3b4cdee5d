"""A tiny in-process ASGI driver: hands an app receive/send callables and records what it sends.

It checks the ASGI contract on the way (one response start, no body after the end, nothing sent
on a WebSocket before accept), so that a property test catches protocol slips as well as bad
answers. Hypercorn is not involved: this is for speed; real-socket tests cover the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, TypeAlias

import attrs
import trio

AsgiMessage: TypeAlias = MutableMapping[str, Any]
AsgiApp: TypeAlias = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[AsgiMessage]],
        Callable[[AsgiMessage], Awaitable[None]],
    ],
    Awaitable[None],
]


@attrs.define(eq=False)
class HttpResult:
    status: int | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    complete: bool = False


def http_scope(
    method: str, path: str, headers: Sequence[tuple[str, str]]
) -> MutableMapping[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def call_http(
    app: AsgiApp,
    *,
    method: str = "POST",
    path: str = "/mcp",
    headers: Sequence[tuple[str, str]] = (),
    body_chunks: Sequence[bytes] = (b"",),
    hang_up_after_body: bool = False,
) -> HttpResult:
    """Drive one HTTP request through ``app``.

    The client stays connected until the response is complete, unless ``hang_up_after_body``
    (then ``http.disconnect`` follows the last body chunk at once, as when a client gives up).
    """
    result = HttpResult()
    response_done = trio.Event()
    pending = list(body_chunks) or [b""]

    async def receive() -> AsgiMessage:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        if not hang_up_after_body:
            await response_done.wait()
        return {"type": "http.disconnect"}

    async def send(message: AsgiMessage) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            assert result.status is None, "the response was started twice"
            result.status = message["status"]
            result.headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", [])
            }
        elif kind == "http.response.body":
            assert result.status is not None, "body before the response start"
            assert not result.complete, "body after the end of the response"
            result.body += message.get("body", b"")
            if not message.get("more_body", False):
                result.complete = True
                response_done.set()
        else:
            raise AssertionError(f"unexpected ASGI message {kind!r}")
        await trio.lowlevel.checkpoint()

    await app(http_scope(method, path, headers), receive, send)
    return result


@attrs.define(eq=False)
class WebSocketResult:
    accepted: bool = False
    subprotocol: str | None = None
    sent: list[bytes | str] = attrs.field(factory=list)
    close_code: int | None = None


async def call_websocket(
    app: AsgiApp,
    frames: Sequence[bytes | str],
    *,
    path: str = "/mcp",
    headers: Sequence[tuple[str, str]] = (("host", "127.0.0.1"),),
    subprotocols: Sequence[str] = ("mcp",),
    linger: float = 60.0,
) -> WebSocketResult:
    """Connect, send ``frames``, wait ``linger`` (virtual) seconds for answers, then hang up."""
    result = WebSocketResult()
    pending: list[AsgiMessage] = [{"type": "websocket.connect"}]
    for frame in frames:
        key = "text" if isinstance(frame, str) else "bytes"
        pending.append({"type": "websocket.receive", key: frame})
    disconnected = False

    async def receive() -> AsgiMessage:
        nonlocal disconnected
        if pending:
            return pending.pop(0)
        if not disconnected and result.close_code is None:
            await trio.sleep(linger)
        disconnected = True
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: AsgiMessage) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            assert not result.accepted
            assert result.close_code is None
            result.accepted = True
            result.subprotocol = message.get("subprotocol")
        elif kind == "websocket.send":
            assert result.accepted, "sent a frame before accepting"
            assert result.close_code is None, "sent a frame after closing"
            text, data = message.get("text"), message.get("bytes")
            frame = text if text is not None else data
            assert isinstance(frame, (str, bytes)), message
            assert (text is None) != (data is None), message
            result.sent.append(frame)
        elif kind == "websocket.close":
            assert result.close_code is None, "closed twice"
            result.close_code = message.get("code", 1000)
        else:
            raise AssertionError(f"unexpected ASGI message {kind!r}")
        await trio.lowlevel.checkpoint()

    scope: MutableMapping[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": list(subprotocols),
    }
    await app(scope, receive, send)
    return result
