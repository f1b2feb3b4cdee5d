"""How serve_http writes responses: a sized head leaves with its body, a streamed head at once."""

from __future__ import annotations

import functools
from typing import Any

import trio

from trio_sandbox.mcp import BoundServer, serve_http

_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _app(headers: list[tuple[bytes, bytes]], release: trio.Event) -> Any:
    """An ASGI app that starts its response, then waits for ``release`` to send the body."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await release.wait()
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    return app


async def _first_bytes_before_release(
    headers: list[tuple[bytes, bytes]], autojump_clock: trio.testing.MockClock
) -> tuple[bytes, bytes]:
    """What the client reads before the body is sent, and the whole response after."""
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(
            functools.partial(serve_http, _app(headers, release))
        )
        stream = await trio.open_tcp_stream("127.0.0.1", bound.port)
        await stream.send_all(_REQUEST)
        early = b""
        with trio.move_on_after(5):
            early = await stream.receive_some()
        release.set()
        response = early
        while not response.endswith(b"ok") and not response.endswith(b"0\r\n\r\n"):
            response += await stream.receive_some()
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return early, response


async def test_a_sized_head_is_written_with_its_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One write per JSON answer: the client must not wake for a head whose body follows.
    early, response = await _first_bytes_before_release([(b"content-length", b"2")], autojump_clock)
    assert early == b""
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nok")


async def test_a_streamed_head_is_written_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An SSE stream's head must not wait for the first event (which may come much later).
    early, response = await _first_bytes_before_release(
        [(b"content-type", b"text/event-stream")], autojump_clock
    )
    assert early.startswith(b"HTTP/1.1 200 ")
    assert early.endswith(b"\r\n\r\n")
    assert b"ok" in response
