"""The proxy over real sockets on 127.0.0.1: tunnels, SOCKS5 replies, absolute-form forwarding,
bad input, timeouts (virtual time), upstream failures and the counters."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.egress.egress_harness import (
    Origins,
    map_resolver,
    open_connection,
    receive_all,
    receive_until,
    running_proxy,
    serving_site,
)
from trio_sandbox.egress import EgressEvent, EgressPolicy, IPAddress

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    """A server of this test on 127.0.0.1; its port."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        yield port
        nursery.cancel_scope.cancel()


async def echo_then_bye(stream: trio.SocketStream) -> None:
    """Echoes until the client's EOF, then says b"bye" and closes."""
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_all(b"bye")


async def greet_then_half_close(stream: trio.SocketStream) -> None:
    """Sends b"hello", half-closes, then reads until the client's EOF and logs how much came
    (its own write side is shut, so the log is how the test learns it)."""
    async with stream:
        await stream.send_all(b"hello")
        await stream.send_eof()
        received = await receive_all(stream)
        logging.getLogger("test.upstream").info("received %d", len(received))


def replying(answer: bytes) -> Handler:
    """Reads a request head, answers ``answer``, closes."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await receive_until(stream, b"\r\n\r\n")
            await stream.send_all(answer)

    return handler


def connect_head(target: str) -> bytes:
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()


def get_head(url: str, *fields: str) -> bytes:
    return ("\r\n".join([f"GET {url} HTTP/1.1", "Host: x", *fields]) + "\r\n\r\n").encode()


def resolver_to_loopback(*names: str) -> Callable[[str], Awaitable[Sequence[IPAddress]]]:
    return map_resolver({name: [LOOPBACK] for name in names})


async def read_response(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: its head and its body."""
    raw = await receive_until(stream, b"\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        assert chunk, "the proxy closed mid-body"
        body += chunk
    return head, body


# --- CONNECT tunnels --------------------------------------------------------------------------


@pytest.mark.parametrize("zero_copy", [True, False])
async def test_a_tunnel_carries_bytes_and_passes_the_clients_eof_on(zero_copy: bool) -> None:
    async with tcp_server(echo_then_bye) as port:
        policy = EgressPolicy.parse([f"echo.test:{port}"])
        async with running_proxy(
            policy, resolver_to_loopback("echo.test"), zero_copy=zero_copy
        ) as proxy:
            client = await open_connection(proxy.port)
            # The first payload rides in the same packet as the CONNECT head.
            await client.send_all(connect_head(f"echo.test:{port}") + b"early ")
            answer = await receive_until(client, b"early ")
            assert answer == b"HTTP/1.1 200 Connection established\r\n\r\nearly "
            payload = bytes(range(256)) * 4096  # 1 MiB, larger than every buffer on the path
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, payload)
                echoed = b""
                while len(echoed) < len(payload):
                    echoed += await client.receive_some(65536)
            assert echoed == payload
            await client.send_eof()  # the upstream sees EOF, says bye, closes
            assert await receive_all(client) == b"bye"
            await client.aclose()
            await proxy.wait_until_idle()
    counters = proxy.stats.snapshot()["destinations"][f"echo.test:{port}"]
    assert counters["bytes_sent"] == len(b"early ") + len(payload)
    assert counters["bytes_received"] == len(b"early ") + len(payload) + len(b"bye")
    assert proxy.lines() == [f"allowed echo.test:{port} (127.0.0.1)"]


