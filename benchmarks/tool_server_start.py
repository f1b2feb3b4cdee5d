"""Start-up time of the tool server: spawn -> CA block printed, beside Python's own start-up.

Each round spawns, in turn (interleaved, so that machine noise hits every leg alike):

- ``python -c pass`` and ``python -c "import trio"`` (spawn -> exit): the floors;
- ``python -m trio_sandbox.tools`` with a client CA, as the host runs it (DESIGN.md §2), timing
  spawn -> the ``MCP server started at`` line after the CA block (what the host waits for),
  spawn -> first answer over mTLS (a stateless ``tools/list``: what the host really needs), and
  SIGTERM -> exit 0.

Medians of ``--runs`` rounds (default 15) and ratios against the floors. Run:

    .venv/bin/python benchmarks/tool_server_start.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from trio_sandbox.tls import CaBlock, CaBlockParser, MtlsIdentity

STATELESS_VERSION = "2026-07-28"


def time_exit(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def list_tools_over_mtls(port: int, context: ssl.SSLContext) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/list",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
                }
            },
        }
    ).encode()
    request = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: "
        f"{STATELESS_VERSION}\r\nMcp-Method: tools/list\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the server answered {answer!r}")


def time_tool_server(client: MtlsIdentity, workdir: str) -> tuple[float, float, float]:
    """(spawn -> started line, spawn -> first answer, SIGTERM -> exit)."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("STAKPAK_") and key != "container"
    }
    environ.update(STAKPAK_MCP_PORT="0", STAKPAK_MCP_CLIENT_CA=client.ca_cert_pem())
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_sandbox.tools", "--workdir", workdir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=environ,
        text=True,
    )
    try:
        assert process.stdout is not None
        # The contract's parser, fed line by line, until the block and the started line are in.
        parser, block = CaBlockParser(), None
        for line in process.stdout:
            block = parser.feed_line(line) or block
            if block is not None and parser.server_url is not None:
                break
        announced = time.perf_counter() - started
        if block is None or parser.server_url is None:
            raise RuntimeError("the tool server did not print its CA block")
        block = CaBlock(block.ca_pem, parser.server_url)
        assert block.server_url is not None
        port = int(block.server_url.rsplit(":", 1)[1].split("/", 1)[0])
        list_tools_over_mtls(port, client.client_ssl_context(block.ca_pem))
        answered = time.perf_counter() - started
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        if process.wait(timeout=30) != 0:
            raise RuntimeError(f"the tool server exited {process.returncode}")
        stopped = time.perf_counter() - stopping
        return announced, answered, stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (median reported)")
    args = parser.parse_args()
    client = MtlsIdentity.generate_client()
    legs: dict[str, list[float]] = {
        "python -c pass": [],
        "python -c 'import trio'": [],
        "tool server: spawn -> CA block": [],
        "tool server: spawn -> first mTLS answer": [],
        "tool server: SIGTERM -> exit 0": [],
    }
    with tempfile.TemporaryDirectory() as workdir:
        time_tool_server(client, workdir)  # warm the page cache and .pyc files
        for _ in range(args.runs):
            legs["python -c pass"].append(time_exit([sys.executable, "-c", "pass"]))
            legs["python -c 'import trio'"].append(time_exit([sys.executable, "-c", "import trio"]))
            announced, answered, stopped = time_tool_server(client, workdir)
            legs["tool server: spawn -> CA block"].append(announced)
            legs["tool server: spawn -> first mTLS answer"].append(answered)
            legs["tool server: SIGTERM -> exit 0"].append(stopped)
    medians = {name: statistics.median(times) for name, times in legs.items()}
    print(f"{sys.executable} (Python {sys.version.split()[0]}), {args.runs} runs, medians:")
    for name, median in medians.items():
        spread = f"min {min(legs[name]) * 1000:.0f} / max {max(legs[name]) * 1000:.0f} ms"
        print(f"  {name:42s} {median * 1000:7.0f} ms   ({spread})")
    block = medians["tool server: spawn -> CA block"]
    ready = medians["tool server: spawn -> first mTLS answer"]
    bare, trio_only = medians["python -c pass"], medians["python -c 'import trio'"]
    print(f"ratio CA block / python -c pass:      {block / bare:.1f}x")
    print(f"ratio CA block / import trio:         {block / trio_only:.1f}x")
    print(f"ratio first answer / import trio:     {ready / trio_only:.1f}x")


if __name__ == "__main__":
    main()
