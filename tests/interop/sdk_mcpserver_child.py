"""The SDK's own MCPServer on stdio, for our stdio client.

``python -m tests.interop.sdk_mcpserver_child``, from the checkout.
"""

from __future__ import annotations

from tests.interop.sdk_peer_server import build_sdk_server

if __name__ == "__main__":
    build_sdk_server().run("stdio")
