"""Calls per second of a no-op MCP tool: ours beside the official Python SDK's, in the same run.

Legs, each ``--seconds`` long (default 3), sequential and with ``--callers`` (default 20)
concurrent callers on one connection:

- ours over Streamable HTTP: open_mcp_client -> serve_http (hypercorn under Trio);
- ours over WebSocket: the same client and server, ws:// instead of http://;
- the SDK over Streamable HTTP: mcp.Client (asyncio) -> MCPServer's Starlette app on uvicorn,
  the SDK's own usual stack.

Each server runs in its own child process and each client in another (ours in this process,
the SDK's in a child running asyncio), so every leg has the same shape. Run:

    .venv/bin/python benchmarks/mcp_calls.py --seconds 3
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

NOOP_TOOL = "noop"
PASSWORD_TOOL = "generate_password"
GOALS = {"http": 1.5, "websocket": 4.0}
SCRIPT = os.path.abspath(__file__)


# --- the servers (child processes) --------------------------------------------------------------


def serve_ours() -> None:
    from trio_sandbox.mcp import (
        BoundServer,
        Implementation,
        McpHttpApp,
        McpServer,
        RequestContext,
        serve_http,
    )

    server = McpServer(Implementation("bench-ours", "1"))

    @server.tool(NOOP_TOOL, description="Does nothing.")
    async def noop(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return ""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound: BoundServer = await nursery.start(
                functools.partial(serve_http, McpHttpApp(server))
            )
            print(bound.url, flush=True)

    trio.run(main)


def serve_sdk(port: int) -> None:
    import anyio
    from mcp.server.mcpserver import MCPServer

    from trio_sandbox.tools import generate_password

    sdk = MCPServer("bench-sdk", version="1", log_level="WARNING")

    @sdk.tool(name=NOOP_TOOL, description="Does nothing.")
    def noop() -> str:
        return ""

    @sdk.tool(name=PASSWORD_TOOL, description="A random password (the tool server's own code).")
    def password(length: int | None = None, no_symbols: bool = False) -> str:
        if length is None:  # the tool's own default
            return generate_password(no_symbols=no_symbols)
        return generate_password(length, no_symbols=no_symbols)

    anyio.run(functools.partial(sdk.run_streamable_http_async, host="127.0.0.1", port=port))


# --- the SDK's client (a child process running asyncio) ----------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def sdk_client(
    url: str, seconds: float, callers: int, tool: str = NOOP_TOOL, server_pid: int | None = None
) -> None:
    """Prints calls per second, sequential and concurrent; with ``server_pid`` also the CPU
    microseconds per call of this client and that server together (``<mode>_cpu_us``)."""
    import asyncio

    import mcp

    figures: dict[str, Any] = {}

    def cpu() -> float:
        own = os.times()
        theirs = process_cpu_seconds(server_pid) if server_pid else 0.0
        return own.user + own.system + theirs

    async def leg(client: mcp.Client, concurrency: int, mode: str) -> float:
        deadline = time.perf_counter() + seconds
        count = 0

        async def caller() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                result = await client.call_tool(tool, {})
                assert not result.is_error
                count += 1

        started, cpu_before = time.perf_counter(), cpu()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        if server_pid:
            figures[f"{mode}_cpu_us"] = (cpu() - cpu_before) / max(count, 1) * 1e6
        return count / (time.perf_counter() - started)

    async def main() -> None:
        async with mcp.Client(url) as client:
            await client.call_tool(tool, {})  # warm up
            figures["version"] = client.protocol_version
            figures["sequential"] = await leg(client, 1, "sequential")
            figures["concurrent"] = await leg(client, callers, "concurrent")
        print(json.dumps(figures), flush=True)

    asyncio.run(main())


# --- our client ---------------------------------------------------------------------------------


async def our_leg(url: str, seconds: float, callers: int) -> dict[str, Any]:
    from trio_sandbox.mcp import open_mcp_client

    async with open_mcp_client(url) as client:
        await client.call_tool(NOOP_TOOL, {})  # warm up

        async def leg(concurrency: int) -> float:
            count = 0

            async def caller() -> None:
                nonlocal count
                while trio.current_time() < deadline:
                    result = await client.call_tool(NOOP_TOOL, {})
                    assert not result.is_error
                    count += 1

            deadline = trio.current_time() + seconds
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(caller)
            return count / (time.perf_counter() - started)

        return {
            "version": client.protocol_version,
            "sequential": await leg(1),
            "concurrent": await leg(callers),
        }


# --- orchestration ------------------------------------------------------------------------------


def _kill_group(process: trio.Process) -> Callable[[], Awaitable[None]]:
    async def deliver_cancel() -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with trio.move_on_after(3):
            await process.wait()
            return
        os.killpg(process.pid, signal.SIGKILL)

    return deliver_cancel


async def start_child(nursery: trio.Nursery, argv: list[str], **kwargs: Any) -> trio.Process:
    async def deliver_cancel(process: trio.Process) -> None:
        await _kill_group(process)()

    process: trio.Process = await nursery.start(
        functools.partial(
            trio.run_process,
            argv,
            start_new_session=True,
            check=False,
            deliver_cancel=deliver_cancel,
            **kwargs,
        )
    )
    return process


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            raise RuntimeError(f"child ended before printing a line: {data!r}")
        data += chunk
    return data.decode().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(port: int) -> None:
    with trio.fail_after(30):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def run_benchmark(seconds: float, callers: int) -> dict[str, dict[str, Any]]:
    me = [sys.executable, SCRIPT]
    results: dict[str, dict[str, Any]] = {}
    async with trio.open_nursery() as nursery:
        ours = await start_child(nursery, [*me, "_serve-ours"], stdout=subprocess.PIPE)
        assert ours.stdout is not None
        http_url = await read_line(ours.stdout)
        ws_url = "ws" + http_url.removeprefix("http")
        results["ours http"] = await our_leg(http_url, seconds, callers)
        results["ours websocket"] = await our_leg(ws_url, seconds, callers)

        port = free_port()
        await start_child(nursery, [*me, "_serve-sdk", str(port)])
        await wait_for_port(port)
        finished = await trio.run_process(
            [*me, "_client-sdk", f"http://127.0.0.1:{port}/mcp", str(seconds), str(callers)],
            capture_stdout=True,
        )
        results["sdk http"] = json.loads(finished.stdout.decode().strip().splitlines()[-1])
        nursery.cancel_scope.cancel()
    return results


def results_table(results: dict[str, dict[str, Any]], seconds: float, callers: int) -> list[str]:
    """The header and one row per leg; shared with proxy_calls.py."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    width = max(len(name) for name in results) + 2
    lines = [
        f"no-op tools/call, {seconds:g} s per leg, 1 and {callers} concurrent callers",
        f"machine: {os.cpu_count()} CPUs, load average {load} (other work skews every leg)",
        f"{'leg':<{width}}{'version':<12}{'sequential/s':>14}{'concurrent/s':>14}",
    ]
    for name, figures in results.items():
        lines.append(
            f"{name:<{width}}{figures['version']:<12}"
            f"{figures['sequential']:>14.0f}{figures['concurrent']:>14.0f}"
        )
    return lines


def report(results: dict[str, dict[str, Any]], seconds: float, callers: int) -> str:
    lines = results_table(results, seconds, callers)
    sdk = results["sdk http"]
    for face, goal in GOALS.items():
        ours = results[f"ours {face}"]
        for mode in ("sequential", "concurrent"):
            ratio = ours[mode] / sdk[mode] if sdk[mode] else math.inf
            verdict = "meets" if ratio >= goal else "MISSES"
            lines.append(
                f"ratio ours {face} / sdk http, {mode}: {ratio:.2f}x ({verdict} the {goal}x goal)"
            )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve-ours":
        serve_ours()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_serve-sdk":
        serve_sdk(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_client-sdk":
        tool = sys.argv[5] if len(sys.argv) > 5 else NOOP_TOOL
        server_pid = int(sys.argv[6]) if len(sys.argv) > 6 else None
        sdk_client(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), tool, server_pid)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each leg")
    parser.add_argument("--callers", type=int, default=20, help="concurrent callers")
    args = parser.parse_args()
    results = trio.run(run_benchmark, args.seconds, args.callers)
    print(report(results, args.seconds, args.callers))


if __name__ == "__main__":
    main()
