"""Interception for a host a secret is injected for, in-process against a real HTTPS origin on
127.0.0.1 (its own test CA, trusted by the proxy's upstream context only) and real clients
(curl, and trio's TLS for the cases curl cannot make).

The client trusts the interception CA (a test-made one here; the warden supplies the real one):
the placeholder it sends reaches the origin as the value in the Authorization header (Bearer,
token, Basic), the query and the path; the response head carries the placeholder back, never
the value; another host's placeholder, a Host naming another virtual host, a client that does
not speak TLS, an origin the host's trust store does not trust: each refused or failed, named.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
import trio

from tests.egress.egress_harness import (
    make_certificates,
    map_resolver,
    open_connection,
    receive_all,
    receive_until,
    run_tool,
    running_proxy,
    serving_site,
    tool_environment,
)
from tests.egress.intercept_harness import (
    NAME,
    OTHER_PLACEHOLDER,
    OTHER_VALUE,
    PLACEHOLDER,
    VALUE,
    Setup,
    connect_through,
    directory,
    exchange,
    intercepting,
    make_injection,
    scripted_origin,
    tls_through,
)
from trio_sandbox.egress import EgressPolicy, RefusalKind, Verdict

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def assert_no_value(setup: Setup, *outputs: str) -> None:
    proxy = setup.proxy
    for text in (*outputs, proxy.lines(), proxy.log_lines, proxy.changes):
        assert VALUE not in repr(text)
        assert OTHER_VALUE not in repr(text)


async def curl(setup: Setup, *arguments: str) -> str:
    result = await run_tool(
        [
            "curl", "-sS", "-i", "--proxy", setup.proxy.url,
            "--cacert", str(setup.interception_ca.ca), *arguments,
        ],
        tool_environment(setup.home),
    )  # fmt: skip
    return result.output


@needs_curl
@pytest.mark.parametrize(
    ("arguments", "path"),
    [
        (["-H", f"Authorization: Bearer {PLACEHOLDER}"], "/auth"),
        (["-H", f"Authorization: token {PLACEHOLDER}"], "/auth"),
        (["-u", f"x-access-token:{PLACEHOLDER}"], "/auth"),
        ([], f"/auth?token={PLACEHOLDER}"),
        ([], f"/auth/bot{PLACEHOLDER}/getMe"),
        ([], f"/auth?token={PLACEHOLDER.replace('_', '%5F')}"),
    ],
)
async def test_the_placeholder_reaches_the_origin_as_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], path: str
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        output = await curl(setup, *arguments, f"https://{setup.host}{path}")
    assert "HTTP/1.1 200" in output
    assert "authorized" in output
    assert_no_value(setup, output)
    if arguments and arguments[0] == "-H":
        # The origin's echo of the header comes back with the value masked.
        assert f"X-Seen-Authorization: {arguments[1].split(': ', 1)[1]}" in output


@needs_curl
async def test_without_the_placeholder_the_origin_says_401_and_a_socks_client_is_intercepted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        output = await curl(setup, f"https://{setup.host}/auth")
        socks = await run_tool(
            [
                "curl", "-sS", "--socks5-hostname", f"127.0.0.1:{setup.proxy.port}",
                "--cacert", str(setup.interception_ca.ca),
                "-H", f"Authorization: Bearer {PLACEHOLDER}", f"https://{setup.host}/auth",
            ],
            tool_environment(setup.home),
        )  # fmt: skip
    assert "HTTP/1.1 401" in output
    assert socks.stdout == "authorized\n"


@needs_curl
async def test_keep_alive_and_pipelined_requests_on_one_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        url = f"https://{setup.host}/auth"
        header = f"Authorization: Bearer {PLACEHOLDER}"
        result = await run_tool(
            [
                "curl", "-sS", "--proxy", setup.proxy.url,
                "--cacert", str(setup.interception_ca.ca),
                "-H", header, url, "-H", header, url,
                "-H", header, f"https://{setup.host}/hello.txt",
            ],
            tool_environment(setup.home),
        )  # fmt: skip
        # Pipelined by hand, over trio's TLS: two heads in one write.
        async with await tls_through(setup) as tls:
            head = f"GET /auth HTTP/1.1\r\nHost: {setup.host}\r\n{header}\r\n\r\n"
            await tls.send_all((head * 2).encode())
            answers = await receive_until(tls, b"authorized\nHTTP", limit=1 << 16)
            answers += await receive_until(tls, b"authorized\n")
    assert result.stdout == "authorized\nauthorized\nhello through the egress proxy\n"
    assert answers.count(b"HTTP/1.1 200 OK") == 2
    # One CONNECT for curl's three requests, one for the pipelined pair.
    assert [event.verdict for event in setup.proxy.events] == [Verdict.ALLOWED] * 2


async def test_a_chunked_upload_passes_byte_for_byte_with_its_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (
        b"5;ext=1\r\nhello\r\n"
        + f"{len(PLACEHOLDER):x}\r\n{PLACEHOLDER}\r\n".encode()
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        answer = await exchange(
            tls,
            f"POST /echo HTTP/1.1\r\nHost: {setup.host}\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n" + body.decode(),
        )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"hello" + PLACEHOLDER.encode())  # bodies are not replaced
    assert_no_value(setup, answer.decode())


@pytest.mark.parametrize(
    ("head", "kind", "status"),
    [
        (
            "GET /auth HTTP/1.1\r\nHost: attacker.secure.test\r\n"
            f"Authorization: Bearer {PLACEHOLDER}\r\n\r\n",
            RefusalKind.INTERCEPT_MISDIRECTED,
            b"421",
        ),
        (
            f"GET /auth HTTP/1.1\r\nHost: HOST\r\nX-Other: {OTHER_PLACEHOLDER}\r\n\r\n",
            RefusalKind.SECRET_OUT_OF_SCOPE,
            b"403",
        ),
        (
            "GET https://evil.test/auth HTTP/1.1\r\nHost: HOST\r\n"
            f"Authorization: Bearer {PLACEHOLDER}\r\n\r\n",
            RefusalKind.INTERCEPT_MISDIRECTED,
            b"421",
        ),
    ],
)
async def test_a_request_that_must_not_get_the_value_is_answered_inside_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: str, kind: RefusalKind, status: bytes
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        answer = await exchange(tls, head.replace("HOST", setup.host))
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert kind.value.encode() in answer
    refusal = setup.proxy.events[-1].refusal
    assert refusal is not None
    assert refusal.kind is kind
    assert_no_value(setup, answer.decode())


async def test_a_client_that_does_not_speak_tls_gets_a_400_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        stream = await open_connection(setup.proxy.port)
        async with stream:
            await stream.send_all(
                f"CONNECT {setup.host} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n".encode()
            )
            answer = await receive_all(stream)
    assert b"HTTP/1.1 400 Bad Request" in answer
    assert b"speak TLS (https://)" in answer
    assert f"inject_secrets {NAME}".encode() in answer


async def test_a_client_that_does_not_trust_the_interception_ca_fails_with_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        stream = await connect_through(setup, setup.host)
        tls = trio.SSLStream(stream, ssl.create_default_context(), server_hostname="secure.test")
        with pytest.raises(trio.BrokenResourceError):
            await tls.do_handshake()
        await stream.aclose()
        await setup.proxy.wait_until_idle()
    event = setup.proxy.events[-1]
    assert event.verdict is Verdict.FAILED
    assert event.refusal is not None
    assert "the client did not trust the interception CA" in event.refusal.reason


async def test_an_origin_the_host_does_not_trust_is_a_502_inside_tls_naming_the_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = make_certificates(directory(tmp_path / "elsewhere"), ("secure.test",))
    async with intercepting(tmp_path, monkeypatch, origin_ca=elsewhere.ca) as setup:
        tls = await tls_through(setup)
        answer = await exchange(
            tls, f"GET /auth HTTP/1.1\r\nHost: {setup.host}\r\nAuthorization: Bearer x\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert b"not trusted by the host's trust store (SSL_CERT_FILE)" in answer
    assert setup.proxy.events[-1].verdict is Verdict.FAILED


async def test_a_host_without_an_injected_secret_stays_a_plain_tunnel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        # plain.test is the same origin under a name with no secret: its own certificate
        # (not the interception CA's) is what the client sees. (SNI secure.test in this tunnel
        # would be refused: it names an injected host through another tunnel.)
        stream = await connect_through(setup, f"plain.test:{setup.origins.https}")
        context = ssl.create_default_context(cafile=str(setup.origins.certificates.ca))
        tls = trio.SSLStream(stream, context, server_hostname="pypi.test")
        answer = await exchange(
            tls,
            f"GET /auth HTTP/1.1\r\nHost: pypi.test\r\nAuthorization: Bearer {PLACEHOLDER}\r\n"
            "Connection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 401")


@needs_curl
async def test_an_origin_that_echoes_the_value_shows_the_client_only_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        output = await curl(
            setup, "-H", f"Authorization: Bearer {PLACEHOLDER}", f"https://{setup.host}/headers"
        )
    # The origin got the value (the /auth tests prove it) and echoes it in its body: the
    # client reads the placeholder there.
    assert f"Authorization: Bearer {PLACEHOLDER}\n" in output
    assert_no_value(setup, output)


async def test_a_refusal_after_good_pipelined_requests_comes_after_their_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        good = (
            f"GET /auth HTTP/1.1\r\nHost: {setup.host}\r\n"
            f"Authorization: Bearer {PLACEHOLDER}\r\n\r\n"
        )
        bad = f"GET /auth?x={OTHER_PLACEHOLDER} HTTP/1.1\r\nHost: {setup.host}\r\n\r\n"
        answer = await exchange(tls, good + good + bad + good)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"HTTP/1.1 403 Forbidden") > answer.rindex(b"authorized\n")
    assert b"inject_secrets OTHER" in answer
    assert answer.endswith(b"nothing was sent)\n")  # the fourth request was never read
    assert_no_value(setup, answer.decode(errors="replace"))


async def test_an_upgrade_request_is_refused_before_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        answer = await exchange(
            tls,
            f"GET /ws HTTP/1.1\r\nHost: {setup.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented")


async def test_an_origin_closing_an_idle_connection_closes_the_clients_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """An origin that answers once, then closes the kept-alive connection: the client sees
    its connection close after the whole response (as a direct client would), no 502."""

    async def answer_once(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await receive_until(tls, b"\r\n\r\n")
        await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce")
        await trio.sleep(0.05)  # idle, then closed by the origin

    async with scripted_origin(tmp_path, answer_once) as setup:
        tls = await tls_through(setup)
        data = b""
        async with tls:
            await tls.send_all(f"GET / HTTP/1.1\r\nHost: {setup.host}\r\n\r\n".encode())
            with trio.fail_after(5):
                try:
                    while chunk := await tls.receive_some(65536):
                        data += chunk
                except trio.BrokenResourceError:
                    pass
    assert data == b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce"


async def test_an_origin_that_requires_a_client_certificate_is_a_502_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORIGIN_REQUIRE_CLIENT_CERT", "1")
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        answer = await exchange(tls, f"GET /auth HTTP/1.1\r\nHost: {setup.host}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert b"require client certificates cannot be used" in answer
    failed = [event for event in setup.proxy.events if event.verdict is Verdict.FAILED]
    assert len(failed) == 1
    assert failed[0].refusal is not None
    assert failed[0].refusal.kind is RefusalKind.INTERCEPT_ORIGIN_TLS


async def test_an_http2_preface_is_refused_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        tls = await tls_through(setup)
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        answer = await exchange(tls, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported")
    assert b"HTTP/2-only clients (gRPC) cannot use inject_secrets" in answer
    refusal = setup.proxy.events[-1].refusal
    assert refusal is not None
    assert refusal.kind is RefusalKind.INTERCEPT_HTTP2


@needs_curl
async def test_an_ip_literal_entry_is_intercepted_with_no_sni_and_its_ip_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """curl sends no SNI to an address; the proxy presents a leaf with that IP and checks the
    origin's IP SAN, as a client of the address would."""
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", VALUE)
    interception = make_certificates(directory(tmp_path / "intercept"), ("127.0.0.1",))
    async with serving_site(tmp_path) as origins:
        port = origins.https
        injection = make_injection(interception, origins.certificates.ca, port, host="127.0.0.1")
        policy = EgressPolicy.parse([f"127.0.0.1:{port}"])
        async with running_proxy(policy, map_resolver({}), injection=injection) as proxy:
            setup = Setup(proxy, origins, interception, tmp_path / "home")
            output = await curl(
                setup,
                "-H",
                f"Authorization: Bearer {PLACEHOLDER}",
                f"https://127.0.0.1:{port}/auth",
            )
            await proxy.wait_until_idle()
    assert "HTTP/1.1 200" in output
    assert "authorized" in output
    assert_no_value(setup, output)
