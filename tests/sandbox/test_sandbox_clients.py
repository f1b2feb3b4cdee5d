"""One sandbox per client in every era: stateless-era (2026-07-28) requests get their client's
sandbox, keyed by the identity the face authenticated (client certificate, bearer token) or by a
sandbox handle the proxy issued to that identity; ``Sandbox.session()`` gives a call site a
sandbox of its own. Real mutual TLS and HTTP on 127.0.0.1 through the real proxy face; fake
in-process sandboxes (the real ones: tests/security/test_security_clients.py)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from tests.sandbox.sandbox_fakes import FakeLauncher
from trio_sandbox.mcp import INVALID_PARAMS, ClientIdentity, IdentityKind, McpError, open_mcp_client
from trio_sandbox.mcp.server.http._hypercorn import _with_peer_identity
from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import (
    HANDLE_META_KEY,
    HANDLE_RESOURCE,
    Sandbox,
    SandboxConfig,
    SandboxHandleError,
    SandboxHandleRefused,
    SandboxMode,
    open_sandbox,
    parse_handle,
)
from trio_sandbox.sandbox._handles import HandleIssuer, SandboxHandle
from trio_sandbox.tls import CertificateChain, MtlsIdentity
from trio_sandbox.tls._x509 import LeafRole, issue_leaves

STATELESS = "2026-07-28"
HANDSHAKE = "2025-11-25"
EPHEMERAL = SandboxConfig(mode=SandboxMode.EPHEMERAL)


@attrs.frozen
class TwoClients:
    """A proxy chain whose CA signed two client certificates (two identities)."""

    chain: CertificateChain
    other: MtlsIdentity

    def context(self, which: str) -> ssl.SSLContext:
        identity = self.chain.client if which == "a" else self.other
        return identity.client_ssl_context(self.chain.ca_cert_pem())

    async def echo(self, url: str, which: str, version: str = STATELESS, text: str = "") -> int:
        """One echo call of client ``which`` on a connection of its own: its sandbox's number."""
        async with open_mcp_client(
            url, ssl_context=self.context(which), protocol_version=version
        ) as client:
            result = await client.call_tool("echo", {"text": text})
            assert not result.is_error, result.text_content
            return _generation(result.text_content)


def two_clients() -> TwoClients:
    server, a, b = issue_leaves(
        ca_common_name="test proxy CA",
        leaves=[
            (LeafRole.SERVER, "127.0.0.1", ("localhost", "127.0.0.1")),
            (LeafRole.CLIENT, "client a", ()),
            (LeafRole.CLIENT, "client b", ()),
        ],
    )
    chain = CertificateChain(server=MtlsIdentity(server), client=MtlsIdentity(a))
    return TwoClients(chain, MtlsIdentity(b))


@asynccontextmanager
async def mtls_sandbox(
    config: SandboxConfig = EPHEMERAL,
) -> AsyncIterator[tuple[TwoClients, FakeLauncher, Sandbox]]:
    """An ephemeral-mode sandbox (fake sandboxes) behind a mutual-TLS face with two clients."""
    clients = two_clients()
    launcher = FakeLauncher()
    with trio.fail_after(30):
        async with open_sandbox(
            config, face=HttpFace(chain=clients.chain), launcher=launcher
        ) as sandbox:
            yield clients, launcher, sandbox


def _generation(text: str) -> int:
    return int(text.rsplit(" ", 1)[1])


async def test_stateless_clients_with_different_certificates_get_different_sandboxes() -> None:
    async with mtls_sandbox() as (clients, launcher, sb):
        url = sb.proxy_url
        a1 = await clients.echo(url, "a")
        b1 = await clients.echo(url, "b")
        assert a1 != b1
        assert {a1, b1}.isdisjoint({1})  # neither is the open_sandbox call's own
        # A new connection of the same identity finds its sandbox again.
        assert await clients.echo(url, "a") == a1
        assert await clients.echo(url, "b") == b1
        assert sb.session_sandboxes == 2
        # The embedder (no identity) keeps the open_sandbox call's sandbox.
        mine = await sb.call_tool("echo", {"text": "me"})
        assert _generation(mine.text_content) == 1
        assert len(launcher.generations) == 3


