"""Secrets never reach the agent: attacks by a prompt-injected model and by a malicious MCP server
behind the proxy, and by code in the sandbox, on every channel the proxy has towards a client.

The upstreams are real MCP servers on 127.0.0.1 (Streamable HTTP) that put their secrets on every
channel (see ``redaction_upstreams``); the client records every message the proxy sends it. The
sandbox cases run the real warden, bubblewrap and tool server, as root and as an ordinary user
(``redaction_child.py`` embeds ``open_sandbox`` as that user).
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.proxy_harness import http_served, proxy_running
from tests.security.redaction_upstreams import (
    GENERIC_VALUE,
    OTHER_TOKEN,
    VAULT_TOKEN,
    Seen,
    Wire,
    leaky_server,
    recording_client,
)
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.mcp import (
    CallToolResult,
    Implementation,
    McpClient,
    McpError,
    McpServer,
    RequestContext,
    open_mcp_client,
)
from trio_sandbox.proxy import (
    HttpFace,
    HttpUpstream,
    InProcessUpstream,
    OutputGuard,
    OutputLimits,
    ProxyHandle,
    StdioUpstream,
    exposed_name,
)
from trio_sandbox.redact import PLACEHOLDER, SecretRedactor, default_rules

HANDSHAKE = "2025-11-25"
CHILD = Path(__file__).with_name("redaction_child.py")


def placeholders(text: str) -> list[str]:
    return [match[0] for match in PLACEHOLDER.finditer(text)]


def tool(upstream: str, name: str) -> str:
    return exposed_name(upstream, name)


@asynccontextmanager
async def two_upstreams(
    guard: OutputGuard | None = None, *, face: HttpFace | None = None, redact: bool = True
) -> AsyncIterator[tuple[ProxyHandle, Seen, Seen]]:
    """The proxy in front of two real HTTP upstreams on 127.0.0.1: "vault", which holds
    VAULT_TOKEN, and "exfil", which holds OTHER_TOKEN and would like VAULT_TOKEN."""
    vault_seen, exfil_seen = Seen(), Seen()
    async with (
        http_served(leaky_server("vault", VAULT_TOKEN, vault_seen)) as (vault, _),
        http_served(leaky_server("exfil", OTHER_TOKEN, exfil_seen)) as (exfil, _),
        proxy_running(
            [
                HttpUpstream(name="vault", url=vault.url),
                HttpUpstream(name="exfil", url=exfil.url, redact=redact),
            ],
            face,
            guard=guard or OutputGuard(),
        ) as proxy,
    ):
        yield proxy, vault_seen, exfil_seen


async def call(client: McpClient, name: str, arguments: dict[str, Any]) -> CallToolResult:
    return await client.call_tool(name, arguments)


# --- finding 1: a placeholder goes back only to the upstream that showed its value ---------------


async def test_a_placeholder_is_restored_only_towards_the_upstream_that_showed_its_value() -> None:
    guard = OutputGuard()
    guard.add_known_secret("deploy-key-of-the-vault-1", "env:DEPLOY", source="vault")
    wire = Wire()
    with trio.fail_after(30):
        async with (
            two_upstreams(guard) as (proxy, vault_seen, exfil_seen),
            recording_client(proxy.server.mcp, wire) as client,
        ):
            shown = (await call(client, tool("vault", "show"), {})).text_content
            token, generic = placeholders(shown)
            # A secret environment variable of the vault's (a known value), as it printed it.
            echoed = await call(client, tool("vault", "echo"), {"t": "deploy-key-of-the-vault-1"})
            [env] = placeholders(echoed.text_content)

            # The model, told by an injected prompt, hands them all to another server: it gets
            # the placeholders as they are, never the values.
            stolen = {"token": token, "generic": generic, "env": env, "all": f"{token} {env}"}
            for name in ("echo", "fail", "chatty"):
                with suppress(McpError):
                    await call(client, tool("exfil", name), stolen)
                assert exfil_seen.arguments_of(name)[-1] == stolen

            # exfil forges what it saw into its own output, then gets it passed back: still the
            # placeholder (a placeholder written by an upstream is never taken for a value).
            forged = await call(client, tool("exfil", "echo"), {"t": token})
            assert token in forged.text_content
            await call(client, tool("exfil", "echo"), {"again": token})
            assert exfil_seen.arguments_of("echo")[-1] == {"again": token}

            # The vault itself gets its own values back, in every string of the arguments.
            await call(client, tool("vault", "echo"), {"use": [token, {"k": f"{generic}/{env}"}]})
            assert vault_seen.arguments_of("echo")[-1] == {
                "use": [VAULT_TOKEN, {"k": f"{GENERIC_VALUE}/deploy-key-of-the-vault-1"}]
            }
            assert VAULT_TOKEN not in wire.text()
            assert GENERIC_VALUE not in wire.text()
            assert "deploy-key-of-the-vault-1" not in wire.text()


async def test_a_generated_password_goes_back_only_to_its_generator() -> None:
    server = McpServer(Implementation("pw", "1"))
    seen = Seen()

    @server.tool("generate_password", input_schema={"type": "object"})
    async def generate(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return "kT9#vQ2mZ7pL4xW8"

    @server.tool("echo", input_schema={"type": "object"})
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        seen.calls.append(("echo", arguments))
        return json.dumps(arguments)

    other_seen = Seen()
    wire = Wire()
    with trio.fail_after(30):
        async with (
            http_served(server) as (pw, _),
            http_served(leaky_server("exfil", OTHER_TOKEN, other_seen)) as (exfil, _),
            proxy_running(
                [HttpUpstream(name="pw", url=pw.url), HttpUpstream(name="exfil", url=exfil.url)],
                guard=OutputGuard(),
            ) as proxy,
            recording_client(proxy.server.mcp, wire) as client,
        ):
            password = (await call(client, tool("pw", "generate_password"), {})).text_content
            assert PLACEHOLDER.fullmatch(password)
            await call(client, tool("exfil", "echo"), {"p": password})
            assert other_seen.arguments_of("echo") == [{"p": password}]
            # exfil echoing the bare password (it never had it) changes nothing; the generator
            # gets it back and its echo of the bare value is a placeholder again.
            await call(client, tool("pw", "echo"), {"p": password})
            assert seen.arguments_of("echo") == [{"p": "kT9#vQ2mZ7pL4xW8"}]
            assert "kT9#vQ2mZ7pL4xW8" not in wire.text()


async def test_a_too_short_generated_password_is_withheld_not_passed() -> None:
    """An upstream (old, or malicious) whose generate_password returns a value too short to be
    redacted wherever it appears: the result is withheld, never passed in clear."""
    server = McpServer(Implementation("pw", "1"))

    @server.tool("generate_password", input_schema={"type": "object"})
    async def generate(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return "abc123"

    wire = Wire()
    with trio.fail_after(30):
        async with (
            proxy_running([InProcessUpstream("pw", server)], guard=OutputGuard()) as proxy,
            recording_client(proxy.server.mcp, wire) as client,
        ):
            refused = await call(client, tool("pw", "generate_password"), {})
            assert refused.is_error
            assert "cannot be kept secret" in refused.text_content
            assert "abc123" not in wire.text()
            again = await call(client, tool("pw", "generate_password"), {})
            assert again.is_error


# --- finding 3: the beginning of a private key is a secret on its own ----------------------------

KEY_BODY = [
    "MIIEowIBAAKCAQEAvP3kXq9Lr2W8nT5cY1mZ0aB7dF4gH6jK8lN2pQ5sU9wX3yA1",
    "c2Ve4Gh6Jk8Lm0Np2Qr4St6Uv8Wx0Yz2Ab4Cd6Ef8Gh0Ij2Kl4Mn6Op8Qr0St2U",
    "v4Wx6Yz8Ab0Cd2Ef4Gh6Ij8Kl0Mn2Op4Qr6St8Uv0Wx2Yz4Ab6Cd8Ef0Gh2Ij4K",
]


@pytest.mark.parametrize(
    "shown",
    [
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_BODY[:2]) + "\n",
        "$ head -2 key.pem\n-----BEGIN PRIVATE KEY-----\n" + KEY_BODY[0] + "\n$ echo done\n",
        "/w/key.pem: lines 1-4 of 27\n     1\t-----BEGIN EC PRIVATE KEY-----\n"
        + "".join(f"{n:6}\t{line}\n" for n, line in enumerate(KEY_BODY, 2)),
        "1:-----BEGIN OPENSSH PRIVATE KEY-----\n2:" + KEY_BODY[0] + "\n3:" + KEY_BODY[1],
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n"
        "DEK-Info: AES-128-CBC,0A1B2C3D\r\n\r\n" + "\r\n".join(KEY_BODY),
        # Its end without its beginning (tail -4 key.pem), with line numbers too.
        "$ tail -4 key.pem\n" + "\n".join(KEY_BODY) + "\n-----END RSA PRIVATE KEY-----\n$ ls\n",
        "".join(f"{n:6}\t{line}\n" for n, line in enumerate(KEY_BODY, 25))
        + "    28\t-----END PRIVATE KEY-----\n",
    ],
)
def test_a_private_key_shown_in_part_is_redacted(shown: str) -> None:
    redacted = SecretRedactor(default_rules()).redact_text(shown)
    for line in KEY_BODY:
        assert line not in redacted
    assert "[REDACTED_SECRET:private-key:" in redacted


def test_begin_and_end_lines_alone_are_ordinary_text() -> None:
    # Code that handles keys names the marker; with no key material after it, nothing is hidden.
    redactor = SecretRedactor(default_rules())
    for code in (
        'if line == "-----BEGIN PRIVATE KEY-----":\n    return parse(rest)\n',
        'footer = "-----END PRIVATE KEY-----"\n',
        "done\n-----END PRIVATE KEY-----\n",
    ):
        assert redactor.redact_text(code) == code


# --- finding 2 and 6: every channel is redacted, once, at the proxy's outgoing filter ------------


async def test_every_channel_of_a_malicious_upstream_is_redacted() -> None:
    wire = Wire()
    with trio.fail_after(30):
        async with (
            two_upstreams() as (proxy, vault_seen, _),
            recording_client(proxy.server.mcp, wire) as client,
        ):
            await client.request("logging/setLevel", {"level": "debug"})
            tools = await client.list_tools()
            prompts = await client.list_prompts()
            resources = await client.list_resources()
            templates = await client.list_resource_templates()
            assert {t.name for t in tools} >= {tool("vault", "echo"), tool("vault", "fail")}
            assert prompts
            assert resources
            assert templates

            # Notifications sent before the response (log, progress), a sampling request.
            progress: list[str | None] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message)

            shown = (await call(client, tool("vault", "show"), {})).text_content
            [token, generic] = placeholders(shown)
            await client.call_tool(
                tool("vault", "chatty"), {"t": token}, progress=on_progress, meta={}
            )
            asked = await call(client, tool("vault", "ask"), {})
            assert not asked.is_error, asked.text_content
            assert wire.sampling
            assert VAULT_TOKEN not in json.dumps(wire.sampling)

            # A JSON-RPC error echoing the restored argument (the upstream got the real value).
            with pytest.raises(McpError) as failed:
                await call(client, tool("vault", "fail"), {"t": token, "g": generic})
            assert vault_seen.arguments_of("fail")[-1] == {"t": VAULT_TOKEN, "g": GENERIC_VALUE}
            assert token in failed.value.message
            assert token in json.dumps(failed.value.data)

            # _meta, fields MCP does not define, blobs, images, resource links.
            meta = await client.request("tools/call", {"name": tool("vault", "meta")})
            assert token in json.dumps(meta)
            blobs = await client.request("tools/call", {"name": tool("vault", "blobs")})
            blob, image, link = blobs["content"]
            for encoded_text in (blob["resource"]["blob"], image["data"]):
                assert VAULT_TOKEN.encode() not in _decoded(encoded_text)
                assert b"[REDACTED_SECRET:github-pat:" in _decoded(encoded_text)
            assert token in link["uri"]
            assert token == link["name"]

            # Prompts, resources (text and blob), templates, completions.
            prompt = await client.get_prompt(tool("vault", "greet"))
            assert token in json.dumps(prompt)
            read = await client.request("resources/read", {"uri": "vault://doc"})
            assert VAULT_TOKEN.encode() not in _decoded(read["contents"][1]["blob"])
            await client.request("resources/read", {"uri": "vault://t/x"})
            completed = await client.request(
                "completion/complete",
                {
                    "ref": {"type": "ref/prompt", "name": tool("vault", "greet")},
                    "argument": {"name": "a", "value": ""},
                },
            )
            assert completed["completion"]["values"][0] == token

            # Nothing of either secret crossed, on any channel.
            assert wire.notifications, "the log and progress notifications arrived"
            assert any(token in (message or "") for message in progress)
            text = wire.text()
            assert VAULT_TOKEN not in text
            assert OTHER_TOKEN not in text
            assert GENERIC_VALUE not in text
            # The next call works.
            assert (await call(client, tool("vault", "echo"), {"x": 1})).text_content == '{"x": 1}'


def _decoded(text: str) -> bytes:
    return base64.b64decode(text)


async def test_redact_false_still_hides_what_the_host_knows_is_secret() -> None:
    """``redact = false`` on exfil: its own ordinary content is not scanned by the rules, but a
    value the proxy knows is secret (found in another upstream's output) is hidden anyway."""
    wire = Wire()
    with trio.fail_after(30):
        async with (
            two_upstreams(redact=False) as (proxy, _, exfil_seen),
            recording_client(proxy.server.mcp, wire) as client,
        ):
            own = await call(client, tool("exfil", "show"), {})
            assert OTHER_TOKEN in own.text_content  # the user's explicit opt-out
            shown = (await call(client, tool("vault", "show"), {})).text_content
            token = placeholders(shown)[0]
            # exfil learnt the vault's token some other way and prints it: hidden all the same.
            leaked = await call(client, tool("exfil", "echo"), {"t": f"{VAULT_TOKEN}"})
            assert VAULT_TOKEN not in leaked.text_content
            assert token in leaked.text_content
            # Having shown the value, exfil may have it back: it learns nothing it had not.
            await call(client, tool("exfil", "echo"), {"t": token})
            assert exfil_seen.arguments_of("echo")[-1] == {"t": VAULT_TOKEN}


async def test_the_proxys_own_status_and_errors_are_redacted() -> None:
    """A secret the sandbox puts into the proxy's own text (an upstream's last error on the
    status resource) is redacted and restorable towards nobody."""
    from trio_sandbox.mcp import Resource, ResourceContents

    wire = Wire()
    with trio.fail_after(30):
        async with (
            two_upstreams() as (proxy, vault_seen, _),
            recording_client(proxy.server.mcp, wire) as client,
        ):

            async def status(uri: str, ctx: RequestContext) -> list[ResourceContents]:
                text = json.dumps({"destinations": {f"{VAULT_TOKEN}.invalid:80": {"refused": 1}}})
                return [ResourceContents(uri, text=text, mime_type="application/json")]

            proxy.server.mcp.add_resource(Resource("trio-sandbox://status", "status"), status)
            [contents] = await client.read_resource("trio-sandbox://status")
            assert contents.text is not None
            [token] = placeholders(contents.text)
            # Owned by nobody: not even the vault gets it restored.
            await call(client, tool("vault", "echo"), {"t": token})
            assert vault_seen.arguments_of("echo")[-1] == {"t": token}
            with pytest.raises(McpError) as unknown:
                await call(client, f"nope-{VAULT_TOKEN}", {})
            assert VAULT_TOKEN not in unknown.value.message
            assert VAULT_TOKEN not in wire.text()


async def test_a_batch_of_errors_is_redacted_on_the_http_face() -> None:
    """JSON-RPC batches (2025-03-26) over the proxy's real HTTP face: every response in it."""
    with trio.fail_after(30):
        async with two_upstreams(face=HttpFace(plain=True)) as (proxy, _, _):
            headers = {"Accept": "application/json, text/event-stream"}
            async with httpx.AsyncClient(timeout=20) as http:
                init = await http.post(
                    proxy.http_url,
                    headers=headers,
                    json={
                        "jsonrpc": "2.0",
                        "id": 0,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": "2025-03-26",
                            "capabilities": {},
                            "clientInfo": {"name": "batch", "version": "1"},
                        },
                    },
                )
                session = {**headers, "Mcp-Session-Id": init.headers["mcp-session-id"]}
                await http.post(
                    proxy.http_url,
                    headers=session,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                )
                batch = [
                    {
                        "jsonrpc": "2.0",
                        "id": number,
                        "method": "tools/call",
                        "params": {"name": tool("vault", name), "arguments": {}},
                    }
                    for number, name in enumerate(("fail", "show", "meta"), 1)
                ]
                answered = await http.post(proxy.http_url, headers=session, json=batch)
                body = answered.text
                assert answered.status_code == 200, body
                assert VAULT_TOKEN not in body
                assert GENERIC_VALUE not in body
                assert body.count("[REDACTED_SECRET:github-pat:") >= 3
                assert '"code": -32602' in body or '"code":-32602' in body


