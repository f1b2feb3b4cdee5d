"""The egress proxy's throughput, tunnel set-up time and memory, against direct connections.

In one run, on 127.0.0.1 only:

- a download of ``--megabytes`` (default 200) from a local HTTP server (a child process that
  answers with ``sendfile``), by curl: directly (the baseline), through the proxy via CONNECT
  (``curl -p -x``), and via an absolute-form request (``curl -x``); each ``--runs`` times (median),
  once with the proxy relaying through splice(2) and once copying through Python;
- the same download by curl inside a real bubblewrap sandbox (``trio-sandbox-warden wrap
  --network allow``), through the warden's proxy in the sandbox's network namespace;
- the time to open a tunnel (TCP connect + CONNECT + ``200``), beside a direct TCP connect;
- the proxy process's resident memory idle, with 100 tunnels open, and with 100 tunnels whose
  client has stopped reading a download (the worst case for buffering).

Run:

    .venv/bin/python benchmarks/egress.py --runs 3
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

# The child-process plumbing is mcp_calls.py's.
from mcp_calls import read_line, start_child

SCRIPT = os.path.abspath(__file__)
# The checkout this script is in, so that its children import this trio_sandbox, not another.
REPO = os.path.dirname(os.path.dirname(SCRIPT))
GOAL = 0.8
# The host's loopback as the sandbox's allow-list names it (127.0.0.1 is the sandbox's own).
ORIGIN_HOST = "127.0.0.2"
TUNNELS = 100


# --- the origin server (child process) ----------------------------------------------------------


def serve_origin(path: str) -> None:
    """HTTP/1.1 on ORIGIN_HOST: every request gets the file at ``path`` (sendfile); a connection
    that sends nothing is simply held open."""
    size = os.path.getsize(path)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode()

    def answer(connection: socket.socket) -> None:
        with connection, open(path, "rb") as body:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            try:
                connection.sendall(head)
                connection.sendfile(body)
            except OSError:
                return

    server = socket.create_server((ORIGIN_HOST, 0), backlog=512)
    print(server.getsockname()[1], flush=True)
    while True:
        connection, _ = server.accept()
        threading.Thread(target=answer, args=(connection,), daemon=True).start()


# --- the proxy (child process) ------------------------------------------------------------------


def serve_proxy(origin_port: int, zero_copy: bool) -> None:
    from trio_sandbox.egress import EgressPolicy, serve_egress_proxy

    async def main() -> None:
        policy = EgressPolicy.parse([f"{ORIGIN_HOST}:{origin_port}"])
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=512)
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_egress_proxy, listener, policy, zero_copy=zero_copy)
            )
            print(port, flush=True)

    trio.run(main)


# --- measurements -------------------------------------------------------------------------------


def curl_download(url: str, *extra: str) -> float:
    """Seconds curl itself reports for fetching ``url`` to /dev/null (its start-up excluded)."""
    finished = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{time_total}", *extra, url],
        env={key: value for key, value in os.environ.items() if "proxy" not in key.lower()},
        check=True,
        capture_output=True,
    )
    return float(finished.stdout)


def sandboxed_download(url: str, origin_port: int) -> float:
    """curl's own time for ``url`` inside a bubblewrap sandbox whose only way out is the
    warden's egress proxy (the sandbox's start-up excluded)."""
    warden = [sys.executable, "-m", "trio_sandbox.warden", "wrap", "--backend", "bwrap"]
    warden += ["--network", "allow", f"--allow-domain={ORIGIN_HOST}:{origin_port}", "host"]
    curl = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{time_total}", url]
    finished = subprocess.run(
        [*warden, "--", *curl],
        env={**os.environ, "PYTHONPATH": REPO},
        check=True,
        capture_output=True,
    )
    return float(finished.stdout)


async def open_tunnel(proxy_port: int, origin_port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
    authority = f"{ORIGIN_HOST}:{origin_port}"
    await stream.send_all(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = await stream.receive_some(4096)
        if not data:
            raise RuntimeError(f"the proxy closed the tunnel: {answer!r}")
        answer += data
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the proxy refused the tunnel: {answer!r}")
    return stream


async def tunnel_setup_ms(proxy_port: int, origin_port: int, count: int = 50) -> dict[str, float]:
    direct: list[float] = []
    tunnel: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        stream = await trio.open_tcp_stream(ORIGIN_HOST, origin_port)
        direct.append(time.perf_counter() - started)
        await stream.aclose()
        started = time.perf_counter()
        stream = await open_tunnel(proxy_port, origin_port)
        tunnel.append(time.perf_counter() - started)
        await stream.aclose()
    return {
        "direct": statistics.median(direct) * 1000,
        "tunnel": statistics.median(tunnel) * 1000,
    }


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def memory_kib(pid: int, proxy_port: int, origin_port: int) -> dict[str, int]:
    figures = {"idle": resident_kib(pid)}
    tunnels = [await open_tunnel(proxy_port, origin_port) for _ in range(TUNNELS)]
    await trio.sleep(0.5)
    figures["open"] = resident_kib(pid)
    request = f"GET /big HTTP/1.1\r\nHost: {ORIGIN_HOST}\r\n\r\n".encode()
    for stream in tunnels:
        await stream.send_all(request)
    await trio.sleep(2)  # every download fills every buffer on its path, then stalls
    figures["stalled"] = resident_kib(pid)
    for stream in tunnels:
        await stream.aclose()
    await trio.sleep(0.5)
    figures["closed"] = resident_kib(pid)
    return figures


# --- orchestration ------------------------------------------------------------------------------


async def start_port_child(nursery: trio.Nursery, argv: list[str]) -> tuple[trio.Process, int]:
    """A child of this script that prints the port it listens on (mcp_calls.py's plumbing)."""
    process = await start_child(
        nursery,
        [sys.executable, SCRIPT, *argv],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert process.stdout is not None
    return process, int(await read_line(process.stdout))


async def run_benchmark(megabytes: int, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        big = Path(scratch) / "big"
        with big.open("wb") as file:
            for _ in range(megabytes):
                file.write(os.urandom(1 << 20))
        async with trio.open_nursery() as nursery:
            _, origin_port = await start_port_child(nursery, ["_origin", str(big)])
            url = f"http://{ORIGIN_HOST}:{origin_port}/big"
            proxies = {
                mode: await start_port_child(
                    nursery, ["_proxy", str(origin_port), "1" if zero_copy else "0"]
                )
                for mode, zero_copy in (("splice", True), ("copy", False))
            }
            legs: dict[str, tuple[str, ...]] = {"direct": ()}
            for mode, (_, proxy_port) in proxies.items():
                legs[f"{mode} connect"] = ("-p", "-x", f"http://127.0.0.1:{proxy_port}")
                legs[f"{mode} absolute"] = ("-x", f"http://127.0.0.1:{proxy_port}")
            # Legs take turns within each round, so a change in the machine's load falls on
            # the baseline and the proxied legs alike.
            times: dict[str, list[float]] = {leg: [] for leg in [*legs, "sandbox"]}
            for round_number in range(runs + 1):
                for leg, extra in legs.items():
                    seconds = await trio.to_thread.run_sync(curl_download, url, *extra)
                    if round_number:  # the first round warms the page cache and the processes
                        times[leg].append(seconds)
                seconds = await trio.to_thread.run_sync(sandboxed_download, url, origin_port)
                if round_number:
                    times["sandbox"].append(seconds)
            results.update({leg: statistics.median(values) for leg, values in times.items()})
            for mode, (proxy, proxy_port) in proxies.items():
                results[f"{mode} setup"] = await tunnel_setup_ms(proxy_port, origin_port)
                results[f"{mode} memory"] = await memory_kib(proxy.pid, proxy_port, origin_port)
            nursery.cancel_scope.cancel()
    return results


def report(results: dict[str, Any], megabytes: int, runs: int) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    direct = results["direct"]
    rate = megabytes / direct
    lines = [
        f"{megabytes} MB download by curl from a sendfile server on {ORIGIN_HOST},"
        f" median of {runs}",
        f"machine: {os.cpu_count()} CPUs, load average {load}",
        f"{'leg':<24}{'seconds':>9}{'MB/s':>9}{'vs direct':>11}",
        f"{'direct':<24}{direct:>9.3f}{rate:>9.0f}{1.0:>10.2f}x",
    ]
    verdicts = []
    for mode in ("splice", "copy"):
        for form in ("connect", "absolute"):
            seconds = results[f"{mode} {form}"]
            ratio = direct / seconds
            lines.append(
                f"{f'proxy {mode}, {form}':<24}{seconds:>9.3f}{megabytes / seconds:>9.0f}"
                f"{ratio:>10.2f}x"
            )
            if mode == "splice":
                verdict = "meets" if ratio >= GOAL else "MISSES"
                verdicts.append(
                    f"through/direct, {form}: {ratio:.2f}x ({verdict} the {GOAL}x goal)"
                )
    sandboxed = results["sandbox"]
    lines.append(
        f"{'in bwrap, warden proxy':<24}{sandboxed:>9.3f}{megabytes / sandboxed:>9.0f}"
        f"{direct / sandboxed:>10.2f}x"
    )
    verdict = "meets" if direct / sandboxed >= GOAL else "MISSES"
    verdicts.append(
        f"in a sandbox/direct on the host: {direct / sandboxed:.2f}x ({verdict} the {GOAL}x goal)"
    )
    lines.append("")
    lines.append(f"{'tunnel set-up (ms, median of 50)':<40}{'direct TCP':>12}{'CONNECT':>10}")
    for mode in ("splice", "copy"):
        setup = results[f"{mode} setup"]
        lines.append(f"{f'proxy {mode}':<40}{setup['direct']:>12.2f}{setup['tunnel']:>10.2f}")
    lines.append("")
    lines.append(
        f"{'proxy RSS (MiB)':<20}{'idle':>8}{f'{TUNNELS} open':>10}"
        f"{f'{TUNNELS} stalled':>13}{'closed':>9}"
    )
    for mode in ("splice", "copy"):
        memory = results[f"{mode} memory"]
        lines.append(
            f"{f'proxy {mode}':<20}{memory['idle'] / 1024:>8.1f}{memory['open'] / 1024:>10.1f}"
            f"{memory['stalled'] / 1024:>13.1f}{memory['closed'] / 1024:>9.1f}"
        )
    return "\n".join([*lines, "", *verdicts])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_origin":
        serve_origin(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_proxy":
        serve_proxy(int(sys.argv[2]), sys.argv[3] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200, help="size of the download")
    parser.add_argument("--runs", type=int, default=3, help="downloads per leg (median)")
    args = parser.parse_args()
    results = trio.run(run_benchmark, args.megabytes, args.runs)
    print(report(results, args.megabytes, args.runs))


if __name__ == "__main__":
    main()
