"""Real tools through the egress proxy to real servers on 127.0.0.1, each with its refused twin.

The proxy runs in the test on a 127.0.0.1 listener; the tools are real child processes whose only
proxy settings are those :func:`proxy_environment` recommends. They ask for ``*.test`` names,
which the proxy's resolver maps to 127.0.0.1 (the origin servers); the policy lists the allowed
ones with their ports (loopback is dialed only for an exact ``name:port`` entry). The refused
twin asks for ``blocked.test``, which is not listed, and must see the refusal itself: the 403
body, the ``X-Proxy-Error`` header, or the SOCKS reply code.
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
    Origins,
    RunningProxy,
    node_with_env_proxy,
    run_tool,
    running_proxy,
    serving_site,
    tool_environment,
)
from trio_sandbox.egress import EgressPolicy, proxy_environment


def tools_policy(origins: Origins) -> EgressPolicy:
    return EgressPolicy.parse(
        [
            f"files.test:{origins.http}",
            f"git.test:{origins.http}",
            f"secure.test:{origins.https}",
            f"pypi.test:{origins.https}",
        ]
    )


def environment(proxy: RunningProxy, home: Path, **extra: str) -> dict[str, str]:
    return tool_environment(home, {**proxy_environment(proxy.port), **extra})


def refusal_text(name: str, port: int) -> str:
    return f"refused {name}:{port} (not in allow_domains)"


async def test_curl_absolute_form_and_its_refusal(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path)
        fetched = await run_tool(
            ["curl", "-sS", "--fail", f"http://files.test:{origins.http}/hello.txt"], env
        )
        assert fetched.returncode == 0, fetched.output
        assert fetched.stdout.encode() == HELLO

        refused = await run_tool(
            ["curl", "-sS", "-i", f"http://blocked.test:{origins.http}/hello.txt"], env
        )
    assert refused.returncode == 0, refused.output
    assert refused.stdout.startswith("HTTP/1.1 403 Forbidden\r\n")
    assert "X-Proxy-Error: blocked-by-allowlist\r\n" in refused.stdout
    assert refused.stdout.endswith(refusal_text("blocked.test", origins.http) + "\n")
    assert proxy.lines() == [
        f"allowed files.test:{origins.http} (127.0.0.1)",
        refusal_text("blocked.test", origins.http),
    ]


async def test_curl_https_through_connect_and_its_refusal(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path)
        url = f"https://secure.test:{origins.https}/hello.txt"
        fetched = await run_tool(
            ["curl", "-sS", "--fail", "--cacert", str(origins.certificates.ca), url], env
        )
        assert fetched.returncode == 0, fetched.output
        assert fetched.stdout.encode() == HELLO

        refused = await run_tool(
            [
                "curl",
                "-sS",
                "-v",
                "--cacert",
                str(origins.certificates.ca),
                f"https://blocked.test:{origins.https}/hello.txt",
            ],
            env,
        )
    assert refused.returncode == 56  # CURLE_RECV_ERROR: the tunnel was not established
    assert "CONNECT tunnel failed, response 403" in refused.stderr
    assert "< X-Proxy-Error: blocked-by-allowlist" in refused.stderr
    assert proxy.lines() == [
        f"allowed secure.test:{origins.https} (127.0.0.1)",
        refusal_text("blocked.test", origins.https),
    ]
    # Bytes are counted per destination: the whole TLS exchange went through the tunnel.
    counters = proxy.stats.snapshot()["destinations"][f"secure.test:{origins.https}"]
    assert counters["allowed"] == 1
    assert counters["bytes_received"] > len(HELLO)


async def test_curl_socks5h_and_its_refusal(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path)
        socks = ["curl", "-sS", "--fail", "-x", f"socks5h://127.0.0.1:{proxy.port}"]
        plain = await run_tool([*socks, f"http://files.test:{origins.http}/hello.txt"], env)
        assert plain.returncode == 0, plain.output
        assert plain.stdout.encode() == HELLO
        tls = await run_tool(
            [
                *socks,
                "--cacert",
                str(origins.certificates.ca),
                f"https://secure.test:{origins.https}/hello.txt",
            ],
            env,
        )
        assert tls.returncode == 0, tls.output
        assert tls.stdout.encode() == HELLO

        refused = await run_tool([*socks, f"http://blocked.test:{origins.http}/"], env)
    assert refused.returncode == 97  # CURLE_PROXY
    # curl shows the SOCKS5 reply code: 2, "connection not allowed by ruleset".
    assert "Can't complete SOCKS5 connection to blocked.test. (2)" in refused.stderr
    assert proxy.lines()[-1] == refusal_text("blocked.test", origins.http)
    assert [event.protocol for event in proxy.events] == ["socks5"] * 3


URLLIB_FETCH = """
import ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
try:
    print(opener.open(sys.argv[1], timeout=30).read().decode(), end="")
