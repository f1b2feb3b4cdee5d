"""Bounded work per client on the proxy's face: an authenticated client (or another local user
holding the run's client bundle) floods sessions, requests, streams, WebSocket connections, slow
bodies and idle connections; each flood is bounded with a clear, typed refusal, and a new client
still gets served meanwhile. Real mutual TLS on 127.0.0.1 through the real proxy face.

Every local client of one run shares one client certificate (the run's bundle) or one bearer
token, so the bounds per client are bounds per proxy face.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
from pathlib import Path
from typing import Any

import httpx2
import mcp
import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.client.streamable_http import streamable_http_client

from tests.cli.cli_harness import (
    RunningCli,
    all_processes,
    descendants,
    free_port,
    listening_on,
    run_cli,
    start_cli,
    wait_all_gone,
)
from tests.mcp.asgi_harness import call_http
from tests.security.sessions_harness import (
    ACCEPT_BOTH,
    PER_SESSION,
    VERSION,
    Face,
    call_echo,
    mtls_face,
    open_session,
    post_initialize,
    refusal,
    rpc,
    sandbox_ports,
    session_headers,
    start_url_child,
    wait_for_sandboxes,
    wait_for_sleep,
)
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.mcp import (
    LIMIT_REACHED,
    HttpSettings,
    Implementation,
    McpError,
    McpHttpApp,
    McpServer,
    open_mcp_client,
)
from trio_sandbox.mcp.lowlevel import HttpRefusal
from trio_sandbox.mcp.server.http._sessions import HttpSession, SessionTable
from trio_sandbox.sandbox import UNAVAILABLE_META_KEY
from trio_sandbox.tls import load_client_ssl_context

EPHEMERAL_CHILD = Path(__file__).with_name("sessions_ephemeral_child.py")


async def _sdk_echo(face: Face, text: str) -> str:
    """The official MCP SDK as the next client: a session of its own, one call."""
    http = httpx2.AsyncClient(verify=face.chain.client_ssl_context(), timeout=30)
    async with (
        http,
        mcp.Client(streamable_http_client(face.url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool("one__echo", {"text": text})
        return "".join(getattr(item, "text", "") for item in result.content)


async def test_a_session_flood_does_not_keep_the_next_client_out() -> None:
    """Forty idle sessions against a table of eight: the least recently active ones make room,
    a new client (the official SDK) gets a session and works, and so does the flooder's own next
    initialize; the sessions that made room answer 404, which tells a client to initialize."""
    async with mtls_face(max_sessions=8) as face, face.client() as flooder:
        flood = [await open_session(flooder, face.url) for _ in range(40)]
        assert face.session_count == 8
        assert await _sdk_echo(face, "new client") == "one:echo:new client"
        assert face.session_count <= 8
        again = await open_session(flooder, face.url)
        assert await call_echo(flooder, face.url, again, "again") == "one:echo:again"
        oldest = await flooder.post(
            face.url, json=rpc(1, "ping"), headers=session_headers(flood[0])
        )
        assert oldest.status_code == 404
        assert "initialize again" in refusal(oldest)[2]
        assert face.session_count <= 8


async def test_sessions_holding_streams_make_room_for_a_new_one() -> None:
    """Every session holds a stream open (a flooder's cheapest way to pin them): a new session
    still gets in, in place of the least recently active one, whose stream ends."""
    async with (
        mtls_face(max_sessions=4) as face,
        face.client() as flooder,
        contextlib.AsyncExitStack() as streams,
    ):
        held = []
        for _ in range(4):
            session_id = await open_session(flooder, face.url)
            headers = {**session_headers(session_id), "accept": "text/event-stream"}
            stream = flooder.stream("GET", face.url, headers=headers)
            held.append(await streams.enter_async_context(stream))
        assert [response.status_code for response in held] == [200] * 4
        assert await _sdk_echo(face, "new client") == "one:echo:new client"
        with trio.fail_after(10):
            await held[0].aread()  # the oldest session ended, and its stream with it
        assert face.session_count <= 4


async def test_when_every_session_has_requests_in_flight_a_new_one_is_refused_clearly() -> None:
    """Nothing may be taken away while every session runs a request: a new session is refused
    with 503, Retry-After and a JSON-RPC error saying why; once a request ends, it is served."""
    async with mtls_face(max_sessions=4) as face, face.client() as flooder:
        face.holds.target = 4
        sessions = [await open_session(flooder, face.url) for _ in range(4)]

        async def hold(session_id: str) -> None:
            params = {"name": "one__hold", "arguments": {}}
            response = await flooder.post(
                face.url, json=rpc(5, "tools/call", params), headers=session_headers(session_id)
            )
            assert response.status_code == 200

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for session_id in sessions:
                    nursery.start_soon(hold, session_id)
                await face.holds.reached.wait()
                refused = await post_initialize(flooder, face.url)
                status, code, message = refusal(refused)
                assert (status, code) == (503, LIMIT_REACHED)
                assert "too many sessions: all 4 have requests in flight" in message
                assert refused.headers["retry-after"] == "1"
                face.holds.release.set()
        assert await _sdk_echo(face, "after") == "one:echo:after"


async def test_a_session_cannot_queue_unbounded_requests() -> None:
    """A session with the maximum of requests running gets 429 for one more; another session
    is served meanwhile, and the same session is served again once its requests end."""
    async with mtls_face() as face, face.client() as flooder:
        session_id = await open_session(flooder, face.url)
        ended: list[int] = []

        async def wait_call(request_id: int) -> None:
            params = {"name": "one__hold", "arguments": {}}
            response = await flooder.post(
                face.url,
                json=rpc(request_id, "tools/call", params),
                headers=session_headers(session_id),
            )
            ended.append(response.status_code)

        face.holds.target = PER_SESSION
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for request_id in range(PER_SESSION):
                    nursery.start_soon(wait_call, request_id + 100)
                await face.holds.reached.wait()
                one_more = await flooder.post(
                    face.url,
                    json=rpc(1, "tools/call", {"name": "one__echo", "arguments": {}}),
                    headers=session_headers(session_id),
                )
                status, code, message = refusal(one_more)
                assert (status, code) == (429, LIMIT_REACHED)
                assert f"at most {PER_SESSION}" in message
                assert one_more.headers["retry-after"] == "1"
                async with face.client() as other:
                    other_id = await open_session(other, face.url)
                    assert await call_echo(other, face.url, other_id, "b") == "one:echo:b"
                face.holds.release.set()
        assert ended == [200] * PER_SESSION
        assert await call_echo(flooder, face.url, session_id, "a") == "one:echo:a"


async def test_the_face_bounds_its_requests_in_flight_across_sessions() -> None:
    """Sessions each under their own bound still meet the face's: a request beyond it is refused
    with 503 (stateless-era ones too), and served once the others end."""
    async with mtls_face(max_requests_in_flight=4) as face, face.client() as flooder:
        face.holds.target = 4
        sessions = [await open_session(flooder, face.url) for _ in range(3)]

        async def hold(session_id: str, request_id: int) -> None:
            params = {"name": "one__hold", "arguments": {}}
            response = await flooder.post(
                face.url,
                json=rpc(request_id, "tools/call", params),
                headers=session_headers(session_id),
            )
            assert response.status_code == 200

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for request_id, session_id in enumerate([sessions[0]] * 2 + [sessions[1]] * 2):
                    nursery.start_soon(hold, session_id, request_id + 10)
                await face.holds.reached.wait()
                refused = await flooder.post(
                    face.url,
                    json=rpc(1, "tools/call", {"name": "one__echo", "arguments": {}}),
                    headers=session_headers(sessions[2]),
                )
                status, code, message = refusal(refused)
                assert (status, code) == (503, LIMIT_REACHED)
                assert "this server runs at most 4 at once" in message
                context = face.chain.client_ssl_context()
                with pytest.raises(McpError, match="this server runs at most 4") as stateless:
                    async with open_mcp_client(
                        face.url, ssl_context=context, protocol_version="2026-07-28"
                    ) as client:
                        await client.call_tool("one__echo", {"text": "s"})
                assert stateless.value.code == LIMIT_REACHED
                face.holds.release.set()
        assert await call_echo(flooder, face.url, sessions[2], "after") == "one:echo:after"


async def test_a_stream_has_one_reader_at_a_time() -> None:
    """A newer GET of a stream (standalone, or resumed by Last-Event-ID) ends the older reader's
    response: a session holds one reader per stream however many GETs its client sends, and a
    client that reconnects before its old connection was seen to end is served."""
    async with mtls_face() as face, face.client() as client:
        session_id = await open_session(client, face.url)
        headers = {**session_headers(session_id), "accept": "text/event-stream"}
        with trio.fail_after(10):
            async with contextlib.AsyncExitStack() as readers:
                responses = []
                for extra in ({}, {"last-event-id": "0:0"}, {}):
                    stream = client.stream("GET", face.url, headers={**headers, **extra})
                    responses.append(await readers.enter_async_context(stream))
                assert [response.status_code for response in responses] == [200] * 3
                for older in responses[:2]:
                    await older.aread()  # ends: a newer reader took the stream
                assert await call_echo(client, face.url, session_id, "x") == "one:echo:x"
                assert not responses[2].is_stream_consumed


async def test_a_batch_larger_than_the_bound_is_refused_whole() -> None:
    """A 2025-03-26 batch of more requests than a session may run is refused before any runs."""
    async with mtls_face() as face, face.client() as client:
        params = {
            "protocolVersion": "2025-03-26",
            "capabilities": {},
            "clientInfo": {"name": "batch", "version": "1"},
        }
        headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
        opened = await client.post(face.url, json=rpc(0, "initialize", params), headers=headers)
        session_id = opened.headers["mcp-session-id"]
        batch_headers = {**session_headers(session_id), "mcp-protocol-version": "2025-03-26"}
        echo = {"name": "one__echo", "arguments": {"text": "x"}}
        batch = [rpc(i, "tools/call", echo) for i in range(PER_SESSION + 1)]
        refused = await client.post(face.url, json=batch, headers=batch_headers)
        assert refusal(refused)[:2] == (429, LIMIT_REACHED)
        assert face.holds.started == 0
        ok = await client.post(face.url, json=batch[:2], headers=batch_headers)
        assert ok.status_code == 200
        assert face.holds.started == 2


# ---- WebSocket -------------------------------------------------------------------------------


def _ws_url(face: Face) -> str:
    return face.url.replace("https://", "wss://")


async def test_websocket_connections_are_bounded_with_a_clear_refusal() -> None:
    """Beyond the maximum of WebSocket connections the upgrade is refused with 503 and a JSON-RPC
    error body; once one closes, a new one is served."""
    async with mtls_face(max_websockets=2) as face:
        context = face.chain.client_ssl_context()

        def connect() -> Any:
            return trio_websocket.open_websocket_url(
                _ws_url(face), context, subprotocols=["mcp"], connect_timeout=10
            )

        upgrade = {
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-protocol": "mcp",
        }
        async with connect(), connect() as second, face.client() as http:
            refused = await http.get(face.url, headers=upgrade)
            status, code, message = refusal(refused)
            assert (status, code) == (503, LIMIT_REACHED)
            assert "too many WebSocket connections" in message
            await second.aclose()
            async with open_mcp_client(_ws_url(face), ssl_context=context) as client:
                result = await client.call_tool("one__echo", {"text": "ws"})
                assert result.text_content == "one:echo:ws"


async def test_a_websocket_session_cannot_queue_unbounded_requests() -> None:
    """Requests beyond the bound on one WebSocket are answered with an error at once; the
    connection goes on, and serves again once its requests end."""
    async with mtls_face() as face:
        context = face.chain.client_ssl_context()
        async with trio_websocket.open_websocket_url(
            _ws_url(face), context, subprotocols=["mcp"], connect_timeout=10
        ) as ws:
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
            init["clientInfo"] = {"name": "ws", "version": "1"}
            await ws.send_message(json.dumps(rpc(0, "initialize", init)))
            assert json.loads(await ws.get_message())["id"] == 0
            await ws.send_message(
                json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
            )
            wait = {"name": "one__hold", "arguments": {}}
            for request_id in range(1, PER_SESSION + 4):
                await ws.send_message(json.dumps(rpc(request_id, "tools/call", wait)))
            refused = [json.loads(await ws.get_message()) for _ in range(3)]
            assert [answer["error"]["code"] for answer in refused] == [LIMIT_REACHED] * 3
            assert "too many requests in flight" in refused[0]["error"]["message"]
            face.holds.release.set()
            finished = [json.loads(await ws.get_message()) for _ in range(PER_SESSION)]
            assert all("result" in answer for answer in finished)
            echo = {"name": "one__echo", "arguments": {"text": "after"}}
            await ws.send_message(json.dumps(rpc(999, "tools/call", echo)))
            answer = json.loads(await ws.get_message())
            assert answer["result"]["content"][0]["text"] == "one:echo:after"


# ---- slow and silent peers -----------------------------------------------------------------


async def _tls_stream(face: Face, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    port = int(face.url.rsplit(":", 1)[1].split("/")[0])
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    await stream.do_handshake()
    return stream


async def _read_until_closed(stream: trio.abc.Stream) -> bytes:
    data = b""
    with contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            data += chunk
    return data


async def test_a_body_that_trickles_in_is_refused_and_the_next_request_served() -> None:
    async with mtls_face(body_timeout=1.0) as face, face.client() as client:
        stream = await _tls_stream(face, face.chain.client_ssl_context())
        head = (
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Accept: {ACCEPT_BOTH}\r\nContent-Length: 100\r\n\r\n"
        )
        async with stream:
            await stream.send_all(head.encode() + b'{"jsonrpc":')
            with trio.fail_after(10):
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                    reply += await stream.receive_some()
        assert reply.startswith(b"HTTP/1.1 408")
        body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert "did not arrive within 1 s" in body["error"]["message"]
        session_id = await open_session(client, face.url)
        assert await call_echo(client, face.url, session_id, "next") == "one:echo:next"


async def test_silent_and_slow_connections_are_closed_while_a_client_is_served() -> None:
    """Fifty connections that never start TLS, and one that sends its request head a byte at a
    time: the face closes each within its bound (10 s for a handshake, 5 s for a request head),
    and serves a real client meanwhile."""
    async with mtls_face() as face, face.client() as client:
        port = int(face.url.rsplit(":", 1)[1].split("/")[0])
        silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(50)]
        slow = await _tls_stream(face, face.chain.client_ssl_context())
        closed_after: dict[str, float] = {}
        start = trio.current_time()

        async def trickle() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for byte in b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60:
                    await slow.send_all(bytes([byte]))
                    await trio.sleep(0.25)
            closed_after["slow"] = trio.current_time() - start

        async def wait_closed(name: str, stream: trio.abc.Stream) -> None:
            await _read_until_closed(stream)
            closed_after[name] = trio.current_time() - start

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                nursery.start_soon(wait_closed, "slow-read", slow)
                for index, tcp in enumerate(silent):
                    nursery.start_soon(wait_closed, f"silent-{index}", tcp)
                session_id = await open_session(client, face.url)
                assert await call_echo(client, face.url, session_id, "meanwhile") == (
                    "one:echo:meanwhile"
                )
        assert closed_after["slow-read"] < 8
        assert max(closed_after[f"silent-{i}"] for i in range(50)) < 13
        for tcp in silent:
            await tcp.aclose()
        with contextlib.suppress(trio.BrokenResourceError):
            await slow.aclose()
        assert await call_echo(client, face.url, session_id, "after") == "one:echo:after"


# ---- idle sessions, in virtual time ------------------------------------------------------------


def _server() -> McpServer:
    return McpServer(Implementation("idle", "1"))


async def _initialize(app: McpHttpApp) -> str:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
    params["clientInfo"] = {"name": "idle", "version": "1"}
    result = await call_http(
        app,
        headers=[
            ("host", "127.0.0.1"),
            ("content-type", "application/json"),
            ("accept", ACCEPT_BOTH),
        ],
        body_chunks=[json.dumps(rpc(0, "initialize", params)).encode()],
    )
    assert result.status == 200, result.body
    return result.headers["mcp-session-id"]


async def _ping(app: McpHttpApp, session_id: str) -> int | None:
    headers = [("host", "127.0.0.1"), *session_headers(session_id).items()]
    result = await call_http(
        app, headers=headers, body_chunks=[json.dumps(rpc(1, "ping")).encode()]
    )
    return result.status


async def test_idle_sessions_end_after_ten_minutes_busy_ones_do_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The default idle timeout is ten minutes: a session idle for longer ends (404), one used
    meanwhile lives on, and one with a stream open is never ended for idling."""
    app = McpHttpApp(_server())
    assert app.settings.session_idle_timeout == 600.0
    idle, used, streaming = [await _initialize(app) for _ in range(3)]
    stream_open = trio.Event()

    async def hold_stream(cancel: trio.CancelScope) -> None:
        headers = [("host", "127.0.0.1"), *session_headers(streaming).items()]
        headers.append(("accept", "text/event-stream"))
        with cancel:
            stream_open.set()
            await call_http(app, method="GET", headers=headers)

    async with trio.open_nursery() as nursery:
        cancel = trio.CancelScope()
        nursery.start_soon(hold_stream, cancel)
        await stream_open.wait()
        await trio.sleep(400)
        assert await _ping(app, used) == 200
        await trio.sleep(300)  # idle: 700 s; used: 300 s; streaming: a stream open all along
        assert await _ping(app, idle) == 404
        assert await _ping(app, used) == 200
        assert await _ping(app, streaming) == 200
        assert app.session_count == 2
        cancel.cancel()
    await trio.sleep(601)
    assert await _ping(app, streaming) == 404  # idle since its stream ended
    assert app.session_count == 0


# ---- ephemeral mode: sandboxes per proxy, real bubblewrap, both users ---------------------------


def _text(result: Any) -> str:
    return "".join(getattr(item, "text", "") for item in result.content)


async def test_ephemeral_sandboxes_are_bounded_per_proxy(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """``run --mode ephemeral --max-sandboxes 2``: a third session's sandbox takes the place of
    the least recently used idle one; while both have calls running, a session gets a clear
    tool error (and the next call, once one ended, works); the sandboxes of ended sessions stop
    at once; nothing is left after Ctrl-C. Real bubblewrap, as root and as an ordinary user."""
    port = free_port()
    bundle = workspace / "bundle"
    args = ["run", "--mode", "ephemeral", "--max-sandboxes", "2", "--warm-spares", "0"]
    args += ["--listen", f"127.0.0.1:{port}", "--client-cert-dir", str(bundle)]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(args, home=workspace, user=sandbox_user)
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            await running.wait_for("client certificate bundle")
            url = (await running.wait_for(r"proxy listening at (\S+)"))[1]
            context = load_client_ssl_context(bundle)
            shared = sandbox_ports(process.pid)
            assert len(shared) == 1  # the open_sandbox call's own

            def client() -> Any:
                return open_mcp_client(url, ssl_context=context, protocol_version=VERSION)

            async with client() as a, client() as b, client() as c:
                for name, session in (("a", a), ("b", b)):
                    result = await session.call_tool("run_command", {"command": f"echo {name}"})
                    assert _text(result).startswith(name)
                assert len(sandbox_ports(process.pid) - shared) == 2
                # c's sandbox takes the place of a's (the least recently used, idle).
                result = await c.call_tool("run_command", {"command": "echo c"})
                assert _text(result).startswith("c")
                assert len(sandbox_ports(process.pid) - shared) == 2
                # a comes back: b's sandbox is now the least recently used idle one.
                result = await a.call_tool("run_command", {"command": "echo a-again"})
                assert _text(result).startswith("a-again")
                assert len(sandbox_ports(process.pid) - shared) == 2

                # Both sandboxes busy: b is refused clearly, and served once a call ended.
                async def busy(session: Any, marker: str) -> None:
                    done = await session.call_tool("run_command", {"command": f"sleep {marker}"})
                    assert not done.is_error, _text(done)

                async with trio.open_nursery() as calls:
                    calls.start_soon(busy, a, "3.101")
                    calls.start_soon(busy, c, "3.202")
                    await wait_for_sleep(process.pid, "3.101")
                    await wait_for_sleep(process.pid, "3.202")
                    refused = await b.call_tool("run_command", {"command": "echo b"})
                    assert refused.is_error
                    assert "max_sandboxes" in _text(refused)
                    assert "retry when one ends" in _text(refused)
                    assert (refused.meta or {}).get(UNAVAILABLE_META_KEY) is True
                    assert len(sandbox_ports(process.pid) - shared) == 2
                result = await b.call_tool("run_command", {"command": "echo b-served"})
                assert _text(result).startswith("b-served")
                assert len(sandbox_ports(process.pid) - shared) == 2
            # The sessions ended (DELETE): their sandboxes stop at once (bwrap stops in ~50 ms).
            await wait_for_sandboxes(process.pid, shared, within=5)
            below = descendants(process.pid)
            os.kill(process.pid, signal.SIGINT)
    assert process.returncode == 0, "\n".join(running.lines)
    assert await wait_all_gone(below) == []
    assert [info for info in all_processes() if info.pgid == process.pid] == []
    assert not listening_on(port)
    assert "Traceback" not in "\n".join(running.lines)


async def test_a_session_the_table_ends_for_a_new_one_has_its_sandbox_stopped_at_once(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """The face holds two sessions: a third one ends the least recently active idle session,
    whose sandbox stops at once; the new session is served. Real bubblewrap, both users."""
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            started: tuple[trio.Process, str, int] = await nursery.start(
                start_url_child, sandbox_user, [str(EPHEMERAL_CHILD)], workspace
            )
            process, url, writer = started
            shared = sandbox_ports(process.pid)

            def client() -> Any:
                return open_mcp_client(url, protocol_version=VERSION)

            async with client() as a, client() as b:
                await a.call_tool("run_command", {"command": "echo a"})
                a_port = sandbox_ports(process.pid) - shared
                await b.call_tool("run_command", {"command": "echo b"})
                b_port = sandbox_ports(process.pid) - shared - a_port
                assert len(a_port) == len(b_port) == 1
                async with client() as c:  # a's session ends for c's, and a's sandbox stops
                    await wait_for_sandboxes(process.pid, shared | b_port, within=5)
                    result = await c.call_tool("run_command", {"command": "echo c"})
                    assert _text(result).startswith("c")
            await wait_for_sandboxes(process.pid, shared, within=5)
            below = descendants(process.pid)
            os.close(writer)  # the child's stdin ends: it stops
    assert process.returncode == 0
    assert await wait_all_gone(below) == []


@pytest.mark.parametrize(
    ("config", "argv", "expected"),
    [
        (None, ["run", "--max-sandboxes", "0"], "max_sandboxes must be positive, not 0"),
        (None, ["run", "--max-sandboxes", "many"], "argument --max-sandboxes: invalid int"),
        ("max_sandboxes = -2\n", ["run"], "max_sandboxes must be positive, not -2"),
        ('max_sandboxes = "8"\n', ["run"], "config key 'max_sandboxes': expected a whole number"),
    ],
    ids=["option-zero", "option-not-a-number", "config-negative", "config-string"],
)
async def test_a_bad_bound_on_sandboxes_is_a_usage_error(
    tmp_path: Path, config: str | None, argv: list[str], expected: str
) -> None:
    """The bound cannot be switched off or mistyped into something else: exit 2, one clear
    message, nothing started."""
    if config is not None:
        config_file = tmp_path / "trio-sandbox.toml"
        config_file.write_text(config)
        argv = [argv[0], "--config", str(config_file), *argv[1:]]
    done = await run_cli(argv, home=tmp_path, limit=15)
    assert (done.returncode, done.stdout) == (2, "")
    assert "Traceback" not in done.stderr
    assert expected in done.stderr.strip().splitlines()[-1], done.stderr


# ---- the session table's choices, as a property ------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.just(0)),
        st.tuples(
            st.sampled_from(["touch", "request", "done", "stream", "unstream"]), st.integers(0, 5)
        ),
        st.tuples(st.just("wait"), st.integers(1, 8)),
    ),
    max_size=60,
)


@given(ops=_OPS)
@settings(max_examples=200, deadline=None)
def test_the_session_table_ends_only_what_it_may(ops: list[tuple[str, int]]) -> None:
    """Whatever a client does: the table never holds more than its maximum; a new session is
    refused only when every session has requests in flight; it takes the place of the least
    recently active idle session, else of the least recently active one that only reads a
    stream; a session with requests in flight is never ended; idle ones end after the timeout."""
    limit, timeout = 3, 10.0
    table = SessionTable(
        McpServer(Implementation("t", "1")),
        HttpSettings(max_sessions=limit, session_idle_timeout=timeout),
    )
    clock = trio.testing.MockClock()

    async def run() -> None:
        live: list[HttpSession] = []  # the model: least recently active first
        for op, index in ops:
            now = trio.current_time()
            # What may expire before any open: idle and older than the timeout.
            if op == "wait":
                clock.jump(index)
                continue
            if op == "open":
                table.expire_idle()
                expired = [s for s in live if not s.busy and now - s.last_active > timeout]
                assert all(s.core.closed for s in expired)
                live = [s for s in live if s not in expired]
                idle = [s for s in live if not s.busy] or [s for s in live if not s.requests.used]
                if len(live) >= limit and not idle:
                    with pytest.raises(HttpRefusal) as refused:
                        table.open()
                    assert refused.value.status == 503
                    continue
                live.append(table.open())
                if len(live) > limit:
                    live.remove(idle[0])
                    assert idle[0].core.closed
            elif live:
                session = live[index % len(live)]
                if op == "touch":
                    table.touch(session)
                    live.remove(session)
                    live.append(session)
                elif op == "request":
                    session.requests.used += 1
                elif op == "done" and session.requests.used:
                    session.requests.used -= 1
                elif op == "stream":
                    session.tailing[str(index)] = trio.CancelScope()
                elif op == "unstream":
                    session.tailing.clear()
            assert len(table) == len(live) <= limit
            assert all(not s.core.closed for s in live)

    trio.run(run, clock=clock)
