"""The SDK's own MCPServer on stdio, for our stdio client: ``python sdk_mcpserver_child.py``."""

from __future__ import annotations

from sdk_peer_server import build_sdk_server

if __name__ == "__main__":
    build_sdk_server().run("stdio")
