"""The official SDK's MCPServer on its own Streamable HTTP stack (uvicorn), for the proxy tests.

``python -m tests.proxy.sdk_upstream_child PORT``, from the checkout: prints its URL, then serves
until stopped.
"""

from __future__ import annotations

import functools
import sys

import anyio

from tests.interop.sdk_peer_server import build_sdk_server


def main(port: int) -> None:
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    sdk = build_sdk_server()
    anyio.run(functools.partial(sdk.run_streamable_http_async, host="127.0.0.1", port=port))


if __name__ == "__main__":
    main(int(sys.argv[1]))
