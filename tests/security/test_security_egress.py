"""The code in the sandbox against the egress proxy (``network = allow``).

- A refused-request loop is held to the proxy's rate and its log to a bounded number of lines:
  what the sandbox makes the warden and the host do is bounded however fast it asks.
- The audit keeps allowed destinations apart from refused ones: decoys cannot push the real
  destination into ``(other)``; allow-list entries are counted too.
- A denied name covers its subdomains.
- A name the policy does not allow is never resolved; refusals and SOCKS replies never carry an
  address a name resolved to.
- Odd forms of the host's loopback and of the proxy's own port (IPv6, IPv4-mapped, decimal,
  octal, trailing dots, fullwidth digits, userinfo, SOCKS address types), slow and idle clients,
  huge heads and SOCKS oddities: refused, nothing dialed, and the next request works.

Proxy-level tests run the real proxy on 127.0.0.1 (virtual time where it sleeps); the sandbox
tests run real bubblewrap sandboxes through the warden, as root and as the ordinary user.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.egress.egress_harness import open_connection, receive_all, running_proxy
from tests.security.reports_egress_probes import DENIED, FLOOD, ODD_FORMS
from tests.security.reports_probes import serving_hello
from tests.security.reports_warden import egress_audit, run_warden_with_report_fd
from tests.support.sandbox_users import SandboxUser
from tests.warden.warden_harness import wrap
from trio_sandbox.egress import (
    MAX_DESTINATIONS,
    OTHER_DESTINATIONS,
    Allowed,
    EgressPolicy,
    IPAddress,
)
from trio_sandbox.egress._decision_log import DecisionLog

ORIGIN_HOST = "127.0.0.2"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def connect_head(target: str) -> bytes:
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()


@asynccontextmanager
async def trap(host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[str]]]:
    """A service on the host's loopback that records every connection it gets."""
    connections: list[str] = []

    async def record(stream: trio.SocketStream) -> None:
        connections.append("connected")
        await stream.aclose()

    (listener,) = await trio.open_tcp_listeners(0, host=host)
    port: int = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, record, [listener])
        yield port, connections
        nursery.cancel_scope.cancel()


# --- the cost of refusals (finding: --cpus bypassed through the proxy) ------------------------


async def test_a_refused_request_loop_is_held_to_the_rate_and_the_log_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rate, burst, seconds = 20, 10, 5.0
    async with running_proxy(
        EgressPolicy.parse(["a.test"]), decisions_per_second=rate, decision_burst=burst
    ) as proxy:
        until = trio.current_time() + seconds
        answered = 0

        async def new_connections(prefix: str) -> None:
            nonlocal answered
            index = 0
            while trio.current_time() < until:
                async with await open_connection(proxy.port) as client:
                    await client.send_all(connect_head(f"{prefix}{index}.test:443"))
                    answered += (await receive_all(client)).startswith(b"HTTP/1.1 403")
                index += 1

        async def pipelined() -> None:
            nonlocal answered
            async with await open_connection(proxy.port) as client:
                heads = b"".join(
                    f"GET http://p{i}.test/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                    for i in range(1000)
                )
                await client.send_all(heads)
                data = b""
                with trio.move_on_at(until):
                    while chunk := await client.receive_some(65536):
                        data += chunk
                answered += data.count(b"HTTP/1.1 403")

        async with trio.open_nursery() as nursery:
            for prefix in "abc":
                nursery.start_soon(new_connections, prefix)
            nursery.start_soon(pipelined)
        await proxy.wait_until_idle()
        decisions = len(proxy.events)
    # Held to the rate: a burst, then `rate` a second (plus the requests already admitted).
    assert answered <= decisions <= burst + rate * seconds + 5
    # Slowed, not cut off: the proxy kept answering at its rate.
    assert decisions >= rate * seconds - 5
    # The log: at most 20 first lines and 20 summaries, and one line for the rest, per second.
    assert len(proxy.log_lines) <= (2 * 20 + 1) * (seconds + 2)
    assert any("not listed one by one" in line for line in proxy.log_lines)