@pytest.mark.parametrize("zero_copy", [True, False])
async def test_a_tunnel_passes_the_upstreams_eof_on_and_keeps_the_other_direction(
    zero_copy: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.upstream")
    async with tcp_server(greet_then_half_close) as port:
        policy = EgressPolicy.parse([f"127.0.0.1:{port}"])
        async with running_proxy(policy, zero_copy=zero_copy) as proxy:
            client = await open_connection(proxy.port)
            await client.send_all(connect_head(f"127.0.0.1:{port}"))
            assert await receive_all(client) == (
                b"HTTP/1.1 200 Connection established\r\n\r\nhello"
            )
            # The upstream's half-close reached us; our direction still works.
            await client.send_all(b"x" * 100_000)
            await client.send_eof()
            await client.aclose()
            await proxy.wait_until_idle()
    assert "received 100000" in caplog.messages


async def test_a_tunnel_to_a_closed_port_is_a_502_naming_the_failure() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    policy = EgressPolicy.parse([f"gone.test:{port}"])
    async with (
        running_proxy(policy, resolver_to_loopback("gone.test")) as proxy,
        await open_connection(proxy.port) as client,
    ):
        await client.send_all(connect_head(f"gone.test:{port}"))
        answer = await receive_all(client)
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"X-Proxy-Error: upstream-unreachable\r\n" in answer
    # The sandbox learns how it failed; only the host's log names the address.
    expected = f"failed gone.test:{port} (cannot connect: Connection refused)\n"
    assert answer.endswith(expected.encode())
    assert proxy.lines() == [
        f"failed gone.test:{port} (cannot connect: Connection refused) [to 127.0.0.1:{port}]"
    ]
    assert proxy.stats.snapshot()["destinations"][f"gone.test:{port}"]["failed"] == 1


async def test_a_name_that_rebinds_to_loopback_is_refused_and_never_dialed() -> None:
    dialed: list[str] = []

    async def record(stream: trio.SocketStream) -> None:
        dialed.append("connected")
        await stream.aclose()

    async with tcp_server(record) as port:
        policy = EgressPolicy.parse([f"*.rebind.test:{port}"])
        async with (
            running_proxy(policy, resolver_to_loopback("a.rebind.test")) as proxy,
            await open_connection(proxy.port) as client,
        ):
            await client.send_all(connect_head(f"a.rebind.test:{port}"))
            answer = await receive_all(client)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Proxy-Error: blocked-address\r\n" in answer
    assert answer.endswith(
        f"refused a.rebind.test:{port} (resolves to a special address (loopback); list "
        f"'a.rebind.test:{port}' (the name with its port) in allow_domains to allow it)\n".encode()
    )
    assert b"127.0.0.1" not in answer  # the address is the host's log's only
    assert dialed == []


async def test_a_name_is_resolved_once_and_only_the_vetted_address_is_dialed() -> None:
    answers = [[LOOPBACK], [ipaddress.IPv4Address("169.254.169.254")]]
    asked: list[str] = []

    async def fickle(name: str) -> Sequence[IPAddress]:
        asked.append(name)
        return answers[min(len(asked), 2) - 1]

    async with tcp_server(echo_then_bye) as port:
        policy = EgressPolicy.parse([f"files.test:{port}"])
        async with running_proxy(policy, fickle) as proxy:
            client = await open_connection(proxy.port)
            await client.send_all(connect_head(f"files.test:{port}") + b"ping")
            assert (await receive_until(client, b"ping")).endswith(b"ping")
            await client.aclose()
    assert asked == ["files.test"]
    assert proxy.lines() == [f"allowed files.test:{port} (127.0.0.1)"]


# --- SOCKS5 -----------------------------------------------------------------------------------

NO_AUTH = b"\x05\x01\x00"


def socks_connect(address_type: int, address: bytes, port: int) -> bytes:
    return bytes((5, 1, 0, address_type)) + address + port.to_bytes(2, "big")


async def socks_reply(proxy_port: int, *messages: bytes) -> bytes:
    """Everything the proxy sends back to ``messages`` followed by our EOF."""
    async with await open_connection(proxy_port) as client:
        for message in messages:
            await client.send_all(message)
        await client.send_eof()
        return await receive_all(client)


async def test_socks5_connects_by_name_ipv4_and_ipv6() -> None:
    async with tcp_server(echo_then_bye) as port:
        (listener6,) = await trio.open_tcp_listeners(0, host="::1")
        port6 = listener6.socket.getsockname()[1]
        policy = EgressPolicy.parse([f"echo.test:{port}", f"127.0.0.1:{port}", f"[::1]:{port6}"])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo_then_bye, [listener6])
            async with running_proxy(policy, resolver_to_loopback("echo.test")) as proxy:
                for request in (
                    socks_connect(3, b"\x09echo.test", port),
                    socks_connect(1, LOOPBACK.packed, port),
                    socks_connect(4, ipaddress.IPv6Address("::1").packed, port6),
                ):
                    answer = await socks_reply(proxy.port, NO_AUTH, request + b"ping")
                    assert answer == b"\x05\x00" + b"\x05\x00\x00\x01" + bytes(6) + b"pingbye"
            nursery.cancel_scope.cancel()
    assert [event.protocol for event in proxy.events] == ["socks5"] * 3


