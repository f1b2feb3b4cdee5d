"""A small real authorization server and an MCP server it protects, on one 127.0.0.1 port,
with knobs for every misbehaviour the tests need (a wrong state or iss, metadata for another
issuer, huge answers, failing refreshes) and counters of what it was asked.

The MCP side is our own McpServer behind a bearer check that answers 401/403 with the
WWW-Authenticate the MCP authorization spec describes.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import httpx
import trio

from trio_sandbox.mcp import (
    BoundServer,
    Implementation,
    McpHttpApp,
    McpServer,
    RequestContext,
    serve_http,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@attrs.define(eq=False)
class AuthWorld:
    """The knobs (set before or between requests) and what the servers saw."""

    base: str = ""  # http://127.0.0.1:PORT, set once it listens
    # metadata
    metadata_issuer: str | None = None  # None: the real issuer
    prm_resource: str | None = None  # None: the MCP server's URL
    prm_scopes: list[str] | None = None
    prm_servers: list[str] | None = None  # None: this world's issuer
    as_scopes: list[str] | None = None
    iss_supported: bool = True
    huge_metadata: bool = False
    registration: bool = True
    registration_answer: dict[str, object] = attrs.field(factory=dict)  # overrides
    device: bool = False
    device_answer: dict[str, object] = attrs.field(factory=dict)  # overrides in its answer
    # the authorization endpoint
    iss_mode: str = "correct"  # correct | wrong | omit
    state_mode: str = "echo"  # echo | wrong
    # the token endpoint
    expires_in: int | None = 3600
    issue_refresh_tokens: bool = True
    refresh_mode: str = "ok"  # ok | error500 | invalid_grant | echo_secret
    client_credentials_mode: str = "ok"  # ok | error503
    token_gate: trio.Event | None = None  # the token endpoint waits for it before answering
    token_requested: trio.Event = attrs.field(factory=trio.Event)  # set by the first
    # A refresh processed (the old refresh token gone), its answer held until this is set.
    answer_gate: trio.Event | None = None
    refresh_processed: trio.Event = attrs.field(factory=trio.Event)
    device_pending: int = 1  # authorization_pending answers before the token
    # the MCP server: scopes a tools/call needs (403 insufficient_scope without them)
    call_scopes: list[str] = attrs.field(factory=list)
    withheld_scopes: set[str] = attrs.field(factory=set)  # asked for, never granted
    www_scope: str | None = None  # the scope parameter of the 401
    www_resource_metadata: str | None = None  # the 401's resource_metadata (None: the real one)
    refuse_every_token: bool = False  # 401 to every token, even one just issued
    token_extra: dict[str, object] = attrs.field(factory=dict)  # put into every token answer
    metadata_extra: dict[str, object] = attrs.field(factory=dict)  # into the AS metadata
    # what happened
    requests: Counter[str] = attrs.field(factory=Counter)
    grants: Counter[str] = attrs.field(factory=Counter)
    authorizations: list[dict[str, str]] = attrs.field(factory=list)
    token_forms: list[dict[str, str]] = attrs.field(factory=list)
    mcp_authorizations: list[str | None] = attrs.field(factory=list)
    tokens: dict[str, list[str]] = attrs.field(factory=dict)  # access token -> scopes
    refresh_tokens: set[str] = attrs.field(factory=set)
    codes: dict[str, dict[str, str]] = attrs.field(factory=dict)
    clients: dict[str, str | None] = attrs.field(factory=dict)  # client_id -> secret
    _serial: itertools.count[int] = attrs.field(factory=itertools.count)
    _pending: Counter[str] = attrs.field(factory=Counter)

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def prm_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    def issue(self, scopes: list[str]) -> dict[str, object]:
        scopes = [scope for scope in scopes if scope not in self.withheld_scopes]
        serial = next(self._serial)
        access = f"at-{serial}-{secrets.token_urlsafe(12)}"
        self.tokens[access] = scopes
        answer: dict[str, object] = {"access_token": access, "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        if self.issue_refresh_tokens:
            refresh = f"rt-{serial}-{secrets.token_urlsafe(12)}"
            self.refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
        if scopes:
            answer["scope"] = " ".join(scopes)
        answer.update(self.token_extra)
        if isinstance(answer["access_token"], str):
            self.tokens[answer["access_token"]] = scopes
        return answer

    # --- the ASGI app ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.mcp_app(scope, receive, send)  # lifespan: the MCP app answers it
            return
        path = scope["path"]
        self.requests[path] += 1
        if path == "/mcp":
            await self._mcp(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = dict(parse_qsl(scope["query_string"].decode()))
        form = dict(parse_qsl(body.decode())) if body else {}
        routes: dict[str, Callable[..., Awaitable[None]]] = {
            "/.well-known/oauth-protected-resource/mcp": self._prm,
            "/.well-known/oauth-authorization-server": self._metadata,
            "/authorize": self._authorize,
            "/token": self._token,
            "/register": self._register,
            "/device": self._device,
        }
        route = routes.get(path)
        if route is None:
            await _respond(send, 404, {"error": "not_found"})
            return
        await route(send, headers=headers, query=query, form=form, body=body)

    async def _prm(self, send: Send, **_: Any) -> None:
        document: dict[str, object] = {
            "resource": self.prm_resource or self.mcp_url,
            "authorization_servers": self.prm_servers or [self.issuer],
        }
        if self.prm_scopes is not None:
            document["scopes_supported"] = self.prm_scopes
        await _respond(send, 200, document)

    async def _metadata(self, send: Send, **_: Any) -> None:
        if self.huge_metadata:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunk = b"x" * 65536
            for _index in range(40):  # 2.5 MiB, chunked: no Content-Length to refuse early
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        document: dict[str, object] = {
            "issuer": self.metadata_issuer or self.issuer,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
            "authorization_response_iss_parameter_supported": self.iss_supported,
        }
        if self.registration:
            document["registration_endpoint"] = f"{self.base}/register"
        if self.device:
            document["device_authorization_endpoint"] = f"{self.base}/device"
        if self.as_scopes is not None:
            document["scopes_supported"] = self.as_scopes
        document.update(self.metadata_extra)
        await _respond(send, 200, document)

    async def _register(self, send: Send, *, body: bytes, **_: Any) -> None:
        request = json.loads(body)
        client_id = f"client-{next(self._serial)}"
        method = request.get("token_endpoint_auth_method", "client_secret_basic")
        secret = None if method == "none" else secrets.token_urlsafe(16)
        self.clients[client_id] = secret
        answer = {**request, "client_id": client_id, "token_endpoint_auth_method": method}
        answer.update(self.registration_answer)
        if secret is not None:
            answer["client_secret"] = secret
        await _respond(send, 201, answer)

    async def _authorize(self, send: Send, *, query: dict[str, str], **_: Any) -> None:
        self.authorizations.append(query)
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        params = {"code": code}
        params["state"] = query.get("state", "") if self.state_mode == "echo" else "forged"
        if self.iss_mode == "correct":
            params["iss"] = self.issuer
        elif self.iss_mode == "wrong":
            params["iss"] = "https://evil.example"
        location = f"{query['redirect_uri']}?{urlencode(params)}"
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [(b"location", location.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _client_of(self, headers: Mapping[str, str], form: dict[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        if authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if client_id not in self.clients:
            return None
        expected = self.clients[client_id]
        return client_id if expected is None or expected == secret else None

    async def _token(
        self, send: Send, *, headers: Mapping[str, str], form: dict[str, str], **_: Any
    ) -> None:
        grant_type = form.get("grant_type", "")
        self.grants[grant_type] += 1
        self.token_forms.append(form)
        self.token_requested.set()
        if self.token_gate is not None:
            await self.token_gate.wait()
        client_id = self._client_of(headers, form)
        if client_id is None:
            await _respond(send, 401, {"error": "invalid_client"})
            return
        if grant_type == "authorization_code":
            request = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if (
                request is None
                or request.get("code_challenge") != challenge
                or request.get("redirect_uri") != form.get("redirect_uri")
                or request.get("resource") != form.get("resource")
            ):
                await _respond(send, 400, {"error": "invalid_grant"})
                return
            await _respond(send, 200, self.issue(request.get("scope", "").split()))
            return
        if grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            if self.refresh_mode == "error500":
                await _respond(send, 500, {"error": "server_error"})
                return
            if self.refresh_mode == "echo_secret":
                description = f"cannot refresh {refresh} for {form.get('client_secret')}"
                await _respond(
                    send,
                    400,
                    {"error": "temporarily_unavailable", "error_description": description},
                )
                return
            if self.refresh_mode == "invalid_grant" or refresh not in self.refresh_tokens:
                await _respond(send, 400, {"error": "invalid_grant"})
                return
            self.refresh_tokens.discard(refresh)
            answer = self.issue(["mcp"])
            self.refresh_processed.set()
            if self.answer_gate is not None:
                await self.answer_gate.wait()
            await _respond(send, 200, answer)
            return
        if grant_type == "client_credentials":
            if self.client_credentials_mode == "error503":
                await _respond(send, 503, {"error": "temporarily_unavailable"})
                return
            await _respond(send, 200, self.issue(form.get("scope", "").split()))
            return
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            device_code = form.get("device_code", "")
            if self._pending[device_code] < self.device_pending:
                self._pending[device_code] += 1
                await _respond(send, 400, {"error": "authorization_pending"})
                return
            await _respond(send, 200, self.issue(["mcp"]))
            return
        await _respond(send, 400, {"error": "unsupported_grant_type"})

    async def _device(self, send: Send, **_: Any) -> None:
        answer: dict[str, object] = {
            "device_code": secrets.token_urlsafe(16),
            "user_code": "WDJB-MJHT",
            "verification_uri": f"{self.base}/activate",
            "expires_in": 600,
            "interval": 1,
        }
        await _respond(send, 200, {**answer, **self.device_answer})

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        authorization = headers.get("authorization")
        self.mcp_authorizations.append(authorization)
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
        challenge = f'Bearer resource_metadata="{self.www_resource_metadata or self.prm_url}"'
        if self.www_scope:
            challenge += f', scope="{self.www_scope}"'
        # The body is read before any answer: a server that answers without reading it closes
        # the connection after, which races the client's next request on it.
        body = await _read_body(receive) if scope["method"] == "POST" else b""
        receive = _replay(body, receive)
        if token not in self.tokens or self.refuse_every_token:
            await _respond(send, 401, {"error": "invalid_token"}, www_authenticate=challenge)
            return
        if self.call_scopes and scope["method"] == "POST":
            message = json.loads(body) if body else {}
            if isinstance(message, dict) and message.get("method") == "tools/call":
                granted = self.tokens[token]
                if not all(needed in granted for needed in self.call_scopes):
                    needed = " ".join(self.call_scopes)
                    await _respond(
                        send,
                        403,
                        {"error": "insufficient_scope"},
                        www_authenticate=f'Bearer error="insufficient_scope", scope="{needed}",'
                        f' resource_metadata="{self.prm_url}"',
                    )
                    return
        await self.mcp_app(scope, receive, send)

    mcp_app: McpHttpApp = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        server = McpServer(Implementation("protected", "1.0"))

        @server.tool("whoami")
        async def whoami(arguments: dict[str, Any], ctx: RequestContext) -> str:
            return "a protected answer"

        self.mcp_app = McpHttpApp(server)


def _replay(body: bytes, rest: Receive) -> Receive:
    """The body read already, then whatever the connection says next (its disconnect)."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await rest()

    return receive


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, document: object, *, www_authenticate: str | None = None
) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if www_authenticate is not None:
        headers.append((b"www-authenticate", www_authenticate.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def open_auth_world() -> AsyncIterator[AuthWorld]:
    """The servers on 127.0.0.1, stopped when the block ends."""
    world = AuthWorld()
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(
            lambda task_status: serve_http(world, graceful_timeout=0.2, task_status=task_status)
        )
        world.base = f"http://127.0.0.1:{bound.port}"
        try:
            yield world
        finally:
            nursery.cancel_scope.cancel()


@attrs.frozen
class HeadlessRedirect:
    """A browser that approves at once: GET the authorization URL, read the redirect's query
    from its Location without following it."""

    http: httpx.AsyncClient
    uri: str = "http://127.0.0.1:9/callback"

    async def authorize(self, authorization_url: str) -> Mapping[str, str]:
        response = await self.http.get(authorization_url, follow_redirects=False)
        location = response.headers["location"]
        return dict(parse_qsl(urlsplit(location).query))


@attrs.define(eq=False)
class HeadlessUserAgent:
    http: httpx.AsyncClient
    redirects: int = 0

    @asynccontextmanager
    async def redirect(self) -> AsyncIterator[HeadlessRedirect]:
        self.redirects += 1
        yield HeadlessRedirect(self.http)