def test_the_decision_log_writes_each_line_once_and_sums_the_rest() -> None:
    async def run() -> list[str]:
        written: list[str] = []
        log = DecisionLog(written.append, window=1.0, max_lines=3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.serve)
            for index in range(1000):
                log.add(f"refused d{index % 5}.test:443 (not in allow_domains)")
            await trio.sleep(1.5)
            log.add("refused again.test:443 (not in allow_domains)")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        return written

    written = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert written == [
        "refused d0.test:443 (not in allow_domains)",
        "refused d1.test:443 (not in allow_domains)",
        "refused d2.test:443 (not in allow_domains)",
        "refused d0.test:443 (not in allow_domains) and 199 more time(s) in the last 1 s",
        "refused d1.test:443 (not in allow_domains) and 199 more time(s) in the last 1 s",
        "refused d2.test:443 (not in allow_domains) and 199 more time(s) in the last 1 s",
        "and 400 more decision(s) in the last 1 s (not listed one by one)",
        "refused again.test:443 (not in allow_domains)",
    ]


@needs_bwrap
async def test_a_flood_of_refusals_from_a_sandbox_is_slowed_bounded_and_cannot_hide_the_real_one(
    sandbox_user: SandboxUser,
) -> None:
    decoys = MAX_DESTINATIONS + 100
    async with serving_hello(ORIGIN_HOST) as port:
        allowed = f"{ORIGIN_HOST}:{port}"
        result, lines, _inode = await run_warden_with_report_fd(
            sandbox_user,
            "--network",
            "allow",
            f"--allow-domain={allowed}",
            command=[sandbox_user.python, "-c", FLOOD, str(decoys), ORIGIN_HOST, str(port)],
        )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-4000:]
    flood = json.loads(result.stdout.decode().splitlines()[-1])
    # Every decoy was answered (a refusal), and the allowed request then worked.
    assert flood["answered"] == decoys
    assert flood["allowed"] == "HTTP/1.1 200 OK"
    elapsed = flood["elapsed"]
    audit = egress_audit(lines)
    refused = audit["refused"]
    assert sum(counters["refused"] for counters in refused.values()) == decoys
    # Held to the proxy's rate (50 a second after a burst of 100).
    assert decoys <= 100 + 50 * (elapsed + 1)
    # The real destination is counted by name, and under its allow-list entry.
    assert audit["destinations"][allowed]["allowed"] == 1
    assert audit["rules"][allowed]["allowed"] == 1
    assert len(refused) == MAX_DESTINATIONS + 1
    assert refused[OTHER_DESTINATIONS]["refused"] == decoys - MAX_DESTINATIONS
    # What the host reads is bounded: log lines per second, report lines per publication.
    egress_log = [line for line in stderr.splitlines() if "trio-sandbox-warden: egress: " in line]
    assert len(egress_log) <= (2 * 20 + 1) * (elapsed + 3)
    egress_reports = [line for line in lines if line.startswith('{"egress"')]
    assert len(egress_reports) <= 10 * (elapsed + 3) + decoys / 32 + 5


async def test_decoys_cannot_push_an_allowed_destination_out_of_the_audit() -> None:
    async with trap() as (port, connections):

        async def resolve(name: str) -> Sequence[IPAddress]:
            await trio.lowlevel.checkpoint()
            return [ipaddress.IPv4Address("127.0.0.1")]

        # The exact name with its port: it may lead to the host's loopback (the trap).
        async with running_proxy(EgressPolicy.parse([f"real.test:{port}"]), resolve) as proxy:
            for index in range(MAX_DESTINATIONS + 50):
                async with await open_connection(proxy.port) as client:
                    await client.send_all(connect_head(f"decoy{index}.test:443"))
                    await receive_all(client)
            async with await open_connection(proxy.port) as client:
                await client.send_all(connect_head(f"real.test:{port}"))
                assert (await client.receive_some(100)).startswith(b"HTTP/1.1 200")
            await proxy.wait_until_idle()
            snapshot = proxy.stats.snapshot()
        # Published as they came, the last ones when the proxy stopped.
        mirror: dict[str, dict[str, object]] = {"rules": {}, "destinations": {}, "refused": {}}
        for changes in proxy.changes:
            for table, entries in mirror.items():
                entries.update(changes.get(table, {}))
    assert connections == ["connected"]
    assert snapshot["destinations"][f"real.test:{port}"]["allowed"] == 1
    assert snapshot["rules"][f"real.test:{port}"]["allowed"] == 1
    assert snapshot["refused"][OTHER_DESTINATIONS]["refused"] == 50
    # What the host mirrors from the published changes is the proxy's own audit.
    assert mirror == {table: snapshot[table] for table in mirror}


