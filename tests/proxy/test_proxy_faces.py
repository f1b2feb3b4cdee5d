"""The proxy's faces and lifecycle: mutual TLS, bearer token, stdio upstreams whose process groups
end with the proxy, no leaked tasks, and the ``proxy`` command line."""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest
import trio

from tests.conformance.child_processes import stop_group
from tests.proxy.proxy_harness import (
    REPO,
    build_upstream,
    http_served,
    process_exists,
    proxy_running,
)
from trio_sandbox.cli import run_cli as cli_main
from trio_sandbox.mcp import McpConnectionError, open_mcp_client, stdio_transport
from trio_sandbox.proxy import HttpFace, InProcessUpstream, StdioUpstream
from trio_sandbox.tls import CertificateChain, load_client_ssl_context

STDIO_CHILD = Path(__file__).with_name("stdio_upstream_child.py")
TOKEN = "a-bearer-token-of-some-length"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
TWO_UPSTREAMS = ["--upstream", "a=http://x", "--upstream", "b=http://y"]
POST_HEADERS = {"accept": "application/json, text/event-stream"}


async def test_mtls_face_serves_its_client_and_refuses_others() -> None:
    chain = CertificateChain.generate()
    stranger = CertificateChain.generate()
    one, _ = build_upstream("one")
    face = HttpFace(chain=chain)
    async with proxy_running([InProcessUpstream("one", one)], face) as proxy:
        url = proxy.http_url
        assert url.startswith("https://")
        async with open_mcp_client(url, ssl_context=chain.client_ssl_context()) as client:
            assert "one__echo" in [tool.name for tool in await client.list_tools()]
        no_certificate = ssl.create_default_context(cadata=chain.ca_cert_pem())
        wrong_ca = stranger.client.client_ssl_context(chain.ca_cert_pem())
        for context in (no_certificate, wrong_ca):
            with warnings.catch_warnings():
                # A refused handshake leaves httpx's request-body generator unfinished (the
                # HTTP client's business, not the proxy's): collected here, where it may warn.
                warnings.simplefilter("ignore", ResourceWarning)
                assert await _refused(url, context)
                gc.collect()
                await trio.lowlevel.checkpoint()


async def _refused(url: str, context: ssl.SSLContext) -> bool:
    try:
        async with open_mcp_client(url, ssl_context=context):
            return False
    except McpConnectionError:
        return True


async def test_token_face_refuses_a_wrong_token_with_401() -> None:
    chain = CertificateChain.generate()
    one, _ = build_upstream("one")
    face = HttpFace(chain=chain, token=TOKEN)
    trust = ssl.create_default_context(cadata=chain.ca_cert_pem())
    async with proxy_running([InProcessUpstream("one", one)], face) as proxy:
        url = proxy.http_url
        async with httpx.AsyncClient(verify=trust) as http:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
                refused = await http.post(url, json=INITIALIZE, headers={**POST_HEADERS, **headers})
                assert refused.status_code == 401
                body = refused.json()
                assert body["jsonrpc"] == "2.0"
                assert body["error"]["message"]
        async with open_mcp_client(
            url, ssl_context=trust, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            result = await client.call_tool("one__echo", {"text": "t"})
            assert result.text_content == "one:echo:t"


async def test_stdio_upstream_process_group_ends_with_the_proxy(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    spec = StdioUpstream("kid", sys.executable, [str(STDIO_CHILD), str(pid_file)])
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with (
        proxy_running([spec]) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        child, grandchild = (int(pid) for pid in pid_file.read_text().split())
        result = await client.call_tool("kid__whoami", {})
        assert result.text_content == f"pid {child}"
        assert process_exists(child)
        assert process_exists(grandchild)
    assert not process_exists(child)
    with trio.fail_after(5):
        # The grandchild is not ours to reap: it is gone once its zombie is collected by init.
        while _alive_not_zombie(grandchild):  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


def _alive_not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--plain-http"], "--upstream"),
        (["--upstream", "noequals", "--plain-http"], "--upstream"),
        (["--upstream", "a=ftp://x", "--plain-http"], "--upstream"),
        (["--upstream", "a=http://x", "--prefix", "b=p", "--plain-http"], "--prefix"),
        (
            [*TWO_UPSTREAMS, "--prefix", "a=p", "--prefix", "b=p", "--plain-http"],
            "--prefix",
        ),
        (["--upstream", "a=http://x", "--listen", "0.0.0.0:1", "--plain-http"], "--listen"),
        (["--upstream", "a=http://x", "--listen", "nowhere", "--plain-http"], "--listen"),
        (["--upstream", "a=http://x", "--token-file", "/nonexistent"], "--token-file"),
        (
            ["--upstream", "a=https://x", "--upstream-key", "k.pem", "--plain-http"],
            "--upstream-key",
        ),
        (
            ["--upstream", "a=https://x", "--upstream-ca", "/nonexistent", "--plain-http"],
            "--upstream-ca",
        ),
        (["--config", "/nonexistent.json", "--plain-http"], "--config"),
        (["--upstream", "a=http://x", "--stdio", "--listen", "127.0.0.1:1"], "--listen"),
    ],
)
def test_bad_proxy_options_exit_2_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["proxy", *argv])
    assert exited.value.code == 2
    assert option in capsys.readouterr().err