async def test_websocket_connections_are_sessions_and_carry_their_identity() -> None:
    """Over WSS too: a handshake-era connection is a session with a sandbox of its own; a
    stateless-era request on a connection gets its identity's sandbox, the same on any of that
    identity's connections, never another identity's."""
    async with mtls_sandbox() as (clients, _launcher, sb):
        wss = sb.proxy_url.replace("https://", "wss://")
        handshake = {
            await clients.echo(wss, "a", HANDSHAKE),
            await clients.echo(wss, "b", HANDSHAKE),
        }
        assert len(handshake) == 2
        assert 1 not in handshake
        a = await clients.echo(wss, "a")
        assert await clients.echo(wss, "a") == a
        b = await clients.echo(wss, "b")
        assert len({1, a, b, *handshake}) == 5


async def test_a_token_face_keys_by_the_token_and_no_identity_shares_the_main_sandbox() -> None:
    """Every client of a token face holds the one token: one identity, one sandbox (not the
    anonymous one); a plain-HTTP face authenticates no one: its stateless clients share the
    open_sandbox call's sandbox, the documented rule for a face without identities."""
    launcher = FakeLauncher()
    chain = CertificateChain.generate()
    face = HttpFace(chain=chain, token="t" * 32)
    headers = {"Authorization": "Bearer " + "t" * 32}
    context = ssl.create_default_context(cadata=chain.ca_cert_pem())
    with trio.fail_after(30):
        async with open_sandbox(EPHEMERAL, face=face, launcher=launcher) as sb:
            seen = set()
            for text in ("x", "y"):
                async with open_mcp_client(
                    sb.proxy_url, ssl_context=context, headers=headers, protocol_version=STATELESS
                ) as client:
                    result = await client.call_tool("echo", {"text": text})
                    seen.add(_generation(result.text_content))
            assert seen == {2}
    launcher = FakeLauncher()
    with trio.fail_after(30):
        async with open_sandbox(EPHEMERAL, face=HttpFace(plain=True), launcher=launcher) as sb:
            for text in ("x", "y"):
                async with open_mcp_client(sb.proxy_url, protocol_version=STATELESS) as client:
                    result = await client.call_tool("echo", {"text": text})
                    assert _generation(result.text_content) == 1
            assert len(launcher.generations) == 1
            # Handles still keep one sandbox apart from another, for the anonymous client too.
            async with open_mcp_client(sb.proxy_url, protocol_version=STATELESS) as client:
                handles = []
                for _ in range(2):
                    (contents,) = await client.read_resource(HANDLE_RESOURCE)
                    assert contents.text is not None
                    handles.append({HANDLE_META_KEY: contents.text})
                first = await client.call_tool("echo", {}, meta=handles[0])
                second = await client.call_tool("echo", {}, meta=handles[1])
                assert {_generation(first.text_content), _generation(second.text_content)} == {
                    2,
                    3,
                }
            async with open_mcp_client(sb.proxy_url, protocol_version=STATELESS) as other:
                again = await other.call_tool("echo", {}, meta=handles[0])
                assert again.text_content == first.text_content


