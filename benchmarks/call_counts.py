"""Python function calls per MCP call, counted by cProfile: a figure the machine's load does not
move, for comparing two revisions of the code (a refactor must not add work per call).

Legs (``--calls`` each, after a warm-up):

- memory: ``open_mcp_client(memory_transport(server))`` to an ``McpServer`` in this process,
  a no-op tool (the path of the embedding API's in-process client);
- http / websocket: the same client and server over Streamable HTTP or WebSocket on
  127.0.0.1, both ends in this process (so both ends are counted);
- embedded: ``Sandbox.call_tool("view", ...)`` on a real sandbox (bubblewrap), the host side
  only (the proxy, its in-process client and its client to the tool server);
- tool server start-up: every call from ``python -m trio_sandbox.tools`` starting until it
  prints its started line (imports included), in a child process.

Uses only the public API, so it runs unchanged on any revision since issue 13:

    .venv/bin/python benchmarks/call_counts.py
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trio_sandbox.mcp import (
    BoundServer,
    Implementation,
    McpClient,
    McpHttpApp,
    McpServer,
    RequestContext,
    memory_transport,
    open_mcp_client,
    serve_http,
)
from trio_sandbox.sandbox import SandboxConfig, open_sandbox
from trio_sandbox.tls import MtlsIdentity

WARM_UP = 20
STARTED_LINE = "MCP server started at "


def noop_server() -> McpServer:
    server = McpServer(Implementation("bench-counts", "1"))

    @server.tool("noop", description="Does nothing.")
    async def noop(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return ""

    return server


async def counted(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Function calls per ``call()``, over ``calls`` of them after a warm-up."""
    for _ in range(WARM_UP):
        await call()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        await call()
    profile.disable()
    return pstats.Stats(profile).total_calls / calls  # type: ignore[attr-defined,no-any-return]


async def client_leg(client: McpClient, calls: int) -> float:
    return await counted(functools.partial(client.call_tool, "noop", {}), calls)


# The child: the tool server under cProfile from its first import (this script's own imports
# would hide them) until it prints its started line; then the count goes to stderr.
PROFILED_START = f"""
import cProfile, os, pstats, runpy, sys
profile = cProfile.Profile()
out = sys.stdout
class StopAtStartedLine:
    def write(self, text):
        if {STARTED_LINE!r} in text:
            profile.disable()
            print(pstats.Stats(profile).total_calls, file=sys.stderr, flush=True)
            os._exit(0)
        return out.write(text)
    def flush(self):
        out.flush()
sys.stdout = StopAtStartedLine()
sys.argv = ["trio_sandbox.tools", "--workdir", os.getcwd()]
profile.enable()
runpy.run_module("trio_sandbox.tools", run_name="__main__", alter_sys=True)
"""


def tool_server_start_calls() -> int:
    client = MtlsIdentity.generate_client()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("STAKPAK_")}
    environ.pop("container", None)
    environ.update(STAKPAK_MCP_PORT="0", STAKPAK_MCP_CLIENT_CA=client.ca_cert_pem())
    child = subprocess.run(
        [sys.executable, "-c", PROFILED_START],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stderr.split()[-1])


async def main(calls: int) -> None:
    server = noop_server()
    figures: dict[str, float] = {}
    async with open_mcp_client(memory_transport(server)) as client:
        figures["memory"] = await client_leg(client, calls)
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(functools.partial(serve_http, McpHttpApp(server)))
        async with open_mcp_client(bound.url) as client:
            figures["http"] = await client_leg(client, calls)
        async with open_mcp_client("ws" + bound.url.removeprefix("http")) as client:
            figures["websocket"] = await client_leg(client, calls)
        nursery.cancel_scope.cancel()
    async with open_sandbox(SandboxConfig()) as sandbox:
        view = functools.partial(sandbox.call_tool, "view", {"path": "/"})
        figures["embedded"] = await counted(view, max(calls // 4, 1))
    print("Python function calls per call (cProfile)")
    for leg, figure in figures.items():
        print(f"{leg:10} {figure:8.0f}")
    print(f"tool server start-up to its started line: {tool_server_start_calls()} calls")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    trio.run(main, parser.parse_args().calls)
