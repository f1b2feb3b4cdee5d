"""The browser of a person at this machine: the authorization URL printed for them to open, and
the redirect caught on a loopback listener (RFC 8252 §7.3, the native-app pattern).

The listener is on 127.0.0.1 only (an ephemeral port, or the fixed port a pre-registered client's
redirect URI names), path ``/callback``, for as long as the ``redirect()`` block runs; it answers
only the redirect whose ``state`` is the one of the authorization URL it was given (anything else
gets 400 and is otherwise ignored: another page of the machine cannot end the wait). The wait is
bounded. What it prints is the URL and nothing else: the code, and any token, never show.
"""

from __future__ import annotations

import contextlib
import html
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio

from ._errors import OAuthError
from ._user_agent import Redirect

CALLBACK_PATH: Final = "/callback"
# A redirect's request is a line and a few headers; bigger is not a browser coming back.
_MAX_REQUEST: Final = 16 * 1024
# How long one connection may take to send its request (a slow or idle socket is dropped).
_CONNECTION_LIMIT: Final = 10.0


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@attrs.define(eq=False)
class LoopbackUserAgent:
    """:class:`UserAgent` for a person at this machine: prints the URL, listens on loopback.

    ``name`` is the upstream, named in the prompt; ``port`` 0 picks a free port (a server whose
    client was registered with a fixed redirect URI needs that port); ``timeout`` bounds the
    wait for the browser to come back; ``announce`` shows the prompt (stderr by default).
    """

    name: str
    port: int = 0
    timeout: float = 300.0
    announce: Callable[[str], None] = _print_to_stderr

    @asynccontextmanager
    async def redirect(self) -> AsyncIterator[Redirect]:
        try:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        except OSError as exc:
            raise OAuthError(
                f"cannot listen on 127.0.0.1:{self.port} for the browser's redirect: {exc.strerror}"
            ) from None
        port = listeners[0].socket.getsockname()[1]
        redirect = _LoopbackRedirect(self, f"http://127.0.0.1:{port}{CALLBACK_PATH}")
        async with trio.open_nursery() as nursery:
            try:
                for listener in listeners:
                    nursery.start_soon(partial(_accept, listener, redirect, nursery))
                yield redirect
            finally:
                nursery.cancel_scope.cancel()
                for listener in listeners:
                    await trio.aclose_forcefully(listener)


@attrs.define(eq=False)
class _LoopbackRedirect:
    agent: LoopbackUserAgent
    uri: str
    # The state the current authorize() waits for, and where its answer goes.
    _expected: str | None = None
    _answer: Mapping[str, str] | None = None
    _arrived: trio.Event = attrs.field(factory=trio.Event)

    async def authorize(self, authorization_url: str) -> Mapping[str, str]:
        query = dict(parse_qsl(urlsplit(authorization_url).query))
        state = query.get("state")
        if not state:
            raise OAuthError("the authorization URL has no state: refusing to wait for it")
        self._expected, self._answer, self._arrived = state, None, trio.Event()
        self.agent.announce(f"Open this URL to authorize {self.agent.name}: {authorization_url}")
        try:
            with trio.move_on_after(self.agent.timeout):
                await self._arrived.wait()
        finally:
            self._expected = None
        if self._answer is None:
            raise OAuthError(
                f"the browser did not come back to {self.uri} within"
                f" {self.agent.timeout:g} s; run the login again"
            )
        return self._answer

    def deliver(self, parameters: Mapping[str, str]) -> bool:
        """Take a redirect's parameters if they answer the authorization waited for."""
        if self._expected is None or parameters.get("state") != self._expected:
            return False
        self._answer = dict(parameters)
        self._expected = None
        self._arrived.set()
        return True


async def _accept(
    listener: trio.SocketListener, redirect: _LoopbackRedirect, nursery: trio.Nursery
) -> None:
    while True:
        stream = await listener.accept()
        nursery.start_soon(_serve_one, stream, redirect)


async def _serve_one(stream: trio.SocketStream, redirect: _LoopbackRedirect) -> None:
    async with stream:
        with trio.move_on_after(_CONNECTION_LIMIT):
            connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
            try:
                request = await _read_request(stream, connection)
            except (h11.RemoteProtocolError, trio.BrokenResourceError):
                return
            if request is None:
                return
            status, page = _answer(request, redirect)
            body = page.encode()
            headers = [
                ("content-type", "text/html; charset=utf-8"),
                ("content-length", str(len(body))),
                ("cache-control", "no-store"),
                ("connection", "close"),
            ]
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(
                    connection.send(h11.Response(status_code=status, headers=headers))
                    + connection.send(h11.Data(data=body))
                    + connection.send(h11.EndOfMessage())
                )


async def _read_request(
    stream: trio.SocketStream, connection: h11.Connection
) -> h11.Request | None:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            connection.receive_data(data)
            if not data:
                return None
            continue
        if isinstance(event, h11.Request):
            return event
        return None


def _answer(request: h11.Request, redirect: _LoopbackRedirect) -> tuple[int, str]:
    target = urlsplit(request.target.decode("ascii", "replace"))
    if request.method != b"GET" or target.path != CALLBACK_PATH:
        return 404, _page("Not found", "This is only the redirect of a trio-sandbox login.")
    parameters = dict(parse_qsl(target.query))
    if not redirect.deliver(parameters):
        return 400, _page(
            "Not the login waited for",
            "This redirect does not answer the authorization trio-sandbox is waiting for.",
        )
    name = html.escape(redirect.agent.name)
    if "error" in parameters:
        return 200, _page(
            "Authorization refused",
            f"The authorization of {name} was refused ({html.escape(parameters['error'])});"
            " see the terminal.",
        )
    return 200, _page(
        "Authorized", f"trio-sandbox has the authorization of {name}. You may close this tab."
    )


def _page(title: str, text: str) -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>"
    )
