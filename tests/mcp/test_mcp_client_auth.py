"""The HTTP transport's authorization hook: every request carries its header, a 401/403 asks
it, the retries are bounded, and the header never leaves for another host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import attrs
import pytest
import trio

from trio_sandbox.mcp import (
    AuthChallenge,
    BoundServer,
    Implementation,
    McpConnectionError,
    McpHttpApp,
    McpHttpStatusError,
    McpServer,
    RequestContext,
    open_mcp_client,
    serve_http,
)
from trio_sandbox.mcp.client import HttpAuth

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


@attrs.define(eq=False)
class Recorder:
    """An ASGI wrapper that records (method, Authorization) of every request and may refuse."""

    app: App | None
    refuse: int | None = None  # answer every request with this status
    location: str | None = None  # with a redirect to here
    echo: int | None = None  # the refusal's body: this many x, then the Authorization header
    echo_spelling: Callable[[str], str] = str  # how the echo spells the header
    seen: list[tuple[str, str | None]] = attrs.field(factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.seen.append((scope["method"], headers.get("authorization")))
            if self.refuse is not None or self.app is None:
                while (await receive()).get("more_body"):
                    pass
                body = b""
                if self.echo is not None:
                    echoed = self.echo_spelling(headers.get("authorization") or "")
                    body = f"{'x' * self.echo} {echoed}".encode()
                extra = [(b"www-authenticate", b'Bearer error="invalid_token"')]
                if self.location is not None:
                    extra = [(b"location", self.location.encode())]
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.refuse or 404,
                        "headers": [(b"content-length", str(len(body)).encode()), *extra],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return


@attrs.define(eq=False)
class CountingAuth:
    token: str = "t1"
    retry: bool = True
    asked: list[AuthChallenge] = attrs.field(factory=list)
    error: Exception | None = None

    calls: int = 0

    async def authorization(self) -> str | None:
        self.calls += 1
        return f"Bearer {self.token}"

    async def challenged(self, challenge: AuthChallenge) -> bool:
        self.asked.append(challenge)
        if self.error is not None:
            raise self.error
        self.token = f"t{len(self.asked) + 1}"
        return self.retry


def protected_app() -> McpHttpApp:
    server = McpServer(Implementation("hooked", "1.0"))

    @server.tool("hello")
    async def hello(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return "hi"

    return McpHttpApp(server)


@asynccontextmanager
async def serving(app: Recorder) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(
            lambda task_status: serve_http(app, graceful_timeout=0.2, task_status=task_status)
        )
        try:
            yield f"http://127.0.0.1:{bound.port}/mcp"
        finally:
            nursery.cancel_scope.cancel()


def test_counting_auth_is_an_http_auth() -> None:
    auth: HttpAuth = CountingAuth()
    assert auth is not None


async def test_every_request_of_a_session_carries_the_header() -> None:
    recorder = Recorder(protected_app())
    auth = CountingAuth()
    async with serving(recorder) as url:
        async with open_mcp_client(url, protocol_version="2025-11-25", auth=auth) as client:
            await client.call_tool("hello")
        methods = {method for method, _ in recorder.seen}
    assert methods == {"POST", "GET", "DELETE"}  # the standalone stream and the session's end
    assert all(value == "Bearer t1" for _, value in recorder.seen)
    assert auth.asked == []


@pytest.mark.parametrize("status", [401, 403])
async def test_retries_are_bounded(status: int) -> None:
    recorder = Recorder(None, refuse=status)
    auth = CountingAuth()
    async with serving(recorder) as url:
        with pytest.raises(McpHttpStatusError) as caught:
            async with open_mcp_client(url, protocol_version="2025-11-25", auth=auth):
                pass
    assert caught.value.status == status
    # No notifications/cancelled for a refused request (nothing runs there). The first try
    # and three more, each with the header the hook gave after its challenge.
    assert [value for _, value in recorder.seen] == [f"Bearer t{n}" for n in range(1, 5)]
    assert [c.status for c in auth.asked] == [status] * 3
    assert auth.asked[0].www_authenticate == 'Bearer error="invalid_token"'


async def test_a_hook_that_declines_lets_the_status_stand() -> None:
    recorder = Recorder(None, refuse=401)
    auth = CountingAuth(retry=False)
    async with serving(recorder) as url:
        with pytest.raises(McpHttpStatusError, match="HTTP 401"):
            async with open_mcp_client(url, auth=auth):
                pass
    # Probed once (stateless era): a 401 is not a reason to fall back to initialize.
    assert len(recorder.seen) == 1
    assert len(auth.asked) == 1


async def test_the_hook_s_error_reaches_the_caller() -> None:
    class NeedsPerson(Exception):
        pass

    recorder = Recorder(None, refuse=401)
    auth = CountingAuth(error=NeedsPerson("log in"))
    async with serving(recorder) as url:
        with pytest.raises(NeedsPerson):
            async with open_mcp_client(url, auth=auth):
                pass


async def test_the_header_does_not_follow_a_redirect() -> None:
    elsewhere = Recorder(None)
    async with serving(elsewhere) as other_url:
        redirecting = Recorder(None, refuse=307, location=other_url)
        async with serving(redirecting) as url:
            with pytest.raises(McpConnectionError, match="HTTP 307"):
                async with open_mcp_client(url, protocol_version="2025-11-25", auth=CountingAuth()):
                    pass
    # The initialize, then its notifications/cancelled: both here, neither at the other host.
    assert redirecting.seen == [("POST", "Bearer t1")] * 2
    assert elsewhere.seen == []


async def test_auth_is_for_http_urls_only() -> None:
    with pytest.raises(ValueError, match="http"):
        async with open_mcp_client("ws://127.0.0.1:1/mcp", auth=CountingAuth()):
            pass


@pytest.mark.parametrize("status", [401, 400])
@pytest.mark.parametrize("padding", [100, 180])  # the token whole in the snippet, or cut by it
async def test_an_echoed_token_is_not_in_the_error(status: int, padding: int) -> None:
    recorder = Recorder(None, refuse=status, echo=padding)
    auth = CountingAuth(token="secret-token-value", retry=False)
    async with serving(recorder) as url:
        with pytest.raises(McpHttpStatusError) as caught:
            async with open_mcp_client(url, protocol_version="2025-11-25", auth=auth):
                pass
    assert recorder.seen[0][1] == "Bearer secret-token-value"
    message = str(caught.value)
    assert "Bearer [re" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    "spelling",
    [
        lambda value: json.dumps(value).replace("/", "\\/"),  # JSON may escape the slash
        lambda value: json.dumps(value),
        lambda value: quote(value, safe=""),
    ],
)
async def test_an_echoed_token_in_another_spelling_is_not_in_the_error(
    spelling: Callable[[str], str],
) -> None:
    recorder = Recorder(None, refuse=401, echo=10, echo_spelling=spelling)
    auth = CountingAuth(token="secret/token+value=", retry=False)
    async with serving(recorder) as url:
        with pytest.raises(McpHttpStatusError) as caught:
            async with open_mcp_client(url, protocol_version="2025-11-25", auth=auth):
                pass
    message = str(caught.value)
    assert "secret" not in message
    assert "[redacted]" in message


async def test_closing_asks_the_hook_nothing() -> None:
    # A refresh or a login from inside close() would outlast its two seconds: the DELETE
    # carries the session's credential as it was, and its 401 is not the hook's business.
    recorder = Recorder(protected_app())
    auth = CountingAuth()
    async with serving(recorder) as url:
        async with open_mcp_client(url, protocol_version="2025-11-25", auth=auth) as client:
            await client.call_tool("hello")
            calls = auth.calls
            recorder.refuse = 401
        assert recorder.seen[-1] == ("DELETE", "Bearer t1")
    assert auth.calls == calls
    assert auth.asked == []
