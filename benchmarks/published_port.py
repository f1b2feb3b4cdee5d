"""100 MB through the published port of a real warden (bubblewrap): throughput and the warden's CPU.

A tiny server inside the sandbox (system python3) listens on the contract's CONTAINER_PORT; the
warden publishes it on a free 127.0.0.1 port. Per connection the server reads one byte: ``p``
(a probe, answered with one byte, until the server is up), ``g`` (answered with 100 MB, then
closed) or ``e`` (an echo, what a tool call looks like: small messages both ways). The host reads
the 100 MB to the end of stream through the published port and reports MB/s and the CPU seconds
the warden process spent meanwhile (its own user + system time from /proc: the relay runs
there), then the median time of one round trip of 1 KiB. For reference, the same from the
server run directly on the host port (no relay). Uses only the warden's command line and the
contract's names, so it runs unchanged against older revisions of the package.

    .venv/bin/python benchmarks/published_port.py [--runs N] [--megabytes M]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from warden_start import free_port, stop, wait_first_byte

from trio_sandbox.contract import CONTAINER_PORT

SERVER = """
import socket, sys
size = int(sys.argv[2])
block = bytes(range(256)) * 4096  # 1 MiB
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))  # SO_REUSEADDR set
while True:
    client, _ = server.accept()
    with client:
        request = client.recv(1)
        if request == b"p":
            client.sendall(b"x")
        elif request == b"e":
            while data := client.recv(65536):
                client.sendall(data)
        elif request == b"g":
            left = size
            while left:
                chunk = block[: min(left, len(block))]
                client.sendall(chunk)
                left -= len(chunk)
"""
SERVER_PYTHON = "/usr/bin/python3"
MEGABYTE = 1_000_000
TICKS = os.sysconf("SC_CLK_TCK")


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def cpu_seconds(pid: int) -> float:
    """User + system time of the process ``pid`` itself (not its children)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def transfer(port: int, size: int) -> float:
    """Seconds to read ``size`` bytes to the end of stream."""
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    received = 0
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"g")
        while read := sock.recv_into(view):
            received += read
    elapsed = time.perf_counter() - began
    if received != size:
        raise RuntimeError(f"received {received} bytes of {size}")
    return elapsed


def round_trips(port: int, count: int = 2000, size: int = 1024) -> float:
    """The median seconds of one round trip of ``size`` bytes, on one connection."""
    message = b"m" * size
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"e")
        for _ in range(count):
            began = time.perf_counter()
            sock.sendall(message)
            left = size
            while left:
                left -= len(sock.recv(left))
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(
    argv_for: list[str], port: int, size: int, runs: int
) -> tuple[list[tuple[float, float]], float]:
    """(MB/s, CPU seconds of the process started) for each run, one process for all runs, and
    the median round trip."""
    process = spawn(argv_for)
    try:
        wait_first_byte(port, time.monotonic() + 60, process, b"p")
        results = []
        for _ in range(runs):
            cpu_before = cpu_seconds(process.pid)
            elapsed = transfer(port, size)
            results.append((size / MEGABYTE / elapsed, cpu_seconds(process.pid) - cpu_before))
        return results, round_trips(port)
    finally:
        stop(process)


def main() -> None:
    # A shell's background job starts with SIGINT ignored, and children inherit that: the
    # stop above would then hang. A Python handler is reset by exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=100)
    options = parser.parse_args()
    size = options.megabytes * MEGABYTE
    port = free_port()
    direct = measure([SERVER_PYTHON, "-c", SERVER, str(port), str(size)], port, size, options.runs)
    port = free_port()
    warden_argv = [
        sys.executable,
        "-m",
        "trio_sandbox.warden",
        "wrap",
        "--backend",
        "bwrap",
        "-p",
        f"127.0.0.1:{port}:{CONTAINER_PORT}",
        "host",
        "--",
        SERVER_PYTHON,
        "-c",
        SERVER,
        str(CONTAINER_PORT),
        str(size),
    ]
    relayed = measure(warden_argv, port, size, options.runs)
    print(f"{options.megabytes} MB through 127.0.0.1, median of {options.runs} runs")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for name, (results, round_trip) in (
        ("direct (no relay)", direct),
        ("warden bwrap published", relayed),
    ):
        rates = [rate for rate, _cpu in results]
        cpus = [cpu for _rate, cpu in results]
        print(
            f"{name:24s} {statistics.median(rates):9.1f} MB/s"
            f"  (runs: {', '.join(f'{rate:.0f}' for rate in rates)})"
            f"  server-side process CPU {statistics.median(cpus):.2f} s"
            f"  1 KiB round trip {round_trip * 1e6:.0f} us"
        )
    print("(the CPU figure of the warden line is the warden's own; of the direct line, the server)")


if __name__ == "__main__":
    main()