async def test_socks5_refusals_use_the_rfc_reply_codes() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    policy = EgressPolicy.parse([f"closed.test:{closed_port}", "unknown.test"])
    async with running_proxy(policy, resolver_to_loopback("closed.test")) as proxy:

        async def code_for(request: bytes) -> int:
            answer = await socks_reply(proxy.port, NO_AUTH, request)
            assert answer[:2] == b"\x05\x00"
            assert answer[2:4] == b"\x05" + answer[3:4]
            return answer[3]

        assert await code_for(socks_connect(3, b"\x0bblocked.com", 443)) == 0x02
        assert await code_for(socks_connect(1, LOOPBACK.packed, 22)) == 0x02
        assert await code_for(socks_connect(3, b"\x0cunknown.test", 443)) == 0x04
        assert await code_for(socks_connect(3, b"\x0bclosed.test", closed_port)) == 0x05
        assert await code_for(bytes((5, 2, 0, 1)) + bytes(6)) == 0x07  # BIND
        assert await code_for(bytes((5, 3, 0, 1)) + bytes(6)) == 0x07  # UDP ASSOCIATE
        assert await code_for(bytes((5, 1, 0, 9)) + bytes(6)) == 0x08
        assert await code_for(socks_connect(3, b"\x03a b", 80)) == 0x04
        assert await code_for(b"\x09\x09\x09\x09\x09\x09") == 0x01  # garbage after a greeting
        # Authentication only: "no acceptable methods", then the connection ends.
        assert await socks_reply(proxy.port, b"\x05\x01\x02") == b"\x05\xff"
        # SOCKS4: rejected in its own format.
        assert await socks_reply(proxy.port, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00") == (
            b"\x00\x5b" + bytes(6)
        )
    assert proxy.lines()[:3] == [
        "refused blocked.com:443 (not in allow_domains)",
        "refused 127.0.0.1:22 (not in allow_domains; an IP address is allowed only by an entry "
        "naming it)",
        "failed unknown.test:443 (cannot resolve unknown.test: Name or service not known)",
    ]


# --- absolute-form requests -------------------------------------------------------------------


def files_policy(origins: Origins) -> EgressPolicy:
    return EgressPolicy.parse([f"files.test:{origins.http}"])