# --- deny covers subdomains -------------------------------------------------------------------

LABELS = st.sampled_from(["a", "b", "bad", "x", "www", "api", "xn--bcher-kva"])
NAMES = st.lists(LABELS, min_size=1, max_size=4).map(lambda labels: ".".join(labels))


@given(denied=NAMES, prefix=st.lists(LABELS, min_size=0, max_size=3), port=st.integers(1, 65535))
def test_a_denied_name_covers_itself_and_every_subdomain(
    denied: str, prefix: list[str], port: int
) -> None:
    base = f"{denied}.example.com"
    host = ".".join([*prefix, base])
    policy = EgressPolicy.parse(allow=[f"*.example.com:{port}", f"{base}:{port}"], deny=[base])
    decision = policy.decide(host.upper() + ".", port)
    assert not isinstance(decision, Allowed)
    assert decision.reason == f"denied by deny_domains entry {base!r}"
    # A name that only ends with the same letters is not under it.
    sibling = f"x{denied}.example.com"
    assert isinstance(policy.decide(sibling, port), Allowed)


@needs_bwrap
async def test_a_denied_domain_covers_its_subdomains_in_a_sandbox(
    sandbox_user: SandboxUser,
) -> None:
    names = ["bad.example.test:443", "x.bad.example.test:443", "a.b.bad.example.test:8080"]
    result = await wrap(
        "--network",
        "allow",
        "--allow-domain=*.example.test",
        "--allow-domain=*.example.test:8080",
        "--deny-domain=bad.example.test",
        command=[sandbox_user.python, "-c", DENIED, *names, "notbad.example.test:443"],
        user=sandbox_user,
    )
    assert result.returncode == 0, result.stderr.decode()
    answers = json.loads(result.stdout.decode().splitlines()[-1])
    for name in names:
        assert answers[name] == [
            "HTTP/1.1 403 Forbidden",
            f"refused {name} (denied by deny_domains entry 'bad.example.test')",
        ]
    # A sibling that only shares the letters is allowed (and then not found: .test has no DNS).
    assert answers["notbad.example.test:443"][0] == "HTTP/1.1 502 Bad Gateway"


# --- no name resolved without the policy's leave; no address told ----------------------------

