"""How the proxy opens a client for an upstream, with its relays as the client's handlers."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Final

import attrs

from ..mcp import (
    HttpAuth,
    JsonObject,
    McpClient,
    Notification,
    ServerRequestHandler,
    TransportFactory,
    open_mcp_client,
)

# What the proxy may relay from an upstream to a downstream client that asked for it.
_RELAYED_CAPABILITIES: Final[JsonObject] = {"sampling": {}, "elicitation": {}, "roots": {}}


@attrs.frozen
class ClientHooks:
    """What the proxy hands ``open_mcp_client`` for one upstream (see :func:`opener_for_url`)."""

    on_notification: Callable[[Notification], Awaitable[None]]
    answer: Callable[[str, JsonObject], Awaitable[JsonObject]]
    protocol_version: str | None = None

    def open_client(
        self,
        target: str | TransportFactory,
        *,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        auth: HttpAuth | None = None,
    ) -> AbstractAsyncContextManager[McpClient]:
        """``open_mcp_client`` with the proxy's relays as the client's handlers."""

        def handler(method: str) -> ServerRequestHandler:
            async def handle(params: JsonObject) -> JsonObject:
                return await self.answer(method, params)

            return handle

        return open_mcp_client(
            target,
            on_notification=self.on_notification,
            sampling=handler("sampling/createMessage"),
            elicitation=handler("elicitation/create"),
            roots=handler("roots/list"),
            capabilities=dict(_RELAYED_CAPABILITIES),
            protocol_version=self.protocol_version,
            ssl_context=ssl_context,
            headers=headers,
            auth=auth,
        )


ClientOpener = Callable[[ClientHooks], AbstractAsyncContextManager[McpClient]]


def opener_for_url(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
    auth: HttpAuth | None = None,
) -> ClientOpener:
    def open_client(hooks: ClientHooks) -> AbstractAsyncContextManager[McpClient]:
        return hooks.open_client(url, ssl_context=ssl_context, headers=headers, auth=auth)

    return open_client
