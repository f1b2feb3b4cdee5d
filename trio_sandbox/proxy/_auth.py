"""Bearer-token protection for an ASGI app: the proxy's face for hosts without client certs.

A request that presents the token is tagged with the identity of that token (a keyed digest of
it, never the token: :meth:`ClientIdentity.of_token`), which is what the ephemeral mode keys a
stateless-era client's sandbox by."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from ..mcp import INVALID_REQUEST, ClientIdentity, McpError
from ..mcp.lowlevel import dump_message, set_scope_identity

Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


def require_bearer_token(app: Asgi, token: str) -> Asgi:
    """Wrap ``app`` so that HTTP and WebSocket requests need ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("the bearer token must not be empty")
    expected = f"Bearer {token}".encode()
    identity = ClientIdentity.of_token(token)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(presented, expected):
            set_scope_identity(scope, identity)
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
