"""Connecting: ``open_mcp_client`` opens a transport (from a URL, or a transport factory such as
``stdio_transport``), runs the handshake or the stateless probe, and yields a ready client."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

from ...concurrency import single_error
from ..protocol import _versions as versions
from ..protocol._messages import JsonObject
from ..protocol._types import Implementation
from ._auth import HttpAuth
from ._client import DEFAULT_CLIENT_INFO, McpClient, NotificationHandler, ServerRequestHandler
from ._transport import TransportFactory


@asynccontextmanager
async def open_mcp_client(
    transport_or_url: str | TransportFactory,
    *,
    client_info: Implementation = DEFAULT_CLIENT_INFO,
    capabilities: JsonObject | None = None,
    protocol_version: str | None = None,
    sampling: ServerRequestHandler | None = None,
    elicitation: ServerRequestHandler | None = None,
    roots: ServerRequestHandler | None = None,
    on_notification: NotificationHandler | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    auth: HttpAuth | None = None,
) -> AsyncIterator[McpClient]:
    """Connect to an MCP server and yield a ready client; leaving the block disconnects.

    ``transport_or_url`` is an ``http(s)://`` or ``ws(s)://`` URL, or a transport factory such as
    :func:`stdio_transport`. ``protocol_version`` pins a version instead of probing. ``headers``
    and ``ssl_context`` apply to URL targets (static headers, mTLS); ``auth`` authorizes every
    request to an ``http(s)://`` URL (an OAuth client, say) and is asked on a 401/403.
    """
    if protocol_version is not None and protocol_version not in versions.SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported protocol version {protocol_version!r}")
    factory = _factory_for(transport_or_url, headers, ssl_context, auth)
    declared: JsonObject = {}
    if sampling is not None:
        declared["sampling"] = {}
    if elicitation is not None:
        declared["elicitation"] = {}
    if roots is not None:
        declared["roots"] = {"listChanged": True}
    declared.update(capabilities or {})
    target = transport_or_url if isinstance(transport_or_url, str) else "transport"
    # Callers see their own exception (or ours), not the nursery's wrapping.
    with single_error():
        async with trio.open_nursery() as nursery:
            client = McpClient(
                target,
                client_info,
                declared,
                nursery,
                sampling,
                elicitation,
                roots,
                on_notification,
            )
            if on_notification is not None:
                nursery.start_soon(client.serve_notifications)
            async with factory(client) as transport:
                client.target = transport.target
                client._transport = transport
                await client._connect(protocol_version)
                yield client
            nursery.cancel_scope.cancel()


def _factory_for(
    target: str | TransportFactory,
    headers: Mapping[str, str] | None,
    ssl_context: ssl.SSLContext | None,
    auth: HttpAuth | None,
) -> TransportFactory:
    if not isinstance(target, str):
        if auth is not None:
            raise ValueError("auth= applies to an http(s) URL; give it to http_transport instead")
        return target
    scheme = target.partition(":")[0].lower()
    if scheme in ("http", "https"):
        from ._http import http_transport

        return http_transport(target, headers=headers, ssl_context=ssl_context, auth=auth)
    if auth is not None:
        raise ValueError(f"auth= applies to an http(s) URL, not {scheme}")
    if scheme in ("ws", "wss"):
        from ._websocket import websocket_transport

        return websocket_transport(target, ssl_context=ssl_context)
    raise ValueError(f"not an MCP server URL: {target!r} (http, https, ws or wss)")
