"""``"auth": "oauth"`` in mcpServers entries (JSON, and the TOML of ``run``): what it becomes,
and every way of getting it wrong refused with an error that names the key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from trio_sandbox.cli._errors import UsageError
from trio_sandbox.cli._options import add_sandbox_options, sandbox_config
from trio_sandbox.oauth import OAuthSettings
from trio_sandbox.proxy import ConfigError, HttpUpstream, upstreams_from_mapping

URL = "https://mcp.example.com/mcp"


def parse(entry: dict[str, Any]) -> HttpUpstream:
    (spec,) = upstreams_from_mapping({"mcpServers": {"gh": entry}}, Path("."), "test")
    assert isinstance(spec, HttpUpstream)
    return spec


def test_auth_oauth_alone_means_discovery_and_registration() -> None:
    spec = parse({"url": URL, "auth": "oauth"})
    assert spec.oauth == OAuthSettings()
    assert spec.oauth_redirect_port == 0
    assert parse({"url": URL}).oauth is None


def test_every_oauth_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_SECRET", "s3cret-from-the-environment")
    spec = parse(
        {
            "url": URL,
            "auth": "oauth",
            "oauth": {
                "clientId": "my-client",
                "clientSecret": "${GH_SECRET}",
                "issuer": "https://github.com/login/oauth",
                "scopes": ["repo", "read:org"],
                "grant": "client_credentials",
                "redirectPort": 8765,
            },
        }
    )
    assert spec.oauth == OAuthSettings(
        grant="client_credentials",
        client_id="my-client",
        client_secret="s3cret-from-the-environment",
        scopes=("repo", "read:org"),
        issuer="https://github.com/login/oauth",
    )
    assert spec.oauth_redirect_port == 8765
    assert "s3cret" not in repr(spec)
    cimd = parse(
        {
            "url": URL,
            "auth": "oauth",
            "oauth": {"clientMetadataUrl": "https://me.example/client.json"},
        }
    )
    assert cimd.oauth is not None
    assert cimd.oauth.client_metadata_url == "https://me.example/client.json"


def test_loopback_http_is_allowed() -> None:
    for url in ("http://127.0.0.1:8000/mcp", "http://localhost/mcp", "http://[::1]:9/mcp"):
        assert parse({"url": url, "auth": "oauth"}).oauth is not None


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"command": "x", "auth": "oauth"}, "mcpServers.gh.auth: OAuth is for HTTP servers"),
        ({"url": "wss://h/mcp", "auth": "oauth"}, "not WebSocket"),
        ({"url": URL, "type": "ws", "auth": "oauth"}, "not WebSocket"),
        ({"url": URL, "auth": "basic"}, "mcpServers.gh.auth: 'basic' is not supported"),
        ({"url": URL, "oauth": {}}, 'mcpServers.gh.oauth: given without "auth": "oauth"'),
        ({"url": URL, "auth": "oauth", "oauth": []}, "mcpServers.gh.oauth: expected a table"),
        ({"url": URL, "auth": "oauth", "oauth": {"clientID": "x"}}, "unknown keys ['clientID']"),
        (
            {"url": URL, "auth": "oauth", "headers": {"authorization": "Bearer x"}},
            "an Authorization header and",
        ),
        ({"url": "http://mcp.example.com/mcp", "auth": "oauth"}, "sent over https only"),
        (
            {"url": URL, "auth": "oauth", "oauth": {"clientSecret": "s-long-secret"}},
            "clientSecret: given without clientId",
        ),
        (
            {
                "url": URL,
                "auth": "oauth",
                "oauth": {"clientId": "c", "clientSecret": "s-long-secret"},
            },
            "oauth.issuer: needed with clientSecret",
        ),
        (
            {
                "url": URL,
                "auth": "oauth",
                "oauth": {
                    "clientId": "c",
                    "clientSecret": "s-long-secret",
                    "issuer": "http://as.example",
                },
            },
            "oauth.issuer: an authorization server is https",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"clientId": "c", "clientSecret": "${NOPE_X}"}},
            "names an environment variable that is not set",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"clientId": "c", "clientSecret": "$NOPE_X"}},
            "names an environment variable that is not set",
        ),
        (
            {
                "url": URL,
                "auth": "oauth",
                "oauth": {"clientId": "c", "clientSecret": "a0", "issuer": "https://as.example"},
            },
            "clientSecret: 2 characters: too short to be kept out of output",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"clientMetadataUrl": "http://me/c.json"}},
            "must be an https URL with a path",
        ),
        (
            {
                "url": URL,
                "auth": "oauth",
                "oauth": {"clientId": "c", "clientMetadataUrl": "https://me/c.json"},
            },
            "not with clientId",
        ),
        ({"url": URL, "auth": "oauth", "oauth": {"grant": "password"}}, "'password' is not one"),
        ({"url": URL, "auth": "oauth", "oauth": {"scopes": "repo"}}, "a list of strings"),
        ({"url": URL, "auth": "oauth", "oauth": {"scopes": ["a b"]}}, "without spaces"),
        ({"url": URL, "auth": "oauth", "oauth": {"redirectPort": 70000}}, "a port number"),
        ({"url": URL, "auth": "oauth", "oauth": {"redirectPort": True}}, "a port number"),
        ({"url": URL, "auth": "oauth", "oauth": {"clientId": 5}}, "clientId: expected a string"),
    ],
)
def test_mistakes_are_refused_by_key(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(entry)
    assert expected in str(caught.value)


def test_the_run_config_toml_reads_it_too(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    config.write_text(
        '[mcpServers.gh]\nurl = "https://mcp.example.com/mcp"\nauth = "oauth"\n'
        '[mcpServers.gh.oauth]\nclientId = "c"\nscopes = ["repo"]\n'
    )
    parser = argparse.ArgumentParser()
    add_sandbox_options(parser)
    config_value, _ = sandbox_config(parser.parse_args(["--config", str(config)]))
    (spec,) = config_value.upstreams
    assert isinstance(spec, HttpUpstream)
    assert spec.oauth == OAuthSettings(client_id="c", scopes=("repo",))
    config.write_text('[mcpServers.gh]\ncommand = "x"\nauth = "oauth"\n')
    with pytest.raises(UsageError, match="OAuth is for HTTP servers"):
        sandbox_config(parser.parse_args(["--config", str(config)]))