async def test_keep_alive_requests_are_each_judged_and_forwarded_in_origin_form(
    tmp_path: Path,
) -> None:
    async with (
        serving_site(tmp_path) as origins,
        running_proxy(files_policy(origins), resolver_to_loopback("files.test")) as proxy,
    ):
        client = await open_connection(proxy.port)
        base = f"http://files.test:{origins.http}"
        await client.send_all(
            get_head(
                f"{base}/headers",
                "Proxy-Authorization: Basic c2VjcmV0",
                "Proxy-Connection: keep-alive",
                "Connection: X-Hop",
                "X-Hop: dropped",
                "X-End: kept",
            )
        )
        head, body = await read_response(client)
        assert head.startswith(b"HTTP/1.1 200 OK")
        forwarded = body.decode().splitlines()
        assert f"Host: files.test:{origins.http}" in forwarded
        assert "X-End: kept" in forwarded
        assert not [line for line in forwarded if line.lower().startswith(("proxy-", "x-hop"))]

        # The same connection: a refused request, then allowed ones again.
        await client.send_all(get_head(f"http://other.test:{origins.http}/hello.txt"))
        head, body = await read_response(client)
        assert head.startswith(b"HTTP/1.1 403 Forbidden")
        assert body == f"refused other.test:{origins.http} (not in allow_domains)\n".encode()
        for _ in range(2):
            await client.send_all(get_head(f"{base}/hello.txt"))
            head, body = await read_response(client)
            assert body == b"hello through the egress proxy\n"
        # One upstream connection served every allowed request.
        assert proxy.stats.upstreams_open == 1
        await client.aclose()
    assert [line.split(" ")[0] for line in proxy.lines()] == [
        "allowed",
        "refused",
        "allowed",
        "allowed",
    ]


@pytest.mark.parametrize("zero_copy", [True, False])
async def test_request_and_response_bodies_stream_with_length_or_chunked(
    tmp_path: Path, zero_copy: bool
) -> None:
    async with (
        serving_site(tmp_path) as origins,
        running_proxy(
            files_policy(origins), resolver_to_loopback("files.test"), zero_copy=zero_copy
        ) as proxy,
    ):
        client = await open_connection(proxy.port)
        url = f"http://files.test:{origins.http}"
        body = bytes(range(256)) * 8192  # 2 MiB
        await client.send_all(
            f"POST {url}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, body)
            head, echoed = await read_response(client)
        assert echoed == body

        chunks = [b"a" * 70000, b"b" * 5, b"c" * 300000]
        chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        await client.send_all(
            f"POST {url}/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + chunked
            + b"0\r\nX-Trailer: t\r\n\r\n"
        )
        head, echoed = await read_response(client)
        assert echoed == b"".join(chunks)

        await client.send_all(get_head(f"{url}/chunked?n=40"))
        raw = await receive_until(client, b"\r\n0\r\n\r\n")
        head, _, chunked_body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert (
            chunked_body
            == b"".join(
                b"3e8\r\n" + bytes([65 + index % 26]) * 1000 + b"\r\n" for index in range(40)
            )
            + b"0\r\n\r\n"
        )

        await client.send_all(
            f"HEAD {url}/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await receive_all(client)
        await client.aclose()
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b"\r\n\r\n")
        assert b"Connection: close\r\n" in answer
    assert proxy.stats.snapshot()["totals"]["allowed"] == 4


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", "400 Bad Request", b"malformed request line 'GARBAGE'"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", b"this is a proxy"),
        (b"GET https://a.test/ HTTP/1.1\r\n\r\n", "400 Bad Request", b"CONNECT tunnel"),
        (b"CONNECT a.test HTTP/1.1\r\n\r\n", "400 Bad Request", b"CONNECT needs host:port"),
        (b"GET http://a.test/ HTTP/3.0\r\n\r\n", "505 HTTP Version Not Supported", b"HTTP/1.1"),
        (
            b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "400 Bad Request",
            b"both Transfer-Encoding and Content-Length",
        ),
        (
            b"GET http://a.test/ HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
            "431 Request Header Fields Too Large",
            b"request head larger than 65536 bytes",
        ),
    ],
)
async def test_bad_requests_get_a_clear_error_and_the_proxy_serves_on(
    tmp_path: Path, request_bytes: bytes, status: str, reason: bytes
) -> None:
    async with (
        serving_site(tmp_path) as origins,
        running_proxy(files_policy(origins), resolver_to_loopback("files.test")) as proxy,
    ):
        client = await open_connection(proxy.port)
        await client.send_all(request_bytes)
        answer = await receive_all(client)
        await client.aclose()
        assert answer.startswith(f"HTTP/1.1 {status}\r\n".encode())
        assert b"X-Proxy-Error: bad-request\r\n" in answer
        assert reason in answer.partition(b"\r\n\r\n")[2]
        # Another client is served as ever.
        other = await open_connection(proxy.port)
        await other.send_all(get_head(f"http://files.test:{origins.http}/hello.txt"))
        assert (await read_response(other))[1] == b"hello through the egress proxy\n"
        await other.aclose()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"", b"the upstream closed the connection without answering"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", b"the upstream sent a malformed status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"bad Content-Length 'x'"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", b"the upstream switched protocols"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", b"response head larger than"),
    ],
)
async def test_a_bad_upstream_answer_is_a_502_with_the_reason(answer: bytes, reason: bytes) -> None:
    async with tcp_server(replying(answer)) as port:
        policy = EgressPolicy.parse([f"bad.test:{port}"])
        async with running_proxy(policy, resolver_to_loopback("bad.test")) as proxy:
            client = await open_connection(proxy.port)
            await client.send_all(get_head(f"http://bad.test:{port}/"))
            response = await receive_all(client)
            await client.aclose()
    assert response.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"X-Proxy-Error: upstream-error\r\n" in response
    assert response.partition(b"\r\n\r\n")[2].startswith(
        f"failed bad.test:{port} (".encode() + reason
    )
    assert proxy.stats.upstreams_open == 0


