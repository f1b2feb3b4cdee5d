"""Secrets and large outputs end to end: the real warden, tool server and proxy.

What the client sees is placeholders; what the sandbox gets back in arguments is the real value
(it lands in a volume file on the host); generated passwords and secret environment variables
are always redacted; a 20,000-line output is a tail plus a link whose read gives every line.
The official SDK client on the proxy's HTTPS face (mutual TLS) sees the same.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import httpx2
import mcp
import pytest
import trio
from mcp.client.streamable_http import streamable_http_client

from trio_sandbox.redact import PLACEHOLDER
from trio_sandbox.sandbox import SandboxConfig, open_sandbox

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
    # The SDK's httpx2 streams leave async generators for Trio to finalize (the SDK's business).
    pytest.mark.filterwarnings("ignore:Async generator 'http(x|core)2[.]:ResourceWarning"),
]

GITHUB_TOKEN = "ghp_" + "R8x2Lq9ZkW3vN7pT1mY5cB4dF6hJ0sA2eG8u"
DEPLOY_TOKEN = "deploy-token-that-matches-no-rule-7"


async def test_secrets_passwords_and_large_outputs_through_open_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    (workspace / ".env").write_text(f"GITHUB_TOKEN={GITHUB_TOKEN}\n")
    monkeypatch.setenv("TRIO_SANDBOX_TEST_DEPLOY", DEPLOY_TOKEN)
    config = SandboxConfig(
        volumes=[f"{workspace}:/work"], secret_env=["TRIO_SANDBOX_TEST_DEPLOY"], stop_grace=5.0
    )
    with trio.fail_after(90):
        async with open_sandbox(config) as sandbox:
            shown = await sandbox.call_tool("run_command", {"command": "cat /work/.env"})
            text = shown.text_content
            assert GITHUB_TOKEN not in text
            [placeholder] = [match[0] for match in PLACEHOLDER.finditer(text)]
            assert text == f"GITHUB_TOKEN={placeholder}\n[exit code 0]"

            # The placeholder written by a command is the real value on the host.
            write = f"printf %s '{placeholder}' > /work/copy; cat /work/copy"
            written = await sandbox.call_tool("run_command", {"command": write})
            assert (workspace / "copy").read_text() == GITHUB_TOKEN
            assert written.text_content == f"{placeholder}\n[exit code 0]"

            # A secret environment variable is redacted wherever it shows up.
            env = await sandbox.call_tool(
                "run_command", {"command": "echo $TRIO_SANDBOX_TEST_DEPLOY; env | grep DEPLOY"}
            )
            assert DEPLOY_TOKEN not in env.text_content
            assert "[REDACTED_SECRET:env:TRIO_SANDBOX_TEST_DEPLOY:" in env.text_content

            # A generated password is a placeholder; a command using it gets the password.
            password = (await sandbox.call_tool("generate_password", {"length": 20})).text_content
            assert PLACEHOLDER.fullmatch(password)
            used = await sandbox.call_tool(
                "run_command", {"command": f"printf %s '{password}' | wc -c"}
            )
            assert used.text_content.splitlines()[0].strip() == "20"

            # 20,000 lines: a tail and a link to all of them.
            long = await sandbox.call_tool("run_command", {"command": "seq 1 20000"})
            blocks = long.to_json()["content"]
            assert [block["type"] for block in blocks] == ["text", "resource_link"]
            assert blocks[0]["text"].splitlines()[-2:] == ["20000", "[exit code 0]"]
            assert len(blocks[0]["text"]) < 2000
            [contents] = await sandbox.read_resource(blocks[1]["uri"])
            assert contents.text is not None
            assert contents.text.splitlines()[:-1] == [str(n) for n in range(1, 20001)]


def client_context(bundle_directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(bundle_directory / "ca.pem"))
    context.load_cert_chain(bundle_directory / "client.pem", bundle_directory / "client.key")
    return context


async def test_the_sdk_client_on_the_https_face_sees_placeholders(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    (workspace / ".env").write_text(f"TOKEN={GITHUB_TOKEN}\n")
    config = SandboxConfig(volumes=[f"{workspace}:/work"], stop_grace=5.0)
    with trio.fail_after(90):
        async with open_sandbox(config) as sandbox:
            bundle = tmp_path / "bundle"
            sandbox.write_client_bundle(bundle)
            context = client_context(bundle)
            async with (
                httpx2.AsyncClient(verify=context) as http,
                mcp.Client(
                    streamable_http_client(sandbox.proxy_url, http_client=http), mode="legacy"
                ) as client,
            ):
                result = await client.call_tool("run_command", {"command": "cat /work/.env"})
                [text] = [b.text for b in result.content if isinstance(b, mcp.types.TextContent)]
                assert GITHUB_TOKEN not in text
                [placeholder] = [match[0] for match in PLACEHOLDER.finditer(text)]
                await client.call_tool(
                    "run_command", {"command": f"printf %s '{placeholder}' > /work/copy"}
                )
                assert (workspace / "copy").read_text() == GITHUB_TOKEN

                long = await client.call_tool("run_command", {"command": "seq 1 20000"})
                [link] = [b for b in long.content if isinstance(b, mcp.types.ResourceLink)]
                read = await client.read_resource(str(link.uri))
                [whole] = [
                    c.text for c in read.contents if isinstance(c, mcp.types.TextResourceContents)
                ]
                assert whole.splitlines()[:-1] == [str(n) for n in range(1, 20001)]
