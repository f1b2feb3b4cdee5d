"""The HTTP head, target and chunk parsers and the SOCKS5 parsers: exact cases, and garbage in
-> a typed error (or "need more bytes"), never a crash."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.egress.egress_harness import result_or_error
from trio_sandbox.egress._errors import HttpError, SocksError
from trio_sandbox.egress._http_head import (
    Body,
    Framing,
    RequestHead,
    ResponseHead,
    end_to_end,
    parse_chunk_size,
    parse_request_head,
    parse_response_head,
    request_body,
    response_body,
    write_head,
)
from trio_sandbox.egress._http_proxy import (
    AbsoluteTarget,
    parse_absolute_target,
    parse_connect_target,
)
from trio_sandbox.egress._socks import (
    REPLY_ADDRESS_TYPE_NOT_SUPPORTED,
    REPLY_COMMAND_NOT_SUPPORTED,
    REPLY_GENERAL_FAILURE,
    SocksRequest,
    parse_greeting,
    parse_request,
)


def test_a_request_head_is_parsed_into_its_parts() -> None:
    head = parse_request_head(
        b"GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nX-A:  spaced value \t\r\n\r\n"
    )
    assert head == RequestHead(
        "GET", "http://a.test/x?y", "HTTP/1.1", (("Host", "a.test"), ("X-A", "spaced value"))
    )
    assert not head.wants_close
    assert parse_request_head(b"GET / HTTP/1.0\r\n\r\n").wants_close
    assert parse_request_head(
        b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n"
    ).wants_close


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"GET /\r\n\r\n", 400, "malformed request line 'GET /'"),
        (b"GET  / HTTP/1.1\r\n\r\n", 400, "malformed request line 'GET  / HTTP/1.1'"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "malformed method 'G(T'"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400, "malformed request target '/\\xff'"),
        (b"GET / HTTP/1.x\r\n\r\n", 400, "malformed HTTP version 'HTTP/1.x'"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP version HTTP/2.0 is not supported; use HTTP/1.1"),
        (
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            400,
            "bare CR or LF in the head (lines end with CRLF)",
        ),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed header field 'Host : a'"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "malformed header field 'NoColon'"),
        (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, "obsolete line folding in a header field"),
        (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", 400, "control character in header field 'A'"),
        (b"GET / HTTP/1.1\r\n", 400, "the head does not end with an empty line"),
    ],
)
def test_malformed_request_heads_are_refused(head: bytes, status: int, reason: str) -> None:
    with pytest.raises(HttpError) as caught:
        parse_request_head(head)
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_response_heads() -> None:
    assert parse_response_head(b"HTTP/1.1 204\r\n\r\n") == ResponseHead("HTTP/1.1", 204, "", ())
    head = parse_response_head(b"HTTP/1.0 200 OK fine\r\nA: b\r\n\r\n")
    assert head == ResponseHead("HTTP/1.0", 200, "OK fine", (("A", "b"),))
    assert head.closes
    with pytest.raises(HttpError, match=r"^502: the upstream sent a malformed status line"):
        parse_response_head(b"HTTP/2 200 OK\r\n\r\n")
    with pytest.raises(HttpError, match=r"^502: "):
        parse_response_head(b"HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n")


def head_with(*fields: tuple[str, str], method: str = "POST") -> RequestHead:
    return RequestHead(method, "http://a.test/", "HTTP/1.1", fields)


def test_request_body_framing() -> None:
    assert request_body(head_with()) == Body(Framing.NONE)
    assert request_body(head_with(("Content-Length", "0"))) == Body(Framing.NONE)
    assert request_body(head_with(("Content-Length", "12"))) == Body(Framing.LENGTH, 12)
    assert request_body(head_with(("Content-Length", "5, 5"))) == Body(Framing.LENGTH, 5)
    assert request_body(head_with(("Transfer-Encoding", "Chunked"))) == Body(Framing.CHUNKED)
    refusals = {
        (("Content-Length", "5"), ("Content-Length", "6")): (400, "bad Content-Length '5, 6'"),
        (("Content-Length", "-1"),): (400, "bad Content-Length '-1'"),
        (("Content-Length", "1e3"),): (400, "bad Content-Length '1e3'"),
        (("Transfer-Encoding", "chunked"), ("Content-Length", "5")): (
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (("Transfer-Encoding", "gzip, chunked"),): (
            501,
            "Transfer-Encoding 'gzip, chunked' is not supported",
        ),
        (("Transfer-Encoding", "chunked, chunked"),): (
            501,
            "Transfer-Encoding 'chunked, chunked' is not supported",
        ),
    }
    for fields, (status, reason) in refusals.items():
        with pytest.raises(HttpError) as caught:
            request_body(head_with(*fields))
        assert (caught.value.status, caught.value.reason) == (status, reason)


def response(status: int, *fields: tuple[str, str]) -> ResponseHead:
    return ResponseHead("HTTP/1.1", status, "", fields)


def test_response_body_framing() -> None:
    length = ("Content-Length", "10")
    assert response_body(response(200, length), "GET") == Body(Framing.LENGTH, 10)
    assert response_body(response(200, length), "HEAD") == Body(Framing.NONE)
    assert response_body(response(304, length), "GET") == Body(Framing.NONE)
    assert response_body(response(204), "GET") == Body(Framing.NONE)
    assert response_body(response(200), "GET") == Body(Framing.UNTIL_CLOSE)
    chunked = ("Transfer-Encoding", "gzip, chunked")
    assert response_body(response(200, chunked), "GET") == Body(Framing.CHUNKED)
    assert response_body(response(200, ("Transfer-Encoding", "gzip")), "GET") == Body(
        Framing.UNTIL_CLOSE
    )
    with pytest.raises(HttpError, match=r"^502: bad Content-Length"):
        response_body(response(200, ("Content-Length", "x")), "GET")


def test_hop_by_hop_and_proxy_fields_are_not_forwarded() -> None:
    fields = (
        ("Host", "ignored"),
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Anything", "x"),
        ("TE", "trailers"),
        ("Upgrade", "websocket"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "3"),
        ("Accept", "*/*"),
    )
    assert end_to_end(fields) == (
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "3"),
        ("Accept", "*/*"),
    )


def test_written_heads_parse_back() -> None:
    written = write_head("GET /x HTTP/1.1", [("Host", "a.test:80"), ("A", "b c")])
    assert written == b"GET /x HTTP/1.1\r\nHost: a.test:80\r\nA: b c\r\n\r\n"
    assert parse_request_head(written).fields == (("Host", "a.test:80"), ("A", "b c"))


def test_chunk_size_lines() -> None:
    assert parse_chunk_size(b"1a\r\n") == 26
    assert parse_chunk_size(b"FF;name=value\r\n") == 255
    assert parse_chunk_size(b"0 \t;x\r\n") == 0
    for bad in (b"\r\n", b"x\r\n", b"-1\r\n", b"1a", b"1 a\r\n", b"11111111111111111\r\n"):
        with pytest.raises(HttpError):
            parse_chunk_size(bad)


def test_absolute_and_connect_targets() -> None:
    assert parse_absolute_target("http://files.test:8080/a/b?c=d#frag") == AbsoluteTarget(
        "files.test", 8080, "files.test:8080", "/a/b?c=d"
    )
    assert parse_absolute_target("HTTP://a.test") == AbsoluteTarget("a.test", 80, "a.test", "/")
    assert parse_absolute_target("http://a.test?q") == AbsoluteTarget("a.test", 80, "a.test", "/?q")
    assert parse_absolute_target("http://[::1]:81/") == AbsoluteTarget("[::1]", 81, "[::1]:81", "/")
    assert parse_absolute_target("http://a.test:/") == AbsoluteTarget("a.test", 80, "a.test:", "/")
    assert parse_connect_target("pypi.org:443") == ("pypi.org", 443)
    assert parse_connect_target("[2001:db8::1]:443") == ("[2001:db8::1]", 443)
    refusals = {
        "/index.html": "this is a proxy: send the whole URL (GET http://host/path) or CONNECT",
        "https://a.test/": "https:// goes through a CONNECT tunnel (set HTTPS_PROXY)",
        "ftp://a.test/": "only http:// URLs are proxied, not 'ftp'",
        "http://user:pw@a.test/": "credentials in the URL (user@host) are not forwarded",
        "http://a.test:99999/": "'a.test:99999': bad port '99999' (a number from 1 to 65535)",
        "*": "malformed request target '*'",
    }
    for target, reason in refusals.items():
        with pytest.raises(HttpError) as caught:
            parse_absolute_target(target)
        assert caught.value.reason == reason
    for target, reason in {
        "pypi.org": "'pypi.org': CONNECT needs host:port",
        "::1:443": "'::1:443': an IPv6 address is written in brackets: [ADDRESS]:PORT",
    }.items():
        with pytest.raises(HttpError) as caught:
            parse_connect_target(target)
        assert caught.value.reason == reason


def test_socks_greeting_and_requests() -> None:
    assert parse_greeting(b"\x05") is None
    assert parse_greeting(b"\x05\x02\x00") is None
    assert parse_greeting(b"\x05\x02\x00\x02extra") == (frozenset({0, 2}), 4)
    assert parse_greeting(b"\x05\x00") == (frozenset(), 2)
    domain = b"\x05\x01\x00\x03\x08pypi.org\x01\xbb"
    assert parse_request(domain) == (SocksRequest(1, "pypi.org", 443), len(domain))
    ipv4 = b"\x05\x01\x00\x01\x7f\x00\x00\x02\x1f\x90"
    assert parse_request(ipv4) == (SocksRequest(1, "127.0.0.2", 8080), 10)
    ipv6 = b"\x05\x01\x00\x04" + ipaddress.IPv6Address("::1").packed + b"\x20\xfb"
    assert parse_request(ipv6) == (SocksRequest(1, "::1", 8443), 22)
    assert parse_request(domain[:-1]) is None
    assert parse_request(b"\x05\x01\x00\x03\x00\x00\x50") == (SocksRequest(1, "", 80), 7)


BAD_SOCKS_REQUESTS = [
    (b"\x05\x02\x00\x01", REPLY_COMMAND_NOT_SUPPORTED, "BIND is not supported, only CONNECT"),
    (
        b"\x05\x03\x00\x01",
        REPLY_COMMAND_NOT_SUPPORTED,
        "UDP ASSOCIATE is not supported, only CONNECT",
    ),
    (b"\x05\x09\x00\x01", REPLY_COMMAND_NOT_SUPPORTED, "command 9 is not supported, only CONNECT"),
    (b"\x05\x01\x00\x09", REPLY_ADDRESS_TYPE_NOT_SUPPORTED, "address type 9 is not supported"),
    (
        b"\x04\x01\x00\x01",
        REPLY_GENERAL_FAILURE,
        "malformed SOCKS5 request header b'\\x04\\x01\\x00\\x01'",
    ),
    (
        b"\x05\x01\x01\x01",
        REPLY_GENERAL_FAILURE,
        "malformed SOCKS5 request header b'\\x05\\x01\\x01\\x01'",
    ),
]


@pytest.mark.parametrize(("header", "reply", "reason"), BAD_SOCKS_REQUESTS)
def test_bad_socks_requests_carry_their_reply_code(header: bytes, reply: int, reason: str) -> None:
    with pytest.raises(SocksError) as caught:
        parse_request(header + bytes(6))
    assert (caught.value.reply, caught.value.reason) == (reply, reason)


def test_a_socks_domain_name_must_be_utf8() -> None:
    with pytest.raises(SocksError) as caught:
        parse_request(b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50")
    assert (caught.value.reply, caught.value.reason) == (
        0x04,
        "the domain name b'\\xff\\xfe' is not UTF-8",
    )


def test_a_greeting_of_another_version_gets_no_reply() -> None:
    with pytest.raises(SocksError) as caught:
        parse_greeting(b"\x04\x01")
    assert caught.value.reply is None


# --- garbage in ---------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_head_or_an_http_error(data: bytes) -> None:
    for head in (data, data + b"\r\n\r\n"):
        parsed = result_or_error(HttpError, parse_request_head, head)
        if isinstance(parsed, HttpError):
            assert parsed.status in (400, 505)
            continue
        request_line = f"{parsed.method} {parsed.target} {parsed.version}"
        assert parse_request_head(write_head(request_line, parsed.fields)) == parsed


TOKEN = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True)
VALUE = st.from_regex(r"[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?", fullmatch=True)


@given(
    TOKEN,
    st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True),
    st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
    st.lists(st.tuples(TOKEN, VALUE | st.just("")), max_size=8),
)
def test_well_formed_request_heads_round_trip(
    method: str, target: str, version: str, fields: list[tuple[str, str]]
) -> None:
    head = parse_request_head(write_head(f"{method} {target} {version}", fields))
    assert head == RequestHead(method, target, version, tuple(fields))


@given(st.binary(max_size=300))
def test_any_bytes_are_a_response_head_or_a_502(data: bytes) -> None:
    parsed = result_or_error(HttpError, parse_response_head, data + b"\r\n\r\n")
    assert isinstance(parsed, ResponseHead) or parsed.status == 502


@given(st.binary(max_size=40))
def test_any_chunk_line_is_a_size_or_an_http_error(data: bytes) -> None:
    size = result_or_error(HttpError, parse_chunk_size, data + b"\r\n")
    assert (0 <= size < 16**16) if isinstance(size, int) else size.status == 400


@given(st.text(max_size=120))
def test_any_target_is_parsed_or_refused_with_400(target: str) -> None:
    absolute = result_or_error(HttpError, parse_absolute_target, target)
    assert isinstance(absolute, AbsoluteTarget) or absolute.status == 400
    connect = result_or_error(HttpError, parse_connect_target, target)
    assert isinstance(connect, tuple) or connect.status == 400


@given(st.binary(max_size=300))
def test_any_bytes_are_socks_messages_or_socks_errors(data: bytes) -> None:
    for parse in (parse_greeting, parse_request):
        parsed = result_or_error(SocksError, parse, data)
        if isinstance(parsed, SocksError):
            assert parsed.reply is None or 0 < parsed.reply < 9
        elif parsed is not None:
            assert 0 < parsed[1] <= len(data)


@given(
    st.sampled_from([1, 3, 4]),
    st.binary(min_size=0, max_size=255),
    st.integers(min_value=0, max_value=65535),
)
def test_every_prefix_of_a_socks_request_asks_for_more(
    address_type: int, name: bytes, port: int
) -> None:
    address = {1: bytes(4), 4: bytes(16), 3: bytes([len(name)]) + name}[address_type]
    message = bytes((5, 1, 0, address_type)) + address + port.to_bytes(2, "big")
    whole = result_or_error(SocksError, parse_request, message)
    if isinstance(whole, SocksError):
        return  # a name that is not UTF-8
    assert whole is not None
    assert whole[1] == len(message)
    for end in range(len(message)):
        assert parse_request(message[:end]) is None
