"""One record per connection of the sandbox (``on_connection``), in-process on 127.0.0.1 with
real servers: an absolute-form HTTP request is one (a kept upstream connection carries several),
a CONNECT tunnel and a SOCKS5 connection are one each, an intercepted tunnel too; refusals and
failures at the decision are records at once, a refusal inside a tunnel is that tunnel's
verdict. Bytes are exactly what crossed the proxy. A flood is bounded per window and every
connection is counted in exactly one record (virtual time)."""

from __future__ import annotations

import ipaddress
import json
import math
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tests.egress.egress_harness import (
    RunningProxy,
    map_resolver,
    open_connection,
    receive_all,
    receive_until,
    running_proxy,
)
from tests.egress.intercept_harness import (
    NAME,
    OTHER_PLACEHOLDER,
    PLACEHOLDER,
    VALUE,
    exchange,
    intercepting,
    tls_through,
)
from trio_sandbox.contract import REPORT_MAX_LINE_BYTES
from trio_sandbox.egress import (
    MAX_REASON_CHARS,
    MAX_TARGET_CHARS,
    OTHER_DESTINATIONS,
    ConnectionRecord,
    EgressPolicy,
    InjectedSecret,
    Injection,
    RefusalKind,
    Refused,
    Verdict,
)
from trio_sandbox.egress._connections import ConnectionLog, Moment

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
BODY = bytes(range(256)) * 40  # 10 KiB
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
NO_AUTH = b"\x05\x01\x00"


@attrs.define
class Origin:
    port: int
    connections: int = 0
    heads: list[bytes] = attrs.Factory(list)


@asynccontextmanager
async def keep_alive_origin() -> AsyncIterator[Origin]:
    """Answers every request head with RESPONSE on the same connection; keeps the heads."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    origin = Origin(listener.socket.getsockname()[1])

    async def serve(stream: trio.SocketStream) -> None:
        origin.connections += 1
        async with stream:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                origin.heads.append(head + b"\r\n\r\n")
                await stream.send_all(RESPONSE)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, [listener])
        yield origin
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """Echoes until the client's EOF, then says b"bye" and closes."""

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
            await stream.send_all(b"bye")

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo, [listener])
        yield listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def read_response(stream: trio.SocketStream) -> bytes:
    data = await receive_until(stream, b"\r\n\r\n")
    while len(data) < len(RESPONSE):
        chunk = await stream.receive_some(65536)
        assert chunk
        data += chunk
    return data


def get(url: str, *fields: str) -> bytes:
    return ("\r\n".join([f"GET {url} HTTP/1.1", "Host: x", *fields]) + "\r\n\r\n").encode()


async def records(proxy: RunningProxy, count: int) -> None:
    """Until ``count`` records came (the client may read a response before the proxy's task
    that relayed it ends)."""
    with trio.fail_after(10):
        while len(proxy.connections) < count:  # noqa: ASYNC110 - a list
            await trio.sleep(0.005)
    assert len(proxy.connections) == count


def plausible(record: ConnectionRecord, started: float) -> None:
    assert started - 1 <= record.at <= time.time()
    assert 0 <= record.duration < 30
    assert record.count == 1


async def test_each_absolute_form_request_is_a_record_with_its_bytes_on_a_kept_connection() -> None:
    started = time.time()
    async with keep_alive_origin() as origin:
        rule = f"site.test:{origin.port}"
        policy = EgressPolicy.parse([rule])
        async with running_proxy(policy, map_resolver({"site.test": [LOOPBACK]})) as proxy:
            async with await open_connection(proxy.port) as client:
                for path in ("/a", "/bb"):
                    await client.send_all(get(f"http://{rule}{path}"))
                    assert await read_response(client) == RESPONSE
                    # Each request's record comes once its response ended, not at the close.
                    await records(proxy, 1 if path == "/a" else 2)
                await client.send_all(get("http://nope.test/", "Connection: close"))
                refused = await receive_all(client)
                assert refused.startswith(b"HTTP/1.1 403")
            await proxy.wait_until_idle()
    assert origin.connections == 1  # one upstream connection carried both
    first, second, third = proxy.connections
    for record, head in ((first, origin.heads[0]), (second, origin.heads[1])):
        plausible(record, started)
        assert (record.verdict, record.protocol, record.target) == (Verdict.ALLOWED, "http", rule)
        assert (record.rule, record.reason) == (rule, None)
        # Exactly what crossed: the request head as sent on, the whole response.
        assert record.bytes_up == len(head)
        assert record.bytes_down == len(RESPONSE)
    assert first.at <= second.at
    plausible(third, started)
    assert (third.verdict, third.protocol) == (Verdict.REFUSED, "http")
    assert third.target == "nope.test:80"
    assert third.rule is None
    assert third.reason == "not in allow_domains"
    assert (third.bytes_up, third.bytes_down) == (0, 0)
    # The counters of the audit are as before: a decision per request.
    assert proxy.stats.snapshot()["totals"]["allowed"] == 2