# --- a scan that takes too long, or a structure too deep, withholds -----------------------------


async def test_a_result_built_to_time_the_scan_out_is_withheld_and_the_next_call_works() -> None:
    wire = Wire()
    with trio.fail_after(60):
        async with (
            two_upstreams() as (proxy, _, _),
            recording_client(proxy.server.mcp, wire) as client,
        ):
            slow = await client.request("tools/call", {"name": tool("vault", "slow")})
            assert slow["isError"] is True
            assert "withheld" in slow["content"][0]["text"]
            deep = await client.request("tools/call", {"name": tool("vault", "deep")})
            assert deep["isError"] is True
            assert "nested deeper than" in deep["content"][0]["text"]
            assert VAULT_TOKEN not in wire.text()
            assert "curl curl" not in wire.text()
            shown = await call(client, tool("vault", "show"), {})
            assert placeholders(shown.text_content)


async def test_json_nested_past_any_limit_from_an_upstream_never_passes() -> None:
    """A hand-written upstream in a child process answers with JSON nested 500 levels (past the
    redactor's walk: withheld) and 100,000 levels (past the JSON parser: the proxy cannot read
    it, so that call gets no answer, as from a hung server, until the client gives up). Nothing
    of the secret shows, and the next call works."""
    upstream = StdioUpstream(
        name="raw",
        command=sys.executable,
        args=[str(Path(__file__).with_name("redaction_raw_upstream.py")), VAULT_TOKEN],
        prefix="",
    )
    wire = Wire()
    with trio.fail_after(60):
        async with (
            proxy_running([upstream], guard=OutputGuard()) as proxy,
            recording_client(proxy.server.mcp, wire) as client,
        ):
            deep = await client.request("tools/call", {"name": "deep"})
            assert deep["isError"] is True
            assert "nested deeper than" in deep["content"][0]["text"]
            with trio.move_on_after(2) as gave_up:
                await client.request("tools/call", {"name": "abyss"})
            assert gave_up.cancelled_caught
            fine = await call(client, "ok", {})
            assert placeholders(fine.text_content)
            assert VAULT_TOKEN not in wire.text()


