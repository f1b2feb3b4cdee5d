"""Bearer-token protection for an ASGI app: the proxy's face for hosts without client certs."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from ..mcp import INVALID_REQUEST, McpError
from ..mcp.lowlevel import dump_message

Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


def require_bearer_token(app: Asgi, token: str) -> Asgi:
    """Wrap ``app`` so that HTTP and WebSocket requests need ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("the bearer token must not be empty")
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(presented, expected):
            await app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        error = McpError(INVALID_REQUEST, "missing or wrong bearer token").response_for(None)
        body = dump_message(error)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="trio-sandbox"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return guarded
