"""The official SDK's MCPServer on its own Streamable HTTP stack (uvicorn), for the proxy tests.

``python sdk_upstream_child.py PORT``: prints its URL, then serves until stopped.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))

from sdk_peer_server import build_sdk_server


def main(port: int) -> None:
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    sdk = build_sdk_server()
    anyio.run(functools.partial(sdk.run_streamable_http_async, host="127.0.0.1", port=port))


if __name__ == "__main__":
    main(int(sys.argv[1]))