except urllib.error.HTTPError as error:
    print(error.code, error.headers["X-Proxy-Error"], error.read().decode(), end="")
except OSError as error:
    print("OSError", error)
"""


async def test_urllib_with_proxy_variables_and_its_refusals(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path)

        async def fetch(url: str) -> str:
            result = await run_tool(
                [sys.executable, "-c", URLLIB_FETCH, url, str(origins.certificates.ca)], env
            )
            assert result.returncode == 0, result.output
            return result.stdout

        assert await fetch(f"http://files.test:{origins.http}/hello.txt") == HELLO.decode()
        assert await fetch(f"https://secure.test:{origins.https}/hello.txt") == HELLO.decode()
        refused_http = await fetch(f"http://blocked.test:{origins.http}/hello.txt")
        refused_https = await fetch(f"https://blocked.test:{origins.https}/hello.txt")
    assert (
        refused_http == f"403 blocked-by-allowlist {refusal_text('blocked.test', origins.http)}\n"
    )
    assert refused_https == "OSError <urlopen error Tunnel connection failed: 403 Forbidden>\n"
    assert [event.protocol for event in proxy.events] == ["http", "connect", "http", "connect"]


async def test_pip_download_from_a_local_index_and_its_refusal(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        # pip (26.3 here) verifies a proxied HTTPS index with its truststore context, which
        # ignores --cert but reads OpenSSL's SSL_CERT_FILE.
        env = environment(proxy, tmp_path, SSL_CERT_FILE=str(origins.certificates.ca))

        async def pip_download(name: str, destination: Path) -> tuple[int, str]:
            result = await run_tool(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-cache-dir",
                    "--retries",
                    "1",  # pip shows why a fetch failed only in its retry warning
                    "--timeout",
                    "20",
                    "--index-url",
                    f"https://{name}:{origins.https}/simple/",
                    "-d",
                    str(destination),
                    PACKAGE,
                ],
                env,
            )
            return result.returncode, result.output

        code, output = await pip_download("pypi.test", tmp_path / "got")
        assert code == 0, output
        assert (tmp_path / "got" / WHEEL).is_file()

        code, output = await pip_download("blocked.test", tmp_path / "refused")
    assert code != 0
    assert "Tunnel connection failed: 403 Forbidden" in output
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    assert refusal_text("blocked.test", origins.https) in proxy.lines()


async def test_git_clone_over_dumb_http_and_its_refusal(tmp_path: Path) -> None:
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path)
        cloned = await run_tool(
            ["git", "clone", "-q", f"http://git.test:{origins.http}/repo.git", "clone"],
            env,
            cwd=tmp_path,
        )
        assert cloned.returncode == 0, cloned.output
        assert (tmp_path / "clone" / "README").read_text() == "cloned through the egress proxy\n"
        # The dumb protocol fetches refs, HEAD and objects: several requests, each judged.
        allowed = [line for line in proxy.lines() if line.startswith("allowed git.test")]
        assert len(allowed) >= 3

        refused = await run_tool(
            ["git", "clone", "-q", f"http://blocked.test:{origins.http}/repo.git", "other"],
            env,
            cwd=tmp_path,
        )
    assert refused.returncode == 128
    assert "403" in refused.stderr
    # git shows a text/plain error body of the refs request as "remote: ..." lines.
    assert f"remote: {refusal_text('blocked.test', origins.http)}" in refused.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
async def test_npm_view_from_a_local_registry_and_its_refusal(tmp_path: Path) -> None:
    async with (
        serving_site(tmp_path) as origins,
        running_proxy(EgressPolicy.parse([f"registry.test:{origins.http}"])) as proxy,
    ):
        env = environment(proxy, tmp_path)

        async def npm_view(name: str) -> tuple[int, str]:
            result = await run_tool(
                [
                    "npm",
                    "view",
                    PACKAGE,
                    "version",
                    "--registry",
                    f"http://{name}:{origins.http}/npm/",
                    "--fetch-retries",
                    "0",
                ],
                env,
                cwd=tmp_path,
            )
            return result.returncode, result.output

        assert await npm_view("registry.test") == (0, "1.0.0\n")
        code, output = await npm_view("blocked.test")
    assert code == 1
    assert f"403 Forbidden - GET http://blocked.test:{origins.http}/npm/{PACKAGE}" in output
    assert proxy.lines()[-1] == refusal_text("blocked.test", origins.http)


NODE_FETCH = """
const url = process.argv[1];
fetch(url).then(async (response) => {
    process.stdout.write(`${response.status} ${await response.text()}`);
}).catch((error) => {
    let cause = error;
    while (cause.cause) { cause = cause.cause; }
    process.stdout.write(`error ${cause.message}`);
});
"""
NODE_HTTP_GET = """
require("http").get(process.argv[1], (response) => {
    let body = "";
    response.on("data", (chunk) => { body += chunk; });
    response.on("end", () => process.stdout.write(`${response.statusCode} ${body}`));
}).on("error", (error) => process.stdout.write(`error ${error.message}`));
"""


async def test_node_fetch_with_node_use_env_proxy_and_its_refusals(tmp_path: Path) -> None:
    node = node_with_env_proxy()
    if node is None:
        pytest.skip("no Node.js 22.21+ / 24.5+ (NODE_USE_ENV_PROXY); .ci/install provides one")
    async with serving_site(tmp_path) as origins, running_proxy(tools_policy(origins)) as proxy:
        env = environment(proxy, tmp_path, NODE_EXTRA_CA_CERTS=str(origins.certificates.ca))

        async def node_run(script: str, url: str) -> str:
            result = await run_tool([node, "-e", script, url], env)
            assert result.returncode == 0, result.output
            return result.stdout

        hello = HELLO.decode()
        assert await node_run(NODE_FETCH, f"https://secure.test:{origins.https}/hello.txt") == (
            f"200 {hello}"
        )
        # fetch() tunnels plain http:// through CONNECT as well; http.get uses absolute form.
        assert await node_run(NODE_FETCH, f"http://files.test:{origins.http}/hello.txt") == (
            f"200 {hello}"
        )
        assert await node_run(NODE_HTTP_GET, f"http://files.test:{origins.http}/hello.txt") == (
            f"200 {hello}"
        )
        refused_fetch = await node_run(NODE_FETCH, f"https://blocked.test:{origins.https}/")
        refused_get = await node_run(NODE_HTTP_GET, f"http://blocked.test:{origins.http}/")
    assert refused_fetch == "error Proxy response (403) !== 200 when HTTP Tunneling"
    assert refused_get == f"403 {refusal_text('blocked.test', origins.http)}\n"
    assert [event.protocol for event in proxy.events] == [
        "connect",
        "connect",
        "http",
        "connect",
        "http",
    ]


def test_the_recommended_environment_names_the_proxy_in_every_spelling() -> None:
    environment = proxy_environment(3128)
    url = "http://127.0.0.1:3128"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert environment[name] == url
    assert environment["NO_PROXY"] == environment["no_proxy"] == "localhost,127.0.0.1,::1"
    assert environment["NODE_USE_ENV_PROXY"] == "1"
    assert environment["npm_config_proxy"] == environment["npm_config_https_proxy"] == url
    assert environment["YARN_HTTP_PROXY"] == environment["YARN_HTTPS_PROXY"] == url
    assert "ALL_PROXY" not in environment
    with_socks = proxy_environment(1080, host="::1", socks=True)
    assert with_socks["ALL_PROXY"] == with_socks["all_proxy"] == "socks5h://[::1]:1080"
    assert with_socks["HTTP_PROXY"] == "http://[::1]:1080"
