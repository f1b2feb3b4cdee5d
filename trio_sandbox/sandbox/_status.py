"""The proxy's own ``trio-sandbox://status`` resource: the sandbox's health and its upstreams.

Served over MCP, so ``trio-sandbox status`` authenticates like any other client.
"""

from __future__ import annotations

from typing import Final

from ..mcp import Resource

STATUS_URI: Final = "trio-sandbox://status"
STATUS_RESOURCE: Final = Resource(
    uri=STATUS_URI,
    name="status",
    title="Sandbox status",
    description="Health of the sandbox and the state of every upstream of the proxy (JSON).",
    mime_type="application/json",
)
