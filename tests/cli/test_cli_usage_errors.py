"""Bad options and bad config: exit status 2, one clear message naming the option or key, no
traceback, and no sandbox started (each case is caught before any process is launched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.cli_harness import run_cli

# (id, config file text or None, command line, what the message must contain)
CASES = [
    (
        "unknown-config-key",
        "image = 'host'\nrespawn_treshold = 2\n",
        ["call", "run_command"],
        ["unknown key(s) respawn_treshold", "allowed:", "respawn_threshold"],
    ),
    (
        "config-wrong-type",
        'respawn_threshold = "x"\n',
        ["tools"],
        ["config key 'respawn_threshold'", "expected a whole number", "'x'"],
    ),
    (
        "config-bool-is-not-a-number",
        "health_interval = true\n",
        ["tools"],
        ["config key 'health_interval'", "expected a number of seconds"],
    ),
    (
        "config-bad-mode",
        'mode = "sometimes"\n',
        ["stdio"],
        ["config key 'mode'", "'persistent' or 'ephemeral'", "'sometimes'"],
    ),
    (
        "config-volumes-not-a-list",
        'volumes = "./project:/work"\n',
        ["tools"],
        ["config key 'volumes'", "expected a list of strings"],
    ),
    (
        "config-not-toml",
        "image = \n",
        ["tools"],
        ["--config", "is not valid TOML"],
    ),
    ("bad-listen", None, ["run", "--listen", "localhost"], ["--listen", "expected HOST:PORT"]),
    (
        "listen-port-out-of-range",
        None,
        ["run", "--listen", "127.0.0.1:70000"],
        ["--listen", "'127.0.0.1:70000'"],
    ),
    (
        "upstream-without-name",
        None,
        ["tools", "--upstream", "http://x"],
        ["--upstream", "NAME=URL"],
    ),
    (
        "upstream-bad-scheme",
        None,
        ["tools", "--upstream", "docs=ftp://127.0.0.1/"],
        ["--upstream", "'ftp://127.0.0.1/' is not an http(s):// or ws(s):// URL"],
    ),
    (
        "bad-mode",
        None,
        ["call", "--mode", "sometimes", "run_command"],
        ["argument --mode", "invalid choice: 'sometimes'", "persistent", "ephemeral"],
    ),
    ("bad-volume", None, ["tools", "--volume", "/srv"], ["--volume '/srv'", "HOST:CONTAINER"]),
    (
        "json-args-not-an-object",
        None,
        ["call", "run_command", '["ls"]'],
        ["JSON_ARGS must be a JSON object"],
    ),
    ("json-args-not-json", None, ["call", "run_command", "{ls"], ["JSON_ARGS is not valid JSON"]),
    (
        "short-token",
        None,
        ["run", "--token-file", "{token}"],
        ["--token-file", "at least 16 characters"],
    ),
    (
        "status-https-without-credentials",
        None,
        ["status", "--url", "https://127.0.0.1:1/mcp"],
        ["https:// URL needs --client-cert-dir or --token-file"],
    ),
    (
        "missing-config-file",
        None,
        ["tools", "--config", "{home}/nowhere.toml"],
        ["--config: cannot read", "nowhere.toml"],
    ),
]


@pytest.mark.parametrize(
    ("config", "argv", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_bad_usage_exits_2_with_a_clear_message(
    tmp_path: Path, config: str | None, argv: list[str], expected: list[str]
) -> None:
    token = tmp_path / "short-token"
    token.write_text("short\n")
    args = [arg.replace("{home}", str(tmp_path)).replace("{token}", str(token)) for arg in argv]
    if config is not None:
        config_file = tmp_path / "trio-sandbox.toml"
        config_file.write_text(config)
        # The option goes after the subcommand, where every sandbox command accepts it.
        args = [args[0], "--config", str(config_file), *args[1:]]
    done = await run_cli(args, home=tmp_path, limit=15)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(("trio-sandbox: error: ", "trio-sandbox ")), done.stderr
    for part in expected:
        assert part in message, done.stderr
    # Rejected before anything started: no sandbox stage was reported.
    assert "warden started" not in done.stderr