HOST_LABELS = st.sampled_from(["a", "b", "c", "ok", "corp", "internal"])
HOSTS = st.lists(HOST_LABELS, min_size=1, max_size=3).map(lambda labels: ".".join(labels))
RULES = st.one_of(
    HOSTS.map(lambda host: f"{host}.test"),
    HOSTS.map(lambda host: f"*.{host}.test"),
    st.tuples(HOSTS, st.sampled_from([80, 443, 8080])).map(lambda hp: f"{hp[0]}.test:{hp[1]}"),
)
# Every special class and a public address: a refusal must never say which one it was.
ANSWERS = st.sampled_from(
    ["127.0.0.9", "10.1.2.3", "169.254.169.254", "192.168.7.7", "::ffff:10.9.9.9", "203.0.113.77"]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    allow=st.lists(RULES, max_size=4),
    deny=st.lists(RULES, max_size=2),
    requests=st.lists(
        st.tuples(HOSTS, st.sampled_from(["", ".", "UPPER"]), st.sampled_from([80, 443, 8080])),
        min_size=1,
        max_size=6,
    ),
    answer=ANSWERS,
)
def test_no_unlisted_name_is_ever_resolved_and_no_answer_tells_an_address(
    allow: list[str],
    deny: list[str],
    requests: list[tuple[str, str, int]],
    answer: str,
) -> None:
    policy = EgressPolicy.parse(allow, deny)
    address = ipaddress.ip_address(answer)
    asked: list[str] = []

    async def counting_resolver(name: str) -> Sequence[IPAddress]:
        await trio.lowlevel.checkpoint()
        asked.append(name)
        return [address]

    async def run() -> list[bytes]:
        answers = []
        async with running_proxy(policy, counting_resolver, connect_timeout=2) as proxy:
            for host, form, port in requests:
                name = f"{host}.test"
                shown = name.upper() if form == "UPPER" else name + form
                for message in (
                    connect_head(f"{shown}:{port}"),
                    f"GET http://{shown}:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                    b"\x05\x01\x00"
                    + bytes((5, 1, 0, 3, len(shown)))
                    + shown.encode()
                    + port.to_bytes(2, "big"),
                ):
                    async with await open_connection(proxy.port) as client:
                        await client.send_all(message)
                        await client.send_eof()
                        answers.append(await receive_all(client))
            async with await open_connection(proxy.port) as client:
                ask = b"GET /.well-known/trio-sandbox/egress-refusals?since=0 HTTP/1.1\r\n"
                await client.send_all(ask + b"Host: p\r\nConnection: close\r\n\r\n")
                answers.append(await receive_all(client))
        return answers

    answers = trio.run(run)
    allowed_names = {
        f"{host}.test"
        for host, _form, port in requests
        if isinstance(policy.decide(f"{host}.test", port), Allowed)
    }
    assert set(asked) <= allowed_names
    for reply in answers:
        assert answer.encode() not in reply, reply
        assert str(address.exploded).encode() not in reply, reply
        if reply.startswith(b"\x05\x00"):  # SOCKS: the method choice, then the reply
            assert reply[4:] == bytes((0, 1)) + bytes(6), reply  # bound to 0.0.0.0:0


# --- odd forms, slow and idle clients, huge heads, SOCKS oddities -----------------------------


@needs_bwrap
async def test_odd_forms_of_the_hosts_loopback_are_refused_in_a_sandbox(
    sandbox_user: SandboxUser,
) -> None:
    async with serving_hello(ORIGIN_HOST) as port, trap() as (trap_port, connections):
        result = await wrap(
            "--network",
            "allow",
            f"--allow-domain={ORIGIN_HOST}:{port}",
            command=[sandbox_user.python, "-c", ODD_FORMS, ORIGIN_HOST, str(port), str(trap_port)],
            user=sandbox_user,
        )
    assert result.returncode == 0, result.stderr.decode()[-4000:]
    found = json.loads(result.stdout.decode().splitlines()[-1])
    assert connections == []  # nothing reached the host's loopback service
    for form, answer in found["results"].items():
        refused = answer.split()[1] in ("400", "403") if answer.startswith("HTTP/1.1") else False
        socks_refused = answer in ("socks 1", "socks 2", "socks 4", "socks 8", "socks closed")
        assert refused or socks_refused, (form, answer)
    assert found["allowed"] == "HTTP/1.1 200 OK"


