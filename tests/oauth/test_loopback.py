"""The loopback browser redirect over real HTTP: only the awaited state ends the wait, the
prompt shows the URL and nothing else, the wait is bounded, and no socket is left open."""

from __future__ import annotations

import contextlib
from urllib.parse import urlencode

import httpx
import pytest
import trio
import trio.testing

from tests.cli.cli_harness import free_port, listening_on
from trio_sandbox.oauth import LoopbackUserAgent, OAuthError

AUTHORIZE = "https://as.example/authorize?" + urlencode(
    {"client_id": "c", "state": "the-state", "code_challenge": "x", "response_type": "code"}
)


async def test_only_the_awaited_redirect_ends_the_wait() -> None:
    said: list[str] = []
    agent = LoopbackUserAgent("github", announce=said.append)
    statuses: list[int] = []
    async with agent.redirect() as redirect:
        assert redirect.uri.startswith("http://127.0.0.1:")
        assert redirect.uri.endswith("/callback")
        port = int(redirect.uri.split(":")[2].split("/")[0])

        async def browser() -> None:
            async with httpx.AsyncClient() as http:
                await trio.testing.wait_all_tasks_blocked()
                # A slow connection that never finishes its request does not hold anyone up.
                idle = await trio.open_tcp_stream("127.0.0.1", port)
                await idle.send_all(b"GET /callback?state=the-sta")
                for url in (
                    f"{redirect.uri}?code=stolen&state=another-state",
                    f"{redirect.uri}?code=nostate",
                    f"http://127.0.0.1:{port}/elsewhere?code=c&state=the-state",
                    f"{redirect.uri}?code=the-code&state=the-state&iss=https%3A%2F%2Fas.example",
                    f"{redirect.uri}?code=late&state=the-state",
                ):
                    response = await http.get(url)
                    statuses.append(response.status_code)
                    assert "the-code" not in response.text
                await idle.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(browser)
            answer = await redirect.authorize(AUTHORIZE)
    assert answer == {"code": "the-code", "state": "the-state", "iss": "https://as.example"}
    assert statuses == [400, 400, 404, 200, 400]
    assert said == [f"Open this URL to authorize github: {AUTHORIZE}"]
    assert not listening_on(port)


async def test_a_fixed_port_is_used_and_released() -> None:
    port = free_port()
    agent = LoopbackUserAgent("linear", port=port, announce=lambda _: None)
    async with agent.redirect() as redirect:
        assert redirect.uri == f"http://127.0.0.1:{port}/callback"
        assert listening_on(port)
    assert not listening_on(port)


async def test_a_busy_fixed_port_is_a_clear_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        with pytest.raises(OAuthError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with LoopbackUserAgent("x", port=port).redirect():
                pass  # pragma: no cover
    finally:
        await listeners[0].aclose()


async def test_the_wait_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    agent = LoopbackUserAgent("github", timeout=120, announce=lambda _: None)
    async with agent.redirect() as redirect:
        started = trio.current_time()
        with pytest.raises(OAuthError, match=r"did not come back .* within 120 s"):
            await redirect.authorize(AUTHORIZE)
        assert trio.current_time() - started == pytest.approx(120)


async def test_an_authorization_url_without_state_is_refused() -> None:
    async with LoopbackUserAgent("x", announce=lambda _: None).redirect() as redirect:
        with pytest.raises(OAuthError, match="no state"):
            await redirect.authorize("https://as.example/authorize?client_id=c")


async def test_a_huge_request_is_dropped() -> None:
    agent = LoopbackUserAgent("github", announce=lambda _: None)
    async with agent.redirect() as redirect:
        port = int(redirect.uri.split(":")[2].split("/")[0])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(5):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(b"GET /callback?state=" + b"a" * 100_000 + b" HTTP/1.1\r\n")
            received = b""
            while True:
                try:
                    chunk = await stream.receive_some()
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                received += chunk
        assert b"200" not in received
        await stream.aclose()
