"""The proxy's own ``trio-sandbox://status`` resource: the sandbox's health, its upstreams, and
its warm spares (ready, starting, in use, and why starts back off).

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
    description=(
        "Health of the sandbox, its warm spares and the state of every upstream of the proxy"
        " (JSON)."
    ),
    mime_type="application/json",
)
