"""Time limits inside an intercepted tunnel (real TLS through the proxy to a real origin on
127.0.0.1, short limits so the test stays short): a tunnel with no request under way is closed
after idle_timeout, a request head must be whole within handshake_timeout of its first byte,
and an origin that never answers a client that has gone does not hold the tunnel."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.egress.egress_harness import receive_until
from tests.egress.intercept_harness import (
    PLACEHOLDER,
    exchange,
    intercepting,
    scripted_origin,
    tls_through,
)

# (handshake_timeout, idle_timeout)
SHORT = (0.3, 0.3)
SHORT_HEAD = (0.3, 3.0)
# Well above the limits: what a test waits at most before it calls the proxy stuck.
BOUND = 5.0


@pytest.mark.parametrize(
    ("timeouts", "head", "expected"),
    [
        # One request answered, then nothing: the tunnel closes after the answer.
        (
            SHORT,
            f"GET /auth HTTP/1.1\r\nHost: HOST\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n",
            (b"HTTP/1.1 200 OK\r\n", b"authorized\n"),
        ),
        # A head that never ends: a 408 naming the limit.
        (
            SHORT_HEAD,
            "GET /auth HTTP/1.1\r\nHost: HOST\r\n",
            (b"HTTP/1.1 408 Request Timeout\r\n", b"did not arrive within 0.3 s\n"),
        ),
    ],
)
async def test_a_tunnel_that_stalls_is_closed_in_bounded_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    timeouts: tuple[float, float],
    head: str,
    expected: tuple[bytes, bytes],
) -> None:
    async with intercepting(tmp_path, monkeypatch, timeouts=timeouts) as setup:
        tls = await tls_through(setup)
        answer = await exchange(tls, head.replace("HOST", setup.host), BOUND)
    assert answer.startswith(expected[0])
    assert answer.endswith(expected[1])


async def test_an_origin_that_never_answers_a_client_that_left_does_not_hold_the_tunnel(
    tmp_path: Path,
) -> None:
    async def never_answer(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await receive_until(tls, b"\r\n\r\n")
        await trio.sleep_forever()

    async with scripted_origin(tmp_path, never_answer, SHORT) as setup:
        tls = await tls_through(setup)
        await tls.send_all(f"GET / HTTP/1.1\r\nHost: {setup.host}\r\n\r\n".encode())
        await tls.aclose()
        with trio.fail_after(BOUND):
            await setup.proxy.wait_until_idle()
