"""The WebSocket face: MCP messages as text frames, on the same endpoint as Streamable HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from ...protocol._errors import HttpRefusal, McpError
from ...protocol._jsonrpc import dump_message
from ...protocol._messages import INVALID_REQUEST, LIMIT_REACHED
from ...protocol._versions import WEBSOCKET_SUBPROTOCOL
from .._budget import RequestBudget
from .._duplex import serve_duplex
from .._identity import ClientIdentity
from .._server import McpServer
from .._session import ServerSession
from ._asgi import (
    HttpSettings,
    Receive,
    Scope,
    Send,
    cancel_on_event,
    check_host_and_origin,
    headers_of,
    refusal_body,
)


async def serve_websocket(
    server: McpServer,
    settings: HttpSettings,
    closing: trio.Event,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    full: bool = False,
    face_requests: RequestBudget | None = None,
    client_identity: ClientIdentity | None = None,
) -> None:
    """One WebSocket connection (subprotocol ``mcp``): the duplex session loop over its frames,
    until the peer leaves or ``closing`` is set. ``full``: the face holds its maximum of
    WebSocket connections already; the upgrade is refused with 503. Requests count against the
    connection's own bound and ``face_requests``."""
    headers = headers_of(scope)
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    try:
        check_host_and_origin(headers, settings)
    except HttpRefusal:
        await send({"type": "websocket.close", "code": 1008})
        return
    if scope["path"].rstrip("/") != settings.path.rstrip("/") or (
        WEBSOCKET_SUBPROTOCOL not in scope.get("subprotocols", [])
    ):
        await send({"type": "websocket.close", "code": 1002})
        return
    if full:
        refusal = HttpRefusal(
            503,
            f"too many WebSocket connections: this face serves at most {settings.max_websockets}"
            " at once; retry when one ends",
            code=LIMIT_REACHED,
        )
        await _deny(scope, send, refusal)
        return
    await send({"type": "websocket.accept", "subprotocol": WEBSOCKET_SUBPROTOCOL})

    async def frames() -> AsyncIterator[bytes | str]:
        while True:
            event = await receive()
            if event["type"] != "websocket.receive":
                return
            data = event.get("text") if event.get("text") is not None else event.get("bytes")
            if data is not None and len(data) > settings.max_body_bytes:
                error = McpError(INVALID_REQUEST, "message too large")
                await send_text(dump_message(error.response_for(None)))
                continue
            if data is not None:
                yield data

    async def send_text(data: bytes) -> None:
        await send({"type": "websocket.send", "text": data.decode()})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_on_event, closing, nursery.cancel_scope)
        budgets = [RequestBudget(settings.max_requests_per_session, "a session")]
        if face_requests is not None:
            budgets.append(face_requests)
        # Each connection is a session of its own, named like an HTTP one.
        await serve_duplex(
            server,
            frames(),
            send_text,
            budgets=budgets,
            client_identity=client_identity,
            session_id=ServerSession.new_id(),
        )
        nursery.cancel_scope.cancel()
    # The peer may be gone already.
    with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": 1000})


async def _deny(scope: Scope, send: Send, refusal: HttpRefusal) -> None:
    """Refuse an upgrade with an HTTP status and a JSON-RPC error body where the server can
    (the ASGI ``websocket.http.response`` extension), else close it with 1013 (try again later)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1013})
        return
    body = refusal_body(refusal)
    headers = [
        *refusal.headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    start = {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
    await send(start)
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
