"""Serving an McpServer over real hypercorn on 127.0.0.1 and talking to it with raw httpx.

The helpers speak the wire format directly (headers, envelopes, SSE lines) so that the server
tests check exactly what a foreign client would see.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import trio

from trio_sandbox.mcp import BoundServer, HttpSettings, McpHttpApp, McpServer, serve_http

STATELESS: Final = "2026-07-28"
ACCEPT_BOTH: Final = "application/json, text/event-stream"
ALL_CAPABILITIES: Final = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}
NAME_KEY: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@attrs.define(eq=False)
class Served:
    url: str
    app: McpHttpApp
    client: httpx.AsyncClient


@asynccontextmanager
async def serve(server: McpServer, settings: HttpSettings | None = None) -> AsyncIterator[Served]:
    app = McpHttpApp(server, settings or HttpSettings())
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(functools.partial(serve_http, app))
        async with httpx.AsyncClient(timeout=10) as client:
            yield Served(bound.url, app, client)
        nursery.cancel_scope.cancel()


def envelope(capabilities: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": (
            ALL_CAPABILITIES if capabilities is None else capabilities
        ),
        **extra,
    }


def stateless_headers(method: str, params: dict[str, Any]) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT_BOTH,
        "mcp-protocol-version": STATELESS,
        "mcp-method": method,
    }
    key = NAME_KEY.get(method)
    if key is not None:
        headers["mcp-name"] = str(params[key])
    return headers


async def post_stateless(
    served: Served,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    request_id: int = 1,
    capabilities: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    drop_headers: tuple[str, ...] = (),
) -> tuple[httpx.Response, dict[str, Any]]:
    """One stateless request; the HTTP response and the JSON-RPC message answering it."""
    params = dict(params or {})
    params.setdefault("_meta", envelope(capabilities))
    all_headers = stateless_headers(method, params)
    for name in drop_headers:
        all_headers.pop(name, None)
    all_headers.update(headers or {})
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    response = await served.client.post(served.url, json=body, headers=all_headers)
    return response, answer_of(response, request_id)


def sse_messages(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data:") :])
        for line in text.splitlines()
        if line.startswith("data:") and line[len("data:") :].strip()
    ]


def answer_of(response: httpx.Response, request_id: int | str) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for message in sse_messages(response.text):
            if message.get("id") == request_id and "method" not in message:
                return message
        raise AssertionError(f"no answer to {request_id} in {response.text!r}")
    answer: dict[str, Any] = response.json()
    return answer


def session_headers(session_id: str, version: str = "2025-11-25") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": ACCEPT_BOTH,
        "mcp-session-id": session_id,
        "mcp-protocol-version": version,
    }


async def initialize(served: Served, version: str = "2025-11-25") -> str:
    """Open a handshake-era session; its id."""
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "raw-test", "version": "1"},
        },
    }
    headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
    response = await served.client.post(served.url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["protocolVersion"] == version
    session_id = response.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = await served.client.post(
        served.url, json=note, headers=session_headers(session_id, version)
    )
    assert done.status_code == 202
    return session_id


@attrs.frozen
class SseEvent:
    id: str | None
    retry: int | None
    data: str

    @property
    def message(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse the SSE events of a streamed response (comments skipped).

    Leave the loop early by cancelling a scope around it, not with ``break``: cancellation
    unwinds httpx's nested stream generators, ``break`` leaves them to the garbage collector.
    """
    event_id: str | None = None
    retry: int | None = None
    data: list[str] = []
    seen_field = False
    async for line in response.aiter_lines():
        if line == "":
            if seen_field:
                yield SseEvent(event_id, retry, "\n".join(data))
            event_id, retry, data, seen_field = None, None, [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        seen_field = True
        if name == "id":
            event_id = value
        elif name == "retry":
            retry = int(value)
        elif name == "data":
            data.append(value)
