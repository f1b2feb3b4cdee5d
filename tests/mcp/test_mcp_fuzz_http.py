"""Bad input on the Streamable HTTP face: arbitrary bytes, arbitrary JSON, mutated valid messages
and odd headers. Whatever arrives, the server answers with the right 4xx status and a
well-formed JSON-RPC error, or a well-formed JSON-RPC answer; never a 5xx, never a crash, never
a task left behind.

Most examples drive the ASGI app in-process (fast, on a virtual clock); a few go through
hypercorn on a real loopback socket.
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.mcp.asgi_harness import HttpResult, call_http
from tests.mcp.mcp_fuzz_support import (
    VERSIONS,
    build_fuzz_server,
    check_error_body,
    check_outgoing_message,
    envelope,
    ids_in,
    json_values,
    mirrored_headers,
    mutated_messages,
    parse_sse,
    payloads,
    run_virtual,
    valid_messages,
)
from trio_sandbox.mcp import (
    INVALID_REQUEST,
    PARSE_ERROR,
    BoundServer,
    HttpSettings,
    McpHttpApp,
    serve_http,
)

BODY_LIMIT = 2048
GOOD_HEADERS = [
    ("host", "127.0.0.1:8000"),
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
]
# Statuses a well-formed POST may get once headers and body size are acceptable.
POST_STATUSES = {200, 202, 400, 404}
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def new_app() -> McpHttpApp:
    return McpHttpApp(build_fuzz_server(), HttpSettings(max_body_bytes=BODY_LIMIT))


def json_or_none(body: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


def check_answer(result: HttpResult, body: bytes) -> None:
    """The answer to a POST with acceptable headers and size, whatever its body."""
    assert result.complete, "the response never ended"
    assert result.status is not None
    assert result.status < 500, (result.status, result.body)
    event(f"HTTP {result.status} {result.headers.get('content-type')}")
    parsed, raw = json_or_none(body)
    request_ids = ids_in(raw) if parsed else []
    if not parsed:
        assert result.status == 400
        assert check_error_body(result.body, [])["error"]["code"] == PARSE_ERROR
        return
    if not isinstance(raw, (dict, list)) or raw == []:
        assert result.status == 400
        assert check_error_body(result.body, [])["error"]["code"] == INVALID_REQUEST
        return
    assert result.status in POST_STATUSES, (result.status, result.body)
    if result.status >= 400:
        assert result.headers.get("content-type") == "application/json"
        check_error_body(result.body, request_ids)
    elif result.status == 202:
        assert result.body == b""
    elif result.headers.get("content-type") == "application/json":
        answer = check_outgoing_message(result.body)
        assert "method" not in answer, answer
        assert answer["id"] in request_ids, (answer, request_ids)
    else:
        assert result.headers.get("content-type") == "text/event-stream", result.headers
        events = [check_outgoing_message(data) for data in parse_sse(result.body)]
        answers = [event for event in events if "method" not in event]
        assert answers, "an SSE answer without any response"
        assert all(answer["id"] in request_ids for answer in answers), (answers, request_ids)


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    edges = [0, *points, len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)] or [b""]


def check_sessions_idle(app: McpHttpApp) -> None:
    for session in app.sessions:
        assert session.in_flight == frozenset(), "a request outlived its POST"


@FAST
@given(body=payloads, cuts=st.lists(st.integers(min_value=0), max_size=3))
def test_arbitrary_body_without_session(body: bytes, cuts: list[int]) -> None:
    app = new_app()

    async def scenario() -> None:
        result = await call_http(app, headers=GOOD_HEADERS, body_chunks=chunked(body, cuts))
        check_answer(result, body)
        check_sessions_idle(app)

    run_virtual(scenario)


@FAST
@given(
    message=mutated_messages(stateless=True) | valid_messages(stateless=True),
    mirror=st.booleans(),
    hang_up=st.booleans(),
)
def test_mutated_stateless_requests(message: Any, mirror: bool, hang_up: bool) -> None:
    app = new_app()
    body = json.dumps(message).encode()
    headers = GOOD_HEADERS + (mirrored_headers(message) if mirror else [])

    async def scenario() -> None:
        result = await call_http(
            app, headers=headers, body_chunks=[body], hang_up_after_body=hang_up
        )
        if not hang_up:
            check_answer(result, body)
        else:
            assert result.status is None or result.status < 500
        check_sessions_idle(app)

    run_virtual(scenario)


@FAST
@given(
    version=st.sampled_from(VERSIONS[:-1]),
    messages=st.lists(
        mutated_messages(stateless=False) | valid_messages(stateless=False), min_size=1, max_size=3
    ),
    version_header=st.none() | st.sampled_from([*VERSIONS, "1999-01-01", ""]),
    wrong_session=st.booleans(),
    hang_up=st.booleans(),
)
def test_mutated_messages_in_a_session(
    version: str,
    messages: list[Any],
    version_header: str | None,
    wrong_session: bool,
    hang_up: bool,
) -> None:
    app = new_app()

    async def scenario() -> None:
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        }
        opened = await call_http(
            app, headers=GOOD_HEADERS, body_chunks=[json.dumps(initialize).encode()]
        )
        assert opened.status == 200, opened.body
        assert check_outgoing_message(opened.body)["result"]["protocolVersion"] == version
        session_id = opened.headers["mcp-session-id"]
        headers = [
            *GOOD_HEADERS,
            ("mcp-session-id", "x" + session_id if wrong_session else session_id),
        ]
        if version_header is not None:
            headers.append(("mcp-protocol-version", version_header))
        for message in messages:
            body = json.dumps(message).encode()
            result = await call_http(
                app, headers=headers, body_chunks=[body], hang_up_after_body=hang_up
            )
            if hang_up:
                assert result.status is None or result.status < 500
                continue
            check_answer(result, body)
            if wrong_session:
                # A malformed body is refused before the session is looked up.
                assert result.status in (400, 404), result
        check_sessions_idle(app)
        app.close()
        assert app.session_count == 0

    run_virtual(scenario)


@FAST
@given(
    method=st.sampled_from(["POST", "POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"]),
    path=st.sampled_from(["/mcp", "/mcp/", "/", "/other"]),
    host=st.sampled_from(["127.0.0.1:8000", "localhost", "[::1]:1", "evil.example", ""]),
    origin=st.none() | st.sampled_from(["http://localhost:3000", "https://evil.example"]),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
    accept=st.sampled_from(
        [
            "application/json, text/event-stream",
            "*/*",
            "application/json",
            "text/event-stream",
            "",
        ]
    ),
    body=st.one_of(
        valid_messages(stateless=True).map(lambda m: json.dumps(m).encode()),
        st.binary(min_size=BODY_LIMIT + 1, max_size=BODY_LIMIT + 64),
    ),
    declare_length=st.booleans(),
)
def test_header_refusals(
    method: str,
    path: str,
    host: str,
    origin: str | None,
    content_type: str,
    accept: str,
    body: bytes,
    declare_length: bool,
) -> None:
    """Each refusal has its own status, checked in the order a server must apply them."""
    app = new_app()
    headers = [("host", host), ("content-type", content_type), ("accept", accept)]
    if origin is not None:
        headers.append(("origin", origin))
    if declare_length:
        headers.append(("content-length", str(len(body))))

    async def scenario() -> None:
        result = await call_http(app, method=method, path=path, headers=headers, body_chunks=[body])
        assert result.complete
        assert result.status is not None
        assert result.status < 500, (result.status, result.body)
        expected: int | None
        if host == "evil.example" or host == "":
            expected = 421
        elif origin == "https://evil.example":
            expected = 403
        elif path not in ("/mcp", "/mcp/"):
            expected = 404
        elif method not in ("POST", "GET", "DELETE"):
            expected = 405
        elif method in ("GET", "DELETE"):
            expected = 405  # no Mcp-Session-Id: there is no stream or session to address
        elif content_type.split(";")[0] != "application/json":
            expected = 415
        elif accept not in ("application/json, text/event-stream", "*/*"):
            expected = 406
        elif len(body) > BODY_LIMIT:
            expected = 413
        else:
            expected = None
        if expected is None:
            check_answer(result, body)
        else:
            assert result.status == expected, (result.status, result.body)
            check_error_body(result.body, [])
        check_sessions_idle(app)

    run_virtual(scenario)


# --- a few examples through hypercorn on a real socket -------------------------------------------


@settings(max_examples=12, deadline=None, database=None)
@given(
    bodies=st.lists(
        st.one_of(
            st.binary(max_size=64),
            json_values.map(lambda value: json.dumps(value).encode()),
            mutated_messages(stateless=True).map(lambda m: json.dumps(m).encode()),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_real_socket_bad_input(bodies: list[bytes]) -> None:
    app = new_app()

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            bound: BoundServer = await nursery.start(functools.partial(serve_http, app))
            async with httpx.AsyncClient() as client:
                for body in bodies:
                    response = await client.post(
                        bound.url, content=body, headers=dict(GOOD_HEADERS[1:])
                    )
                    result = HttpResult(
                        response.status_code, dict(response.headers), response.content, True
                    )
                    check_answer(result, body)
                # The server still works after all that.
                ok = await client.post(
                    bound.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": envelope()},
                    headers={
                        **dict(GOOD_HEADERS[1:]),
                        "mcp-protocol-version": "2026-07-28",
                        "mcp-method": "tools/list",
                    },
                )
                assert ok.status_code == 200
                assert [tool["name"] for tool in ok.json()["result"]["tools"]] == ["echo", "noop"]
            nursery.cancel_scope.cancel()

    trio.run(scenario)
