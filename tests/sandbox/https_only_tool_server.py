"""A tool server of the contract (DESIGN.md §2) that speaks Streamable HTTP only, as the original
one does: a WebSocket upgrade is answered with HTTP 403. One tool, ``echo``; run by the fake
warden by its path."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import trio

from trio_sandbox.contract import CLIENT_CA_VARIABLE, MCP_PORT_VARIABLE
from trio_sandbox.mcp import (
    BoundServer,
    HttpSettings,
    Implementation,
    McpHttpApp,
    McpServer,
    RequestContext,
    serve_http,
)
from trio_sandbox.tls import MtlsIdentity, format_ca_block


def main() -> None:
    server = McpServer(Implementation("https-only", "1"))

    @server.tool("echo", description="Says its text back.")
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return str(arguments.get("text", ""))

    mcp_app = McpHttpApp(server, HttpSettings(allowed_hosts=frozenset({"*"})))

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # hypercorn: HTTP 403
            return
        await mcp_app(scope, receive, send)

    identity = MtlsIdentity.generate_server()
    context = identity.server_ssl_context(os.environ[CLIENT_CA_VARIABLE])

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            bound: BoundServer = await nursery.start(
                lambda task_status: serve_http(
                    app,
                    host="127.0.0.1",
                    port=int(os.environ[MCP_PORT_VARIABLE]),
                    ssl_context=context,
                    task_status=task_status,
                )
            )
            url = f"https://127.0.0.1:{bound.port}/mcp"
            print(format_ca_block(identity.ca_cert_pem(), url), end="", flush=True)

    trio.run(serve)


if __name__ == "__main__":
    main()