async def test_a_handle_names_a_sandbox_of_its_own_for_its_identity_only() -> None:
    async with mtls_sandbox() as (clients, launcher, sb):
        url = sb.proxy_url
        async with (
            open_mcp_client(url, ssl_context=clients.context("a"), protocol_version=STATELESS) as a,
            open_mcp_client(url, ssl_context=clients.context("b"), protocol_version=STATELESS) as b,
        ):
            own = _generation((await a.call_tool("echo", {"text": "own"})).text_content)
            (contents,) = await a.read_resource(HANDLE_RESOURCE)
            handle = contents.text
            assert handle is not None
            assert handle.startswith("sbx1.")
            meta = {HANDLE_META_KEY: handle}
            first = await a.call_tool("echo", {"text": "h"}, meta=meta)
            in_handle = _generation(first.text_content)
            assert in_handle not in (1, own)
            again = await a.call_tool("echo", {"text": "h2"}, meta=meta)
            assert _generation(again.text_content) == in_handle
            count = len(launcher.generations)
            # Another identity holding the handle is refused; nothing is started for it.
            with pytest.raises(McpError) as refused:
                await b.call_tool("echo", {"text": "stolen"}, meta=meta)
            assert refused.value.code == INVALID_PARAMS
            assert refused.value.data == {"sandboxHandle": "refused"}
            assert "not issued to this client" in refused.value.message
            with pytest.raises(McpError) as malformed:
                await b.call_tool("echo", {"text": "bad"}, meta={HANDLE_META_KEY: "sbx1.x"})
            assert malformed.value.data == {"sandboxHandle": "malformed"}
            assert len(launcher.generations) == count
        # The handle is the proxy's business: no sandbox ever saw it.
        seen = [meta for generation in launcher.generations for meta in generation.call_meta]
        assert len(seen) == 3
        assert all(HANDLE_META_KEY not in meta for meta in seen)


async def test_a_handshake_session_id_presented_by_another_identity_is_not_found() -> None:
    """The spec's session hijacking guidance: a session id is bound to its client's identity."""
    async with mtls_sandbox() as (clients, _launcher, sb):
        accept = {"accept": "application/json, text/event-stream"}
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": HANDSHAKE, "capabilities": {}},
        }
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        async with (
            httpx.AsyncClient(verify=clients.context("a")) as a,
            httpx.AsyncClient(verify=clients.context("b")) as b,
        ):
            opened = await a.post(sb.proxy_url, json=initialize, headers=accept)
            assert opened.status_code == 200
            session = {**accept, "mcp-session-id": opened.headers["mcp-session-id"]}
            session["mcp-protocol-version"] = HANDSHAKE
            stolen = await b.post(sb.proxy_url, json=ping, headers=session)
            assert stolen.status_code == 404
            assert "session not found" in stolen.text
            deleted = await b.delete(sb.proxy_url, headers=session)
            assert deleted.status_code == 404
            # The owner is still served, its session alive.
            owned = await a.post(sb.proxy_url, json=ping, headers=session)
            assert owned.status_code == 200


async def test_identity_sandboxes_idle_out_and_count_against_max_sandboxes() -> None:
    config = SandboxConfig(mode=SandboxMode.EPHEMERAL, max_sandboxes=1, ephemeral_idle_timeout=0.5)
    async with mtls_sandbox(config) as (clients, launcher, sb):
        a = await clients.echo(sb.proxy_url, "a")
        b = await clients.echo(
            sb.proxy_url, "b"
        )  # takes the place of a's (max_sandboxes=1, a's is idle)
        assert b != a
        await launcher.generations[a - 1].stopped.wait()
        assert sb.session_sandboxes == 1
        await launcher.generations[b - 1].stopped.wait()  # idled out
        assert sb.session_sandboxes == 0
        assert await clients.echo(sb.proxy_url, "b") not in (a, b)  # a fresh one


@pytest.mark.parametrize("mode", [SandboxMode.EPHEMERAL, SandboxMode.PERSISTENT])
async def test_sandbox_session_gives_a_call_site_its_own_sandbox(mode: SandboxMode) -> None:
    launcher = FakeLauncher()
    config = SandboxConfig(mode=mode)
    with trio.fail_after(30):
        async with open_sandbox(config, face=HttpFace(plain=True), launcher=launcher) as sb:
            async with sb.session() as one, sb.session() as two:
                g1 = _generation((await one.call_tool("echo", {"text": "1"})).text_content)
                g2 = _generation((await two.call_tool("echo", {"text": "2"})).text_content)
                assert len({1, g1, g2}) == 3
                assert _generation((await one.call_tool("echo", {})).text_content) == g1
                assert _generation((await sb.call_tool("echo", {})).text_content) == 1
                assert sb.session_sandboxes == 2
                assert [t.name for t in await one.list_tools()]
            # Leaving the blocks stopped both at once.
            assert launcher.generations[g1 - 1].stopped.is_set()
            assert launcher.generations[g2 - 1].stopped.is_set()
            assert sb.session_sandboxes == 0


