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
  client has stopped reading a download (the worst case for buffering);
- inject_secrets' interception beside a plain tunnel through the same proxy, to one HTTPS origin
  (a child answering only to the secret's value: every intercepted answer proves the
  substitution): a ``--intercept-megabytes`` (default 100) download by curl over https directly,
  through the plain CONNECT tunnel and intercepted (the placeholder sent, the value received);
  the proxy's CPU time per 100 MB on each leg (from /proc); and request latency from a Trio
  client (CONNECT, then TLS): ``--keepalive-requests`` (default 500) requests on one
  connection (median, p90) and ``--new-connections`` (default 50) requests on a connection
  each (median).

Run:

    .venv/bin/python benchmarks/egress.py --runs 3

There is no goal for interception (it decrypts and re-encrypts every byte): its figures are
ratios against the plain tunnel measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs
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
# The injected secret of the interception legs: the origin answers only to VALUE, the clients
# send PLACEHOLDER (same length and shape), the proxy replaces it.
SECRET_NAME = "BENCH_TOKEN"
VALUE = "ghp_BenchmarkValue0123456789abcdefghijkl"
PLACEHOLDER = "ghp_BenchmarkPlace0123456789abcdefghijkl"
SMALL = b"small answer\n"


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


def serve_origin_tls(path: str, ca_path: str) -> None:
    """HTTPS/1.1 keep-alive on two ports of ORIGIN_HOST (the first is intercepted, the second
    tunnelled): ``/big`` is the file at ``path``, anything else SMALL, each only with
    ``Authorization: Bearer VALUE`` (else a 401); writes its CA to ``ca_path``, prints the
    ports."""
    from trio_sandbox.tls import MtlsIdentity
    from trio_sandbox.tls._key_loading import load_leaf_into_context

    identity = MtlsIdentity.generate_server(hostnames=(ORIGIN_HOST,))
    Path(ca_path).write_text(identity.ca_cert_pem())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    load_leaf_into_context(context, identity.certificate, identity.leaf.private_key)
    size = os.path.getsize(path)
    authorized = f"Authorization: Bearer {VALUE}".lower().encode()

    def answer(raw: socket.socket) -> None:
        # As servers do: else Nagle holds an answer behind the session tickets until the
        # client's delayed ACK (40 ms per new connection).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        with connection, open(path, "rb") as body:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        data = connection.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                big = lines[0].startswith(b"get /big ")
                try:
                    if authorized not in lines[1:]:
                        connection.sendall(
                            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
                        )
                    elif big:
                        connection.sendall(
                            f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
                        )
                        body.seek(0)
                        while chunk := body.read(1 << 18):
                            connection.sendall(chunk)
                    else:
                        connection.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(SMALL), SMALL)
                        )
                except OSError:
                    return

    servers = [socket.create_server((ORIGIN_HOST, 0), backlog=512) for _ in range(2)]
    print(" ".join(str(server.getsockname()[1]) for server in servers), flush=True)

    def accept(server: socket.socket) -> None:
        while True:
            connection, _ = server.accept()
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, args=(servers[1],), daemon=True).start()
    accept(servers[0])


# --- the proxy (child process) ------------------------------------------------------------------


def run_proxy(allow: list[str], **options: Any) -> None:
    """The egress proxy allowing ``allow`` on a free port of 127.0.0.1 (printed once it
    listens), with serve_egress_proxy's ``options``, until killed."""
    from trio_sandbox.egress import EgressPolicy, serve_egress_proxy

    async def main() -> None:
        policy = EgressPolicy.parse(allow)
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=512)
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_egress_proxy, listener, policy, **options))
            print(port, flush=True)

    trio.run(main)


def serve_proxy(origin_port: int, zero_copy: bool) -> None:
    run_proxy([f"{ORIGIN_HOST}:{origin_port}"], zero_copy=zero_copy)


def serve_proxy_intercept(intercepted_port: int, tunnelled_port: int, ca_path: str) -> None:
    """The egress proxy with SECRET_NAME injected for ORIGIN_HOST:intercepted_port (a fresh
    interception CA, written to ``ca_path``, as the warden's), ORIGIN_HOST:tunnelled_port
    allowed as a plain tunnel. Its environment's SSL_CERT_FILE names the origin's CA, as the
    warden's would a host's trust store."""
    from trio_sandbox.egress import Destination, InjectedSecret, Injection
    from trio_sandbox.tls import InterceptionAuthority, LeafContexts, upstream_context

    entry = f"{ORIGIN_HOST}:{intercepted_port}"
    authority = InterceptionAuthority.generate([entry])
    Path(ca_path).write_text(authority.certificate_pem())
    leaves = LeafContexts(authority)
    upstream = upstream_context()

    async def server_context(destination: Destination) -> ssl.SSLContext:
        return leaves.context(str(destination.host))

    async def upstream_context_() -> ssl.SSLContext:
        return upstream

    injection = Injection(
        (InjectedSecret(SECRET_NAME, VALUE, PLACEHOLDER, (entry,)),),
        server_context,
        upstream_context_,
    )
    run_proxy([entry, f"{ORIGIN_HOST}:{tunnelled_port}"], injection=injection)


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