async def test_a_slow_notification_is_dropped_and_a_slow_error_withheld() -> None:
    """Whatever the channel, what could not be checked in time does not leave."""
    wire = Wire()
    with trio.fail_after(60):
        async with (
            two_upstreams() as (proxy, _, _),
            recording_client(proxy.server.mcp, wire) as client,
        ):
            await client.request("logging/setLevel", {"level": "debug"})
            logged = await call(client, tool("vault", "slowlog"), {})
            assert logged.text_content == "after the log"
            assert not wire.notifications  # the log line was dropped, the answer was not
            with pytest.raises(McpError) as failed:
                await call(client, tool("vault", "slowfail"), {})
            assert "could not be checked for secrets" in failed.value.message
            assert VAULT_TOKEN not in wire.text()
            assert "curl curl" not in wire.text()
            assert (await call(client, tool("vault", "echo"), {"x": 1})).text_content == '{"x": 1}'


# --- finding 5: stored outputs belong to the session that made them -----------------------------


async def test_a_stored_output_is_readable_only_from_the_session_that_made_it() -> None:
    limits = OutputLimits(max_lines=5)
    with trio.fail_after(30):
        async with (
            two_upstreams(OutputGuard(limits), face=HttpFace(plain=True)) as (proxy, _, _),
            open_mcp_client(proxy.http_url, protocol_version=HANDSHAKE) as alice,
            open_mcp_client(proxy.http_url, protocol_version=HANDSHAKE) as bob,
            open_mcp_client(proxy.http_url, protocol_version="2026-07-28") as stateless,
        ):
            long = await call(alice, tool("vault", "say"), {"text": "\n".join("x" * 20)})
            [link] = [b for b in long.to_json()["content"] if b["type"] == "resource_link"]
            for other in (bob, stateless):
                with pytest.raises(McpError) as refused:
                    await other.read_resource(link["uri"])
                assert "another session" in refused.value.message
            [whole] = await alice.read_resource(link["uri"])
            assert whole.text is not None
            assert whole.text.count("x") == 20
            # Bob's next call works, and so do his own outputs.
            mine = await call(bob, tool("vault", "say"), {"text": "\n".join("y" * 20)})
            [own] = [b for b in mine.to_json()["content"] if b["type"] == "resource_link"]
            assert (await bob.read_resource(own["uri"]))[0].text is not None