async def test_a_close_delimited_response_is_relayed_and_ends_the_client_connection() -> None:
    async with tcp_server(replying(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of it")) as port:
        policy = EgressPolicy.parse([f"old.test:{port}"])
        async with running_proxy(policy, resolver_to_loopback("old.test")) as proxy:
            client = await open_connection(proxy.port)
            await client.send_all(get_head(f"http://old.test:{port}/"))
            answer = await receive_all(client)
            await client.aclose()
    assert answer == b"HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\nall of it"


async def keep_alive_hello(stream: trio.SocketStream) -> None:
    """Answers every request on the connection with a 5-byte body."""
    async with stream:
        while (await receive_until(stream, b"\r\n\r\n")).endswith(b"\r\n\r\n"):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")


# --- timeouts and limits (virtual time) -------------------------------------------------------


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = EgressPolicy.parse(["a.test"])
    async with running_proxy(policy, handshake_timeout=10) as proxy:
        silent = await open_connection(proxy.port)
        started = trio.current_time()
        assert await receive_all(silent) == b""
        assert trio.current_time() - started == pytest.approx(10)

        partial = await open_connection(proxy.port)
        await partial.send_all(b"GET http://a.test/ HTTP/1.1\r\nHost:")
        started = trio.current_time()
        answer = await receive_all(partial)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert trio.current_time() - started == pytest.approx(10)

        socks = await open_connection(proxy.port)
        started = trio.current_time()
        await socks.send_all(NO_AUTH)
        assert await receive_all(socks) == b"\x05\x00"  # then nothing: dropped at 10 s
        assert trio.current_time() - started == pytest.approx(10)
        for stream in (silent, partial, socks):
            await stream.aclose()
        await proxy.wait_until_idle()


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tcp_server(keep_alive_hello) as port:
        policy = EgressPolicy.parse([f"files.test:{port}"])
        async with running_proxy(
            policy, resolver_to_loopback("files.test"), idle_timeout=30, handshake_timeout=5
        ) as proxy:
            client = await open_connection(proxy.port)
            for _ in range(2):
                await client.send_all(get_head(f"http://files.test:{port}/"))
                assert (await read_response(client))[1] == b"hello"
                await trio.sleep(20)  # idle, but less than the idle timeout
            started = trio.current_time()
            assert await receive_all(client) == b""  # closed quietly, no 408
            assert trio.current_time() - started == pytest.approx(10)
            await client.aclose()
    assert proxy.lines() == [f"allowed files.test:{port} (127.0.0.1)"] * 2


async def test_clients_beyond_max_connections_wait_for_a_free_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tcp_server(keep_alive_hello) as port:
        policy = EgressPolicy.parse([f"files.test:{port}"])
        async with running_proxy(
            policy, resolver_to_loopback("files.test"), handshake_timeout=10, max_connections=1
        ) as proxy:
            silent = await open_connection(proxy.port)  # holds the only slot until dropped
            await trio.testing.wait_all_tasks_blocked()
            waiting = await open_connection(proxy.port)  # accepted by the kernel's backlog
            started = trio.current_time()
            await waiting.send_all(get_head(f"http://files.test:{port}/"))
            assert (await read_response(waiting))[1] == b"hello"
            assert trio.current_time() - started == pytest.approx(10)
            assert proxy.stats.connections_open == 1
            for stream in (silent, waiting):
                await stream.aclose()


# --- observability ----------------------------------------------------------------------------


async def test_the_stats_snapshot_is_json_and_bounded_in_destinations() -> None:
    policy = EgressPolicy.parse(["a.test"])
    async with running_proxy(policy) as proxy:
        proxy.stats.max_destinations = 3
        for index in range(6):
            client = await open_connection(proxy.port)
            await client.send_all(connect_head(f"n{index}.test:443"))
            assert (await receive_all(client)).startswith(b"HTTP/1.1 403 Forbidden")
            await client.aclose()
        client = await open_connection(proxy.port)
        await client.send_all(connect_head("bad_name!:443"))
        await receive_all(client)
        await client.aclose()
        await proxy.wait_until_idle()
        snapshot = json.loads(json.dumps(proxy.stats.snapshot()))
    # Refused destinations have a table of their own (bounded), apart from the allowed ones.
    assert list(snapshot["refused"]) == ["n0.test:443", "n1.test:443", "n2.test:443", "(other)"]
    assert snapshot["refused"]["(other)"]["refused"] == 4  # n3..n5 and the invalid one
    assert snapshot["destinations"] == {}
    assert snapshot["rules"] == {}
    assert snapshot["totals"]["refused"] == 7
    assert snapshot["refused"]["n0.test:443"]["last_refusal"] == "not in allow_domains"
    assert snapshot["connections_open"] == 0


async def test_a_decision_is_logged_on_one_line_at_once() -> None:
    policy = EgressPolicy.parse(["a.test"])
    async with running_proxy(policy) as proxy:
        client = await open_connection(proxy.port)
        await client.send_all(connect_head("pypi.example.org:443"))
        await receive_all(client)
        await client.aclose()
        assert proxy.log_lines == ["refused pypi.example.org:443 (not in allow_domains)"]


async def test_a_fault_in_one_connection_is_logged_and_the_proxy_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail_for_one(event: EgressEvent) -> None:
        if event.target == "crash.test:443":
            raise RuntimeError("a broken event callback")

    async with running_proxy(EgressPolicy(), also_on_event=fail_for_one) as proxy:
        for target in ("crash.test:443", "other.test:443"):
            async with await open_connection(proxy.port) as client:
                await client.send_all(connect_head(target))
                answers = await receive_all(client)
        await proxy.wait_until_idle()
    assert answers.startswith(b"HTTP/1.1 403 Forbidden")  # the second client was served
    (record,) = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "a broken event callback"


async def test_a_tls_client_hello_is_dropped_with_a_hint_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sandbox.egress")
    async with running_proxy(EgressPolicy()) as proxy:
        client = await open_connection(proxy.port)
        await client.send_all(b"\x16\x03\x01\x00\x05hello")
        assert await receive_all(client) == b""
        await client.aclose()
    assert any("use an http:// proxy URL" in message for message in caplog.messages)