def test_a_face_must_be_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["proxy", "--upstream", "a=http://x"])
    assert exited.value.code == 2
    assert "--plain-http" in capsys.readouterr().err


async def test_proxy_command_serves_mtls_and_writes_a_private_client_bundle(
    tmp_path: Path,
) -> None:
    one, _ = build_upstream("one")
    bundle = tmp_path / "bundle"
    config = tmp_path / "mcp.json"
    async with http_served(one) as (bound, _):
        config.write_text(json.dumps({"mcpServers": {"cfg": {"url": bound.url}}}))
        argv = [
            sys.executable,
            "-m",
            "trio_sandbox",
            "proxy",
            "--upstream",
            f"one={bound.url}",
            "--prefix",
            "one=",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
            "--client-cert-dir",
            str(bundle),
        ]
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    argv,
                    stderr=subprocess.PIPE,
                    check=False,
                    cwd=REPO,
                    start_new_session=True,
                    deliver_cancel=stop_group,
                )
            )
            assert process.stderr is not None
            said = b""
            with trio.fail_after(30):
                while b"or in Python" not in said:
                    chunk = await process.stderr.receive_some()
                    assert chunk, said
                    said += chunk
            text = said.decode()
            url = text.split("listening at ", 1)[1].split()[0]
            for name in ("ca.pem", "client.pem", "client.key"):
                assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600
            assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
            assert "PRIVATE KEY" not in text
            async with open_mcp_client(url, ssl_context=load_client_ssl_context(bundle)) as client:
                names = {tool.name for tool in await client.list_tools()}
                assert {"echo", "cfg__echo"} <= names
                result = await client.call_tool("echo", {"text": "cli"})
                assert result.text_content == "one:echo:cli"
            os.kill(process.pid, signal.SIGTERM)
            with trio.fail_after(15):
                await process.wait()
            assert process.returncode == 0
        assert not bundle.exists()


async def test_proxy_command_on_stdio_with_a_toml_mcp_servers_file(tmp_path: Path) -> None:
    one, _ = build_upstream("one")
    config = tmp_path / "mcp.toml"
    async with http_served(one) as (bound, _):
        config.write_text(f'[mcpServers.toml_one]\nurl = "{bound.url}"\nprefix = "t"\n')
        argv = [sys.executable, "-m", "trio_sandbox", "proxy", "--stdio", "--config", str(config)]
        async with open_mcp_client(stdio_transport(argv, cwd=str(REPO))) as client:
            assert client.server_info is not None
            assert client.server_info.name == "trio-sandbox-proxy"
            result = await client.call_tool("t__echo", {"text": "stdio"})
            assert result.text_content == "one:echo:stdio"
