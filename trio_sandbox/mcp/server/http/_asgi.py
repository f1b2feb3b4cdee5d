"""ASGI plumbing shared by the HTTP face: the types, what the face accepts, refusals as HTTP
statuses with a JSON-RPC error body, and reading headers and bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

import attrs
import trio

from ...protocol._errors import HttpRefusal
from ...protocol._jsonrpc import MAX_MESSAGE_BYTES, dump_message

Scope: TypeAlias = MutableMapping[str, Any]
AsgiMessage: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[AsgiMessage]]
Send: TypeAlias = Callable[[AsgiMessage], Awaitable[None]]

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@attrs.frozen
class HttpSettings:
    """What the HTTP face accepts. The defaults suit a server reached on the loopback interface."""

    path: str = "/mcp"
    # Host names (no port) a request may name in its Host header; "*" allows any (421 otherwise).
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    # Browser origins allowed besides the loopback ones (403 otherwise).
    allowed_origins: frozenset[str] = frozenset()
    max_body_bytes: int = MAX_MESSAGE_BYTES
    # A POST's whole body must arrive within this (a slow sender holds a connection otherwise).
    body_timeout: float = 30.0
    sse_keepalive_seconds: float = 15.0
    sse_retry_ms: int = 1000
    # Handshake-era sessions: idle ones end after this, and at most ``max_sessions`` are kept
    # (the least recently active idle one makes room for a new one; see ``._sessions``).
    session_idle_timeout: float | None = 600.0
    max_sessions: int = 1000
    # WebSocket connections open at once (each is a session of its own).
    max_websockets: int = 100
    # Requests running at once in one session (HTTP or WebSocket), and on the whole face; None:
    # unbounded, for a server whose one client is a proxy that bounds its own clients.
    max_requests_per_session: int | None = None
    max_requests_in_flight: int | None = None


# Frozen, so one shared instance is a safe default.
DEFAULT_HTTP_SETTINGS: Final = HttpSettings()


def refusal_body(refusal: HttpRefusal) -> bytes:
    """The JSON-RPC error body of a refusal."""
    return dump_message(refusal.response)


def headers_of(scope: Scope) -> dict[str, str]:
    # Header names are lower-case in ASGI; a repeated header keeps its last value.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def hostname_of(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    if netloc.count(":") > 1:  # a bare IPv6 address
        return netloc
    return netloc.partition(":")[0].lower()


def accepted_types(accept: str) -> set[str]:
    return {part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()}


async def read_body(headers: dict[str, str], receive: Receive, limit: int, seconds: float) -> bytes:
    """The whole body: at most ``limit`` bytes (413), within ``seconds`` (408)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpRefusal(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpRefusal(400, "the client disconnected while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpRefusal(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise HttpRefusal(408, f"the body did not arrive within {seconds:g} s")


async def send_plain(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    if body:
        all_headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def cancel_on_event(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def check_host_and_origin(headers: dict[str, str], settings: HttpSettings) -> None:
    """421 for a Host this face does not serve (DNS rebinding), 403 for a foreign Origin."""
    host = hostname_of(headers.get("host", ""))
    allowed = settings.allowed_hosts
    if "*" not in allowed and host not in allowed:
        raise HttpRefusal(421, f"host {host!r} is not served here (DNS rebinding protection)")
    origin = headers.get("origin")
    if (
        origin is not None
        and origin not in settings.allowed_origins
        and hostname_of(urlsplit(origin).netloc) not in LOOPBACK_HOSTS
    ):
        raise HttpRefusal(403, f"origin {origin!r} is not allowed")