async def test_a_connect_tunnel_and_a_socks5_connection_are_one_record_each() -> None:
    started = time.time()
    payload = bytes(range(256)) * 256  # 64 KiB
    async with echo_server() as port:
        rule = f"echo.test:{port}"
        policy = EgressPolicy.parse([rule])
        async with running_proxy(policy, map_resolver({"echo.test": [LOOPBACK]})) as proxy:
            async with await open_connection(proxy.port) as client:
                await client.send_all(f"CONNECT {rule} HTTP/1.1\r\n\r\n".encode() + b"early ")
                await client.send_all(payload)
                await client.send_eof()
                answer = await receive_all(client)
            assert answer.endswith(b"early " + payload + b"bye")
            name = b"echo.test"
            request = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")
            async with await open_connection(proxy.port) as client:
                await client.send_all(NO_AUTH + request + b"ping")
                await client.send_eof()
                answer = await receive_all(client)
            assert answer.endswith(b"pingbye")
            await proxy.wait_until_idle()
    tunnel, socks = proxy.connections
    for record in (tunnel, socks):
        plausible(record, started)
        assert (record.verdict, record.target, record.rule) == (Verdict.ALLOWED, rule, rule)
    assert tunnel.protocol == "connect"
    assert (tunnel.bytes_up, tunnel.bytes_down) == (6 + len(payload), 6 + len(payload) + 3)
    assert socks.protocol == "socks5"
    assert (socks.bytes_up, socks.bytes_down) == (4, 7)