async def test_idle_and_slow_clients_hold_no_more_than_their_slots_and_then_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trap() as (port, connections):
        policy = EgressPolicy.parse([f"127.0.0.1:{port}"])
        async with running_proxy(policy, max_connections=8, handshake_timeout=10) as proxy:
            started = trio.current_time()
            idle = [await open_connection(proxy.port) for _ in range(20)]
            drip = idle[0]

            async def slowloris() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    for byte in connect_head(f"127.0.0.1:{port}"):  # a byte a second
                        await drip.send_all(bytes([byte]))
                        await trio.sleep(1)
                        assert proxy.stats.connections_open <= 8

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slowloris)
                # The head must come whole within the handshake time, however it drips.
                assert (await drip.receive_some(100)).startswith(b"HTTP/1.1 408")
                assert trio.current_time() - started == pytest.approx(10)
            # The others, idle, are dropped at their handshake time, having said nothing.
            answers = [await receive_all(stream) for stream in idle[1:]]
            assert set(answers) == {b""}
            for stream in idle:
                await stream.aclose()
            async with await open_connection(proxy.port) as client:
                await client.send_all(connect_head(f"127.0.0.1:{port}"))
                assert (await client.receive_some(100)).startswith(b"HTTP/1.1 200")
            await proxy.wait_until_idle()
    assert connections == ["connected"]


async def test_huge_heads_are_refused_and_the_next_request_is_served() -> None:
    async with trap() as (port, connections):
        policy = EgressPolicy.parse([f"127.0.0.1:{port}"])
        async with running_proxy(policy) as proxy:
            async with await open_connection(proxy.port) as client:
                huge = b"X-Filler: " + b"a" * (1 << 20) + b"\r\n"
                with trio.move_on_after(5):  # the proxy stops reading at its bound
                    await client.send_all(connect_head(f"127.0.0.1:{port}")[:-2] + huge + b"\r\n")
                answer = await client.receive_some(200)
                assert answer.startswith(b"HTTP/1.1 431")
            async with await open_connection(proxy.port) as client:
                await client.send_all(connect_head(f"127.0.0.1:{port}"))
                assert (await client.receive_some(100)).startswith(b"HTTP/1.1 200")
    assert connections == ["connected"]


@pytest.mark.parametrize(
    ("messages", "reply"),
    [
        ([b"\x05\x00"], b"\x05\xff"),  # no method offered
        ([b"\x05\x01\x02"], b"\x05\xff"),  # only authentication offered
        ([b"\x05\x01\x00", b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"], b"\x05\x00\x05\x07"),
        ([b"\x05\x01\x00", b"\x05\x03\x00\x01\x7f\x00\x00\x01\x00\x50"], b"\x05\x00\x05\x07"),
        ([b"\x05\x01\x00", b"\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50"], b"\x05\x00\x05\x01"),
        ([b"\x05\x01\x00", b"\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50"], b"\x05\x00\x05\x08"),
        # Not a destination (an empty name, a NUL, port 0): "host unreachable".
        ([b"\x05\x01\x00", b"\x05\x01\x00\x03\x00\x00\x50"], b"\x05\x00\x05\x04"),
        ([b"\x05\x01\x00", b"\x05\x01\x00\x03\x03a\x00b\x00\x50"], b"\x05\x00\x05\x04"),
        ([b"\x05\x01\x00", b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50"], b"\x05\x00\x05\x04"),
        ([b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00"], b"\x05\x00\x05\x04"),
        ([b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"], b"\x00\x5b"),  # SOCKS4
    ],
    ids=[
        "no-method",
        "auth-only",
        "bind",
        "udp-associate",
        "reserved-byte",
        "address-type-9",
        "empty-name",
        "nul-in-name",
        "name-not-utf8",
        "port-0",
        "socks4",
    ],
)
async def test_socks_oddities_are_refused_and_nothing_is_dialed(
    messages: list[bytes], reply: bytes
) -> None:
    async with trap() as (port, connections):
        policy = EgressPolicy.parse([f"127.0.0.1:{port}"])
        async with running_proxy(policy) as proxy:
            async with await open_connection(proxy.port) as client:
                for message in messages:
                    await client.send_all(message)
                await client.send_eof()
                answer = await receive_all(client)
            assert answer.startswith(reply), answer
            async with await open_connection(proxy.port) as client:
                await client.send_all(connect_head(f"127.0.0.1:{port}"))
                assert (await client.receive_some(100)).startswith(b"HTTP/1.1 200")
    assert connections == ["connected"]
