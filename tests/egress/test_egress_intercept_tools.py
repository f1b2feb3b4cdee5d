"""Real clients through interception: Python's urllib, requests and httpx, Node's fetch, git and
pip, each a child process that knows only the proxy variables and the trust variables
(``trust_environment``) naming the interception CA, and the placeholder of GITHUB_TOKEN. The
origin's ``/auth`` and ``/private/`` answer only to the value: a 200 proves the substitution.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.egress.egress_harness import (
    HELLO,
    PACKAGE,
    WHEEL,
    node_with_env_proxy,
    run_tool,
    tool_environment,
)
from tests.egress.intercept_harness import PLACEHOLDER, VALUE, Setup, intercepting
from trio_sandbox.contract import trust_environment
from trio_sandbox.egress import proxy_environment

PYTHON_GET = """
import sys
client, url, token = sys.argv[1:]
headers = {"Authorization": f"Bearer {token}"}
if client == "urllib":
    import urllib.request
    request = urllib.request.Request(url, headers=headers)
    print(urllib.request.urlopen(request, timeout=30).read().decode(), end="")
elif client == "requests":
    import requests
    print(requests.get(url, headers=headers, timeout=30).text, end="")
else:
    import httpx
    print(httpx.get(url, headers=headers, timeout=30).text, end="")
"""
NODE_FETCH = """
const [url, token] = process.argv.slice(1);
fetch(url, {headers: {Authorization: `token ${token}`}}).then(async (response) => {
    process.stdout.write(`${response.status} ${await response.text()}`);
}).catch((error) => {
    let cause = error;
    while (cause.cause) { cause = cause.cause; }
    process.stdout.write(`error ${cause.message}`);
});
"""


def environment(setup: Setup) -> dict[str, str]:
    return tool_environment(
        setup.home,
        {**proxy_environment(setup.proxy.port), **trust_environment(str(setup.interception_ca.ca))},
    )


def assert_no_value(setup: Setup, output: str) -> None:
    for text in (output, setup.proxy.lines(), setup.proxy.log_lines, setup.proxy.changes):
        assert VALUE not in repr(text)


@pytest.mark.parametrize("client", ["urllib", "requests", "httpx"])
async def test_python_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str) -> None:
    pytest.importorskip(client if client != "urllib" else "urllib.request")
    async with intercepting(tmp_path, monkeypatch) as setup:
        url = f"https://{setup.host}/auth"
        result = await run_tool(
            [sys.executable, "-c", PYTHON_GET, client, url, PLACEHOLDER], environment(setup)
        )
    assert result.stdout == "authorized\n", result.output
    assert_no_value(setup, result.output)


async def test_node_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = node_with_env_proxy()
    if node is None:
        pytest.skip("no Node.js 22.21+ / 24.5+ (NODE_USE_ENV_PROXY); .ci/install provides one")
    async with intercepting(tmp_path, monkeypatch) as setup:
        url = f"https://{setup.host}/auth"
        result = await run_tool([node, "-e", NODE_FETCH, url, PLACEHOLDER], environment(setup))
    assert result.stdout == "200 authorized\n", result.output
    assert_no_value(setup, result.output)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_git_clone_with_the_token_in_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        url = f"https://x-access-token:{PLACEHOLDER}@{setup.host}/private/repo.git"
        result = await run_tool(
            ["git", "clone", "-q", url, "clone"], environment(setup), cwd=tmp_path
        )
    assert result.returncode == 0, result.output
    assert (tmp_path / "clone" / "README").read_text() == "cloned through the egress proxy\n"
    assert_no_value(setup, result.output)


async def test_pip_download_with_the_token_in_the_index_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        index = f"https://__token__:{PLACEHOLDER}@{setup.host}/private/simple/"
        result = await run_tool(
            [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                "--retries", "1", "--timeout", "20", "--index-url", index,
                "-d", str(tmp_path / "got"), PACKAGE,
            ],
            environment(setup),
        )  # fmt: skip
    assert result.returncode == 0, result.output
    assert (tmp_path / "got" / WHEEL).is_file()
    assert_no_value(setup, result.output)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_without_the_token_the_private_path_stays_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        url = f"https://{setup.host}/private/hello.txt"
        denied = await run_tool(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url], environment(setup)
        )
        allowed = await run_tool(
            ["curl", "-sS", "-H", f"Authorization: Bearer {PLACEHOLDER}", url], environment(setup)
        )
    assert denied.stdout == "401"
    assert allowed.stdout == HELLO.decode()