def test_identities_are_digests_of_their_credentials() -> None:
    token = ClientIdentity.of_token("secret-token-value")
    assert token == ClientIdentity.of_token("secret-token-value")
    assert token != ClientIdentity.of_token("secret-token-valuf")
    assert token.kind is IdentityKind.TOKEN
    assert "secret" not in repr(token)
    assert "secret" not in token.key
    cert = ClientIdentity.of_certificate(b"\x30\x03\x02\x01\x01")
    assert cert.key.startswith("certificate:")
    assert len(cert.digest) == 64


_HANDLE_ALPHABET = st.sampled_from("ABCxyz0189-_.=+/ \n\x00é")


def _parsed(value: object) -> SandboxHandle | SandboxHandleError:
    try:
        return parse_handle(value)
    except SandboxHandleError as exc:
        return exc


@given(
    st.one_of(
        st.text(_HANDLE_ALPHABET, max_size=60),
        st.text(max_size=60),
        st.from_regex(r"sbx1\.[A-Za-z0-9_=-]{20,23}\.[A-Za-z0-9_-]{21,23}", fullmatch=True),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
@example("sbx1." + "A" * 22 + "." + "A" * 22)
@example("sbx1." + "A" * 21 + "B." + "A" * 22)  # a non-canonical spelling of 16 bytes
@example("sbx2." + "A" * 22 + "." + "A" * 22)
@example("\U00010000" * 40)  # ten characters each once escaped
def test_the_handle_parser_refuses_what_is_not_a_handle(value: object) -> None:
    """Whatever a client puts in the handle's place, the parser gives a handle or a clear
    SandboxHandleError (never another exception); what it accepts formats back the same."""
    outcome = _parsed(value)
    if isinstance(outcome, SandboxHandleError):
        assert outcome.code == INVALID_PARAMS
        assert outcome.data == {"sandboxHandle": "malformed"}
        assert "handle" in outcome.message
        assert len(outcome.message) < 300  # bounded, whatever was sent
    else:
        assert outcome.format() == value
        assert len(outcome.nonce) == len(outcome.tag) == 16


@given(st.integers(min_value=0, max_value=48), st.sampled_from("AQgw_-9"))
def test_an_issued_handle_works_for_its_identity_only_and_any_change_breaks_it(
    position: int, replacement: str
) -> None:
    issuer = HandleIssuer()
    a = ClientIdentity.of_certificate(b"a")
    b = ClientIdentity.of_certificate(b"b")
    handle = issuer.issue(a)
    key = issuer.sandbox_key(handle, a)
    assert issuer.sandbox_key(handle, a) == key
    with pytest.raises(SandboxHandleRefused):
        issuer.sandbox_key(handle, b)
    with pytest.raises(SandboxHandleRefused):
        issuer.sandbox_key(handle, None)
    with pytest.raises(SandboxHandleRefused):
        HandleIssuer().sandbox_key(handle, a)  # another proxy's key
    changed = handle[:position] + replacement + handle[position + 1 :]
    if changed != handle:
        with pytest.raises(SandboxHandleError):
            issuer.sandbox_key(changed, a)


async def test_a_request_whose_certificate_was_not_seen_is_refused_not_served_as_nobody() -> None:
    """Fail closed: on a face that requires client certificates, a request for which the TLS
    handshake's certificate did not reach the app (were hypercorn to change how it spawns a
    connection's requests) gets 500, never the anonymous client's sandbox."""
    served: list[object] = []
    sent: list[MutableMapping[str, Any]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        served.append(scope)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> MutableMapping[str, Any]:
        raise AssertionError("not read")

    guarded = _with_peer_identity(app, required=True)
    await guarded({"type": "http", "headers": []}, receive, send)
    assert served == []
    assert sent[0]["status"] == 500
    # A face that does not require certificates serves the request as nobody's.
    await _with_peer_identity(app, required=False)({"type": "http", "headers": []}, receive, send)
    assert len(served) == 1