async def test_failures_are_records_at_the_decision_with_the_rule_that_allowed_them() -> None:
    (probe,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    closed_port = probe.socket.getsockname()[1]
    await probe.aclose()  # nothing listens there now
    policy = EgressPolicy.parse([f"gone.test:{closed_port}", "unknown.test"])
    resolver = map_resolver({"gone.test": [LOOPBACK]})
    async with running_proxy(policy, resolver) as proxy:
        for target in (f"gone.test:{closed_port}", "unknown.test:443"):
            async with await open_connection(proxy.port) as client:
                await client.send_all(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
                assert (await receive_all(client)).startswith(b"HTTP/1.1 502")
        await proxy.wait_until_idle()
    gone, unknown = proxy.connections
    assert (gone.verdict, gone.rule) == (Verdict.FAILED, f"gone.test:{closed_port}")
    assert gone.reason is not None
    assert "refused" in gone.reason.lower()
    assert (unknown.verdict, unknown.rule) == (Verdict.FAILED, "unknown.test")
    assert unknown.reason is not None
    assert unknown.target == "unknown.test:443"


async def test_a_placeholder_in_a_tunnels_first_bytes_makes_that_tunnel_one_refused_record() -> (
    None
):
    async def answer_nothing(stream: trio.SocketStream) -> None:
        async with stream:
            await receive_all(stream)

    async def no_context(*args: object) -> ssl.SSLContext:
        raise AssertionError("no interception here")

    secret = InjectedSecret(NAME, VALUE, PLACEHOLDER, ("api.test",))
    injection = Injection((secret,), no_context, no_context)
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    rule = f"plain.test:{port}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer_nothing, [listener])
        resolver = map_resolver({"plain.test": [LOOPBACK]})
        async with running_proxy(
            EgressPolicy.parse([rule]), resolver, injection=injection
        ) as proxy:
            async with await open_connection(proxy.port) as client:
                await client.send_all(f"CONNECT {rule} HTTP/1.1\r\n\r\n".encode())
                assert (await receive_until(client, b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
                await client.send_all(f"GET /?t={PLACEHOLDER} HTTP/1.1\r\n\r\n".encode())
                assert (await receive_all(client)).startswith(b"HTTP/1.1 403")
            await proxy.wait_until_idle()
        nursery.cancel_scope.cancel()
    # The audit's events: allowed, then refused; the connection: one record, refused.
    assert [event.verdict for event in proxy.events] == [Verdict.ALLOWED, Verdict.REFUSED]
    (record,) = proxy.connections
    assert (record.verdict, record.protocol, record.rule) == (Verdict.REFUSED, "connect", rule)
    assert record.reason is not None
    assert NAME in record.reason
    assert VALUE not in repr(record)
    assert record.bytes_up == 0  # refused before a byte of it left


async def test_an_intercepted_tunnel_is_one_record_allowed_or_refused_by_what_it_carried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        good = (
            f"GET /auth HTTP/1.1\r\nHost: {setup.host}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n"
        )
        tls = await tls_through(setup)
        answer = await exchange(tls, good + "Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        tls = await tls_through(setup)
        bad = f"GET /auth?x={OTHER_PLACEHOLDER} HTTP/1.1\r\nHost: {setup.host}\r\n\r\n"
        answer = await exchange(tls, good + "\r\n" + bad)
        assert answer.count(b"HTTP/1.1 200 OK") == 1
        assert b"HTTP/1.1 403" in answer
    proxy: RunningProxy = setup.proxy
    clean, stopped = proxy.connections
    rule = setup.host
    assert (clean.verdict, clean.protocol, clean.rule) == (Verdict.ALLOWED, "connect", rule)
    assert clean.bytes_up > len(good)  # the head as sent on, with the value in it
    assert clean.bytes_down > 0
    assert (stopped.verdict, stopped.rule) == (Verdict.REFUSED, rule)
    assert stopped.reason is not None
    assert "inject_secrets OTHER" in stopped.reason
    assert stopped.bytes_down > 0  # the good request's answer went back first


async def test_a_flood_is_bounded_per_window_and_every_connection_counted_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with keep_alive_origin() as origin:
        rule = f"site.test:{origin.port}"
        policy = EgressPolicy.parse([rule])
        async with running_proxy(
            policy, map_resolver({"site.test": [LOOPBACK]}), records_per_window=5
        ) as proxy:
            async with await open_connection(proxy.port) as client:
                refusals = b"".join(get(f"http://d{i % 3}.test/") for i in range(40))
                await client.send_all(refusals)
                answers = b""
                while answers.count(b"HTTP/1.1 403") < 40:
                    answers += await client.receive_some(65536)
                for _ in range(3):
                    await client.send_all(get(f"http://{rule}/"))
                    assert await read_response(client) == RESPONSE
            await proxy.wait_until_idle()
            await trio.sleep(1.5)  # the window closes: its sums are written
            written_in_window = len(proxy.connections)
            async with await open_connection(proxy.port) as client:
                await client.send_all(get("http://late.test/", "Connection: close"))
                await receive_all(client)
            await proxy.wait_until_idle()
    records = proxy.connections
    # Five one by one, then one sum per (verdict, protocol, target, rule): 3 refused, 1 allowed.
    assert written_in_window == 5 + 4
    assert all(record.count == 1 for record in records[:5])
    sums = records[5:written_in_window]
    assert sum(record.count for record in records[:written_in_window]) == 43
    allowed = [record for record in sums if record.verdict is Verdict.ALLOWED]
    (allowed_sum,) = allowed
    assert allowed_sum.count == 3
    assert allowed_sum.bytes_down == 3 * len(RESPONSE)
    assert allowed_sum.bytes_up == sum(len(head) for head in origin.heads)
    # A new window lists again one by one.
    assert records[written_in_window:][0].target == "late.test:80"
    assert records[-1].count == 1


def test_the_window_sums_past_its_keys_under_other_and_loses_no_count() -> None:
    def record(target: str, size: int) -> ConnectionRecord:
        return ConnectionRecord(
            verdict=Verdict.ALLOWED,
            protocol="connect",
            target=target,
            at=1.0,
            rule="*.test",
            bytes_up=size,
            bytes_down=2 * size,
            duration=0.5,
        )

    async def run() -> list[ConnectionRecord]:
        written: list[ConnectionRecord] = []
        log = ConnectionLog(written.append, window=1.0, max_records=2, max_summaries=2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.serve)
            for index in range(20):
                log.add(record(f"t{index % 5}.test:443", index))
            await trio.sleep(0.5)
            assert len(written) == 2  # the sums wait for the window's end
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
        return written

    written = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(r.target, r.count) for r in written] == [
        ("t0.test:443", 1),
        ("t1.test:443", 1),
        ("t2.test:443", 4),
        ("t3.test:443", 4),
        (OTHER_DESTINATIONS, 10),
    ]
    assert sum(r.count for r in written) == 20
    assert sum(r.bytes_up for r in written) == sum(range(20))
    assert sum(r.bytes_down for r in written) == 2 * sum(range(20))
    assert math.isclose(sum(r.duration for r in written), 10.0)
    assert written[-1].rule is None


def test_a_records_texts_are_cut_to_their_bounds_and_read_back_only_within_them() -> None:
    async def make() -> ConnectionRecord:
        refused = Refused("h" * 5000, RefusalKind.NOT_ALLOWED, "r" * 5000)
        return ConnectionRecord.decided("http", refused, "x" * 5000, Moment.now())

    record = trio.run(make)
    assert len(record.target) == MAX_TARGET_CHARS
    assert record.rule is not None
    assert len(record.rule) == MAX_TARGET_CHARS
    assert record.reason is not None
    assert len(record.reason) == MAX_REASON_CHARS
    read_back = ConnectionRecord.from_report(record.to_report())
    assert read_back == attrs.evolve(record, duration=round(record.duration, 6))
    too_long = {**record.to_report(), "target": "h" * (MAX_TARGET_CHARS + 1)}
    assert ConnectionRecord.from_report(too_long) is None
    # The longest a report line can be: every text at its bound, each character escaped to
    # twelve bytes (a character outside the BMP, as JSON writes it), well within a line.
    widest = attrs.evolve(
        record,
        target="\U0001f600" * MAX_TARGET_CHARS,
        rule="\U0001f600" * MAX_TARGET_CHARS,
        reason="\U0001f600" * MAX_REASON_CHARS,
        bytes_up=2**63 - 1,
        count=2**63 - 1,
    )
    line = json.dumps({"connection": widest.to_report()}, sort_keys=True) + "\n"
    assert len(line.encode()) < REPORT_MAX_LINE_BYTES / 2