async def read_head(stream: trio.abc.ReceiveStream, closed: str) -> bytes:
    """What came until a response head's end (some of its body may follow it)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError(f"{closed}: {answer!r}")
        answer += data
    return answer


async def open_tunnel(proxy_port: int, origin_port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
    authority = f"{ORIGIN_HOST}:{origin_port}"
    await stream.send_all(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    answer = await read_head(stream, "the proxy closed the tunnel")
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


async def https_tunnel(
    proxy_port: int, port: int, ca_path: str
) -> trio.SSLStream[trio.SocketStream]:
    """CONNECT to ORIGIN_HOST:port through the proxy, then TLS trusting ``ca_path``."""
    context = ssl.create_default_context(cafile=ca_path)
    context.set_alpn_protocols(["http/1.1"])
    stream = trio.SSLStream(
        await open_tunnel(proxy_port, port), context, server_hostname=ORIGIN_HOST
    )
    await stream.do_handshake()
    return stream


async def small_request(stream: trio.SSLStream[trio.SocketStream], port: int, token: str) -> None:
    """One keep-alive ``GET /small``; the answer read whole (it must be the 200: a 401 means
    the value did not arrive)."""
    request = (
        f"GET /small HTTP/1.1\r\nHost: {ORIGIN_HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await stream.send_all(request.encode())
    answer = await read_head(stream, "the connection closed")
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"not authorized: {head!r}")
    length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some(65536)


@attrs.frozen
class HttpsLeg:
    """How a client reaches the TLS origin: its port, the CA it trusts, the token it sends."""

    port: int
    ca_path: str
    token: str


async def request_latency_ms(
    proxy_port: int, legs: dict[str, HttpsLeg], keepalive: int, fresh: int
) -> dict[str, dict[str, float]]:
    """Per leg, taking turns request by request: the latency of a request on one kept-alive
    connection (median, p90), and of a request on a new connection (CONNECT, TLS handshake,
    request; median)."""
    kept = {
        name: await https_tunnel(proxy_port, leg.port, leg.ca_path) for name, leg in legs.items()
    }
    reused: dict[str, list[float]] = {name: [] for name in legs}
    new: dict[str, list[float]] = {name: [] for name in legs}
    for _ in range(keepalive):
        for name, leg in legs.items():
            started = time.perf_counter()
            await small_request(kept[name], leg.port, leg.token)
            reused[name].append(time.perf_counter() - started)
    for stream in kept.values():
        await stream.aclose()
    for _ in range(fresh):
        for name, leg in legs.items():
            started = time.perf_counter()
            stream = await https_tunnel(proxy_port, leg.port, leg.ca_path)
            await small_request(stream, leg.port, leg.token)
            new[name].append(time.perf_counter() - started)
            await stream.aclose()
    return {
        name: {
            "keep-alive": statistics.median(reused[name]) * 1000,
            "keep-alive p90": statistics.quantiles(reused[name], n=10)[-1] * 1000,
            "new connection": statistics.median(new[name]) * 1000,
        }
        for name in legs
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def run_interception(
    nursery: trio.Nursery, scratch: Path, megabytes: int, runs: int, keepalive: int, fresh: int
) -> dict[str, Any]:
    """The interception legs beside the plain tunnel, through one proxy, to one TLS origin."""
    big = scratch / "big-tls"
    with big.open("wb") as file:
        for _ in range(megabytes):
            file.write(os.urandom(1 << 20))
    origin_ca, interception_ca = str(scratch / "origin-ca.pem"), str(scratch / "intercept-ca.pem")
    origin, _ = await start_child_line(nursery, ["_origin_tls", str(big), origin_ca])
    intercepted_port, tunnelled_port = (int(port) for port in origin.split())
    proxy, proxy_process = await start_child_line(
        nursery,
        ["_proxy_intercept", str(intercepted_port), str(tunnelled_port), interception_ca],
        SSL_CERT_FILE=origin_ca,
    )
    proxy_port = int(proxy)
    via = ("-p", "-x", f"http://127.0.0.1:{proxy_port}")
    legs: dict[str, tuple[str, ...]] = {
        "https direct": ("--cacert", origin_ca, "-H", f"Authorization: Bearer {VALUE}"),
        "https tunnel": (*via, "--cacert", origin_ca, "-H", f"Authorization: Bearer {VALUE}"),
        "https intercepted": (
            *via, "--cacert", interception_ca, "-H", f"Authorization: Bearer {PLACEHOLDER}",
        ),
    }  # fmt: skip
    urls = {
        "https direct": f"https://{ORIGIN_HOST}:{tunnelled_port}/big",
        "https tunnel": f"https://{ORIGIN_HOST}:{tunnelled_port}/big",
        "https intercepted": f"https://{ORIGIN_HOST}:{intercepted_port}/big",
    }
    times: dict[str, list[float]] = {leg: [] for leg in legs}
    cpu: dict[str, list[float]] = {leg: [] for leg in legs}
    for round_number in range(runs + 1):
        for leg, extra in legs.items():
            before = cpu_seconds(proxy_process.pid)
            seconds = await trio.to_thread.run_sync(curl_download, urls[leg], *extra)
            if round_number:
                times[leg].append(seconds)
                cpu[leg].append(cpu_seconds(proxy_process.pid) - before)
    results: dict[str, Any] = {leg: statistics.median(values) for leg, values in times.items()}
    results["proxy cpu"] = {leg: statistics.median(values) for leg, values in cpu.items()}
    results["latency"] = await request_latency_ms(
        proxy_port,
        {
            "tunnel": HttpsLeg(tunnelled_port, origin_ca, VALUE),
            "intercepted": HttpsLeg(intercepted_port, interception_ca, PLACEHOLDER),
        },
        keepalive,
        fresh,
    )
    return results


async def start_child_line(
    nursery: trio.Nursery, argv: list[str], **env: str
) -> tuple[str, trio.Process]:
    """A child of this script, and the first line it prints (its port or ports)."""
    process = await start_child(
        nursery,
        [sys.executable, SCRIPT, *argv],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO, **env},
    )
    assert process.stdout is not None
    return await read_line(process.stdout), process


async def run_benchmark(
    megabytes: int, runs: int, intercept_megabytes: int, keepalive: int, fresh: int
) -> dict[str, Any]:
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
            results["interception"] = await run_interception(
                nursery, Path(scratch), intercept_megabytes, runs, keepalive, fresh
            )
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


def report_all(results: dict[str, Any], args: argparse.Namespace) -> str:
    interception = report_interception(results["interception"], args.intercept_megabytes, args.runs)
    return "\n".join([report(results, args.megabytes, args.runs), *interception])


def report_interception(results: dict[str, Any], megabytes: int, runs: int) -> list[str]:
    tunnel = results["https tunnel"]
    lines = [
        "",
        f"inject_secrets interception: {megabytes} MB over https by curl, median of {runs},"
        " through one proxy",
        f"{'leg':<24}{'seconds':>9}{'MB/s':>9}{'vs tunnel':>11}{'proxy CPU s/100 MB':>20}",
    ]
    for leg in ("https direct", "https tunnel", "https intercepted"):
        seconds = results[leg]
        cpu = results["proxy cpu"][leg] * 100 / megabytes
        lines.append(
            f"{leg:<24}{seconds:>9.3f}{megabytes / seconds:>9.0f}{tunnel / seconds:>10.2f}x"
            f"{cpu:>20.2f}"
        )
    latency = results["latency"]
    lines.append("")
    lines.append(f"{'request latency (ms)':<24}{'keep-alive':>12}{'p90':>8}{'new connection':>16}")
    for leg in ("tunnel", "intercepted"):
        figures = latency[leg]
        lines.append(
            f"{leg:<24}{figures['keep-alive']:>12.3f}{figures['keep-alive p90']:>8.3f}"
            f"{figures['new connection']:>16.3f}"
        )
    ratios = {
        key: latency["intercepted"][key] / latency["tunnel"][key]
        for key in ("keep-alive", "new connection")
    }
    lines.append(
        f"intercepted/tunnel: throughput {tunnel / results['https intercepted']:.2f}x,"
        f" keep-alive latency {ratios['keep-alive']:.2f}x,"
        f" new-connection latency {ratios['new connection']:.2f}x"
    )
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_origin":
        serve_origin(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_origin_tls":
        serve_origin_tls(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_proxy_intercept":
        serve_proxy_intercept(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_proxy":
        serve_proxy(int(sys.argv[2]), sys.argv[3] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200, help="size of the download")
    parser.add_argument("--runs", type=int, default=3, help="downloads per leg (median)")
    parser.add_argument(
        "--intercept-megabytes", type=int, default=100, help="size of the https download"
    )
    parser.add_argument(
        "--keepalive-requests", type=int, default=500, help="requests on one connection, per leg"
    )
    parser.add_argument(
        "--new-connections", type=int, default=50, help="requests on a new connection, per leg"
    )
    args = parser.parse_args()
    results = trio.run(
        run_benchmark,
        args.megabytes,
        args.runs,
        args.intercept_megabytes,
        args.keepalive_requests,
        args.new_connections,
    )
    print(report_all(results, args))


if __name__ == "__main__":
    main()
