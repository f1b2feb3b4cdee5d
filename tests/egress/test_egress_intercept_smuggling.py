"""Requests through interception, attacked for smuggling: a real TLS origin on 127.0.0.1 that
records every byte it receives on a connection (answering the first request with a close), so
the test sees exactly what the proxy sent. The proxy must send one reading of each request:
its framing fields written from the body as parsed, HTTP/1.0 with Transfer-Encoding refused,
trailers checked as strictly as heads, nothing after a request that closes the connection (a
request written after it, with the placeholder, would otherwise go out with the value to
whatever the origin makes of those bytes), and Host as the name the tunnel was checked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from tests.egress.egress_harness import (
    receive_until,
)
from tests.egress.intercept_harness import (
    PLACEHOLDER,
    VALUE,
    Setup,
    exchange,
    scripted_origin,
    tls_through,
)

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@attrs.frozen
class Recording:
    setup: Setup
    port: int
    received: trio.MemoryReceiveChannel[bytes]

    async def send(self, request: str) -> tuple[bytes, bytes]:
        """(the client's answer, every byte the origin received on its connection)."""
        tls = await tls_through(self.setup)
        answer = await exchange(tls, request.replace("HOST", f"secure.test:{self.port}"))
        with trio.fail_after(5):
            received = await self.received.receive()
        return answer, received


@asynccontextmanager
async def recording_origin(tmp_path: Path) -> AsyncIterator[Recording]:
    send, receive = trio.open_memory_channel[bytes](10)

    async def record(tls: trio.SSLStream[trio.SocketStream]) -> None:
        data = b""
        try:
            data = await receive_until(tls, b"\r\n\r\n")
            while not _whole(data):  # the first request, as a lenient origin reads it
                if not (chunk := await tls.receive_some(65536)):
                    raise trio.BrokenResourceError
                data += chunk
            await tls.send_all(ANSWER)
            while chunk := await tls.receive_some(65536):  # until the proxy closes
                data += chunk
        except trio.BrokenResourceError:
            pass
        await send.send(data)

    async with scripted_origin(tmp_path, record) as setup:
        yield Recording(setup, setup.origins.https, receive)
        await setup.proxy.wait_until_idle()


CHUNKED_BODY = "5\r\nhello\r\n0\r\n\r\n"


def _whole(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        return b"0\r\n\r\n" in body
    if b"content-length: " in lowered:
        return len(body) >= int(lowered.partition(b"content-length: ")[2].split(b"\r\n")[0])
    return True


@pytest.mark.parametrize(
    ("fields", "body", "framing"),
    [
        ("Transfer-Encoding: ,chunked\r\n", CHUNKED_BODY, "Transfer-Encoding: chunked\r\n"),
        ("Transfer-Encoding: chunked, \r\n", CHUNKED_BODY, "Transfer-Encoding: chunked\r\n"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
            CHUNKED_BODY,
            "Transfer-Encoding: chunked\r\n",
        ),
        ("Content-Length: 5, 5\r\n", "hello", "Content-Length: 5\r\n"),
        ("Content-Length: 5\r\nContent-Length: 5\r\n", "hello", "Content-Length: 5\r\n"),
        ("Content-Length: 0\r\n", "", "Content-Length: 0\r\n"),
    ],
)
async def test_framing_fields_are_written_from_the_body_as_parsed(
    tmp_path: Path, fields: str, body: str, framing: str
) -> None:
    async with recording_origin(tmp_path) as origin:
        answer, received = await origin.send(
            f"POST /upload HTTP/1.1\r\nHost: HOST\r\n{fields}\r\n{body}"
        )
    assert answer.endswith(b"\r\n\r\nok")
    head, _, sent_body = received.partition(b"\r\n\r\n")
    assert sent_body == body.encode()
    lines = [line + "\r\n" for line in head.decode().split("\r\n")]
    assert [line for line in lines if line.lower().startswith(framing.split(":")[0].lower())] == [
        framing
    ]


@pytest.mark.parametrize(
    ("request_text", "status", "reason"),
    [
        (
            "POST /upload HTTP/1.0\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n"
            + CHUNKED_BODY,
            b"400",
            b"Transfer-Encoding in an HTTP/1.0 request",
        ),
        (
            # A bare LF in a trailer: a lenient origin ends the trailer there and reads what
            # follows as a request of its own.
            "POST /upload HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n0\r\nX-T: a\nGET /capture HTTP/1.1\r\n\r\n",
            b"",
            b"",  # part of the body went out: the connection is closed
        ),
    ],
)
async def test_ambiguous_framing_is_refused(
    tmp_path: Path, request_text: str, status: bytes, reason: bytes
) -> None:
    async with recording_origin(tmp_path) as origin:
        answer, received = await origin.send(request_text)
    assert reason in answer
    assert answer.startswith(b"HTTP/1.1 " + status if status else b"")
    assert b"/capture" not in received
    if b"HTTP/1.0" in request_text.encode():
        assert received == b""  # nothing of it was sent


@pytest.mark.parametrize(
    ("version", "closing"),
    [
        ("HTTP/1.1", "Connection: close\r\n"),
        ("HTTP/1.1", "Connection: keep-alive, CLOSE\r\n"),
        ("HTTP/1.0", ""),  # closes unless it says otherwise (and this proxy closes it anyway)
        ("HTTP/1.0", "Connection: keep-alive\r\n"),
    ],
)
async def test_nothing_after_a_request_that_closes_the_connection_is_sent(
    tmp_path: Path, version: str, closing: str
) -> None:
    async with recording_origin(tmp_path) as origin:
        answer, received = await origin.send(
            f"GET /first {version}\r\nHost: HOST\r\n{closing}\r\n"
            f"GET /second HTTP/1.1\r\nHost: HOST\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n"
        )
    assert answer.count(b"HTTP/1.1 200 OK") == 1
    assert received.startswith(f"GET /first {version}\r\n".encode())
    assert b"\r\nConnection: close\r\n" in received
    assert b"/second" not in received
    assert VALUE.encode() not in received


@pytest.mark.parametrize("written", ["SECURE.test:PORT", "secure.test.:PORT", "Secure.Test.:PORT"])
async def test_host_goes_out_as_the_name_the_tunnel_was_checked_for(
    tmp_path: Path, written: str
) -> None:
    async with recording_origin(tmp_path) as origin:
        answer, received = await origin.send(
            f"GET / HTTP/1.1\r\nHost: {written.replace('PORT', str(origin.port))}\r\n\r\n"
        )
    assert answer.endswith(b"\r\n\r\nok")
    assert f"\r\nHost: secure.test:{origin.port}\r\n".encode() in received
