"""Protocol versions and the two eras they belong to."""

from __future__ import annotations

from typing import Final

V2024_11_05: Final = "2024-11-05"
V2025_03_26: Final = "2025-03-26"
V2025_06_18: Final = "2025-06-18"
V2025_11_25: Final = "2025-11-25"
V2026_07_28: Final = "2026-07-28"

# Versions negotiated with initialize / notifications/initialized, oldest first.
HANDSHAKE_VERSIONS: Final = (V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25)
# Versions where every request carries its protocol version in _meta and there is no session.
STATELESS_VERSIONS: Final = (V2026_07_28,)
SUPPORTED_VERSIONS: Final = HANDSHAKE_VERSIONS + STATELESS_VERSIONS
LATEST_HANDSHAKE_VERSION: Final = V2025_11_25
LATEST_VERSION: Final = V2026_07_28

# The WebSocket subprotocol of MCP.
WEBSOCKET_SUBPROTOCOL: Final = "mcp"

# The _meta keys the protocol reserves for itself; a proxy must not relay them as they came.
META_RESERVED_PREFIX: Final = "io.modelcontextprotocol/"
META_PROTOCOL_VERSION: Final = META_RESERVED_PREFIX + "protocolVersion"
META_CLIENT_INFO: Final = META_RESERVED_PREFIX + "clientInfo"
META_CLIENT_CAPABILITIES: Final = META_RESERVED_PREFIX + "clientCapabilities"
META_SERVER_INFO: Final = META_RESERVED_PREFIX + "serverInfo"
META_LOG_LEVEL: Final = META_RESERVED_PREFIX + "logLevel"
META_SUBSCRIPTION_ID: Final = META_RESERVED_PREFIX + "subscriptionId"


def is_stateless(version: str) -> bool:
    return version in STATELESS_VERSIONS


def has_resource_links(version: str) -> bool:
    """``resource_link`` content exists from 2025-06-18 on."""
    return version not in (V2024_11_05, V2025_03_26)


def batches_allowed(version: str | None) -> bool:
    """JSON-RPC batches exist only in 2025-03-26."""
    return version == V2025_03_26
