"""The server's HTTP face: one ASGI app (``_app``) for Streamable HTTP in both protocol eras and
WebSocket on the same endpoint, with its POST answers (``_post``), handshake-era sessions
(``_sessions``), server-sent event streams (``_sse``), WebSocket face (``_websocket``), ASGI
plumbing (``_asgi``), and hypercorn under Trio (``_hypercorn``).
"""

from __future__ import annotations

from ._app import McpHttpApp as McpHttpApp
from ._app import serve_lifespan as serve_lifespan
from ._asgi import HttpSettings as HttpSettings
from ._hypercorn import BoundServer as BoundServer
from ._hypercorn import serve_http as serve_http