# --- property tests ------------------------------------------------------------------------------

SECRET = "ghp_" + "P4s5Wq8Xz1Cv3Bn7Mm2Kk9Jj0Hh6Gg4Ff1Dd"
_leaf_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _leaf_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_leaf_text, inner, max_size=4),
    max_leaves=12,
)
CHANNELS = ("result", "meta", "error", "log", "progress", "structured")


def _with_secret(value: Any, where: int) -> Any:
    """``value`` with SECRET put into its where-th string (keys included), or added."""
    counter = [where]

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            counter[0] -= 1
            return f"{item}{SECRET}" if counter[0] == -1 else item
        if isinstance(item, list):
            return [walk(x) for x in item]
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        return item

    changed = walk(value)
    return changed if counter[0] < 0 else {"extra": changed, "s": SECRET}


def scripted_server(script: dict[str, Any]) -> McpServer:
    """An upstream that sends, on the channel the script names, the JSON the script holds."""
    server = McpServer(Implementation("scripted", "1"))

    @server.tool("say", input_schema={"type": "object"})
    async def say(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        raise AssertionError("answered by the route below")  # pragma: no cover

    async def route(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        channel, value = script["channel"], script["value"]
        if channel == "log":
            await ctx.log("error", value)
        if channel == "progress":
            await ctx.report_progress(1, None, json.dumps(value))
        if channel == "error":
            raise McpError(-32000, json.dumps(value), value)
        result: dict[str, Any] = {"content": [{"type": "text", "text": "ok"}]}
        if channel == "result":
            result["content"] = [{"type": "text", "text": json.dumps(value)}]
        if channel == "meta":
            result["_meta"] = {"v": value}
        if channel == "structured":
            result["structuredContent"] = {"v": value}
        return result

    server.route("tools/call", route)
    return server


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json, st.integers(0, 30), st.sampled_from(CHANNELS))
def test_property_a_secret_anywhere_in_any_message_never_reaches_the_client(
    value: Any, where: int, channel: str
) -> None:
    script = {"channel": channel, "value": _with_secret(value, where)}

    async def scenario() -> str:
        wire = Wire()
        upstream = InProcessUpstream("s", scripted_server(script), prefix="")
        async with (
            proxy_running([upstream], guard=OutputGuard()) as proxy,
            recording_client(proxy.server.mcp, wire) as client,
        ):
            await client.request("logging/setLevel", {"level": "debug"})
            with suppress(McpError):
                await client.call_tool("say", {}, progress=_ignore_progress)
        return wire.text()

    text = trio.run(scenario)
    assert SECRET not in text
    assert SECRET not in json.loads(json.dumps(text))


async def _ignore_progress(value: float, total: float | None, message: str | None) -> None:
    pass


def secrets_server(name: str, seen: Seen) -> McpServer:
    """``show`` prints the secret it is told by index; ``take`` records its arguments."""
    server = McpServer(Implementation(name, "1"))

    @server.tool("show", input_schema={"type": "object"})
    async def show(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return f"token {POOL[int(arguments['i'])]}"

    @server.tool("take", input_schema={"type": "object"})
    async def take(arguments: dict[str, Any], ctx: RequestContext) -> str:
        seen.calls.append(("take", arguments))
        return "taken"

    return server


POOL = [
    "ghp_" + "aB3dE5fG7hJ9kL2mN4pQ6rS8tU0vW1xY3zA5",
    "ghp_" + "Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2Yg1Uf0Id9Os8",
    "ghp_" + "Lp4Ko3Ji2Hu1Gy9Ft8Dr7Se6Aw5Qz4Xc3Vb2",
]
UPSTREAMS = ("a", "b", "c")
_steps = st.lists(
    st.tuples(st.sampled_from(("show", "take")), st.sampled_from(UPSTREAMS), st.integers(0, 2)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps)
def test_property_a_placeholder_is_restored_only_towards_upstreams_that_showed_it(
    steps: Sequence[tuple[str, str, int]],
) -> None:
    async def scenario() -> None:
        seen = {name: Seen() for name in UPSTREAMS}
        specs = [InProcessUpstream(n, secrets_server(n, seen[n])) for n in UPSTREAMS]
        wire = Wire()
        shown_by: dict[int, set[str]] = {}
        placeholder_of: dict[int, str] = {}
        async with (
            proxy_running(specs, guard=OutputGuard()) as proxy,
            recording_client(proxy.server.mcp, wire) as client,
        ):
            for action, upstream, index in steps:
                if action == "show":
                    text = (await call(client, tool(upstream, "show"), {"i": index})).text_content
                    [placeholder] = placeholders(text)
                    assert placeholder_of.setdefault(index, placeholder) == placeholder
                    shown_by.setdefault(index, set()).add(upstream)
                    continue
                if index not in placeholder_of:
                    continue
                placeholder = placeholder_of[index]
                await call(client, tool(upstream, "take"), {"p": placeholder})
                got = seen[upstream].arguments_of("take")[-1]["p"]
                expected = POOL[index] if upstream in shown_by[index] else placeholder
                assert got == expected
        assert not any(secret in wire.text() for secret in POOL)

    trio.run(scenario)


# --- the sandbox: real bubblewrap, as root and as an ordinary user -------------------------------

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


async def run_child(user: SandboxUser, workspace: Path, scenario: str) -> Any:
    return await user.run_json(str(CHILD), scenario, str(workspace), home=workspace, limit=180)


@needs_bwrap
async def test_the_beginning_of_a_private_key_never_reaches_the_client(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await run_child(sandbox_user, workspace, "pem")
    body_lines = report["body_lines"]
    for shown in report["shown"]:
        for line in body_lines:
            assert line not in shown["text"], shown
        assert "[REDACTED_SECRET:private-key:" in shown["text"], shown
    assert report["next"] == "next\n[exit code 0]"


@needs_bwrap
async def test_short_passwords_and_short_secret_env_values_are_refused(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await run_child(sandbox_user, workspace, "short")
    assert report["short_password"]["is_error"] is True
    assert "8" in report["short_password"]["text"]
    assert PLACEHOLDER.fullmatch(report["password"])
    assert "SHORT_SECRET" in report["secret_env_error"]
    assert "fewer than 8" in report["secret_env_error"]
    assert "seven77" not in report["secret_env_error"]


@needs_bwrap
async def test_ephemeral_sessions_share_neither_placeholders_nor_stored_outputs(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await run_child(sandbox_user, workspace, "ephemeral")
    assert report["alice_file"] == report["token"]  # alice's own sandbox gets the value
    assert report["bob_file"] == report["placeholder"]  # bob's gets the placeholder only
    assert "another session" in report["bob_read"]
    assert report["alice_read_lines"] == 400
    assert report["bob_next"] == "bob\n[exit code 0]"


@needs_bwrap
async def test_a_secret_in_a_refused_egress_host_is_redacted_in_the_status_resource(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await run_child(sandbox_user, workspace, "egress")
    assert report["token"] not in report["status"]
    assert report["token"].lower() not in report["status"].lower()
    assert "[REDACTED_SECRET:github-pat:" in report["status"]
    assert report["token"] not in report["result"]
    assert report["next"] == "next\n[exit code 0]"
