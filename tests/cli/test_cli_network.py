"""``--network`` on the command line and in the TOML file: a real sandbox per case.

A tool result whose command met a refusal names it (``[network] refused: ...``); the allowed
destination is fetched; bad entries end the command at start with status 2 and the entry named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.cli_harness import run_cli
from tests.egress.egress_harness import HELLO, serving_site
from tests.support.sandbox_users import SandboxUser

ORIGIN_HOST = "127.0.0.2"


def fetch_twice(port: int) -> str:
    return json.dumps(
        {
            "command": f"curl -sS --fail http://{ORIGIN_HOST}:{port}/hello.txt;"
            f" curl -sS --fail http://127.0.0.3:{port}/hello.txt; echo status=$?"
        }
    )


async def test_a_refused_destination_is_named_in_the_result(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        done = await run_cli(
            [
                "call",
                "--network",
                "allow",
                "--allow-domain",
                f"{ORIGIN_HOST}:{origins.http}",
                "run_command",
                fetch_twice(origins.http),
            ],
            home=workspace,
            user=sandbox_user,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == HELLO.decode().rstrip("\n")
    assert "status=22" in lines  # curl --fail: the proxy answered 403
    assert lines[-2] == "[exit code 0]"
    assert lines[-1].startswith(
        f"[network] refused: 127.0.0.3:{origins.http} (not in allow_domains;"
    ), done.stdout


async def test_the_config_file_keys(tmp_path: Path) -> None:
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        config = tmp_path / "sandbox.toml"
        config.write_text(
            'network = "allow"\n'
            f'allow_domains = ["{ORIGIN_HOST}:{origins.http}", "127.0.0.3:{origins.http}"]\n'
            f'deny_domains = ["127.0.0.3"]\n'
        )
        done = await run_cli(
            ["call", "--config", str(config), "run_command", fetch_twice(origins.http)],
            home=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(HELLO.decode())
    # Deny wins over allow, and says so.
    assert done.stdout.splitlines()[-1] == (
        f"[network] refused: 127.0.0.3:{origins.http} (denied by deny_domains entry '127.0.0.3')"
    ), done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "allow", "--allow-domain", "*"], "allow_domains entry '*'"),
        (["--network", "allow", "--allow-domain", "*.co.uk"], "allow_domains entry '*.co.uk'"),
        (["--network", "allow", "--deny-domain", "x.org/path"], "deny_domains entry 'x.org/path'"),
        (["--allow-domain", "pypi.org"], "need network = 'allow'"),
        (["--network", "everything"], "invalid choice: 'everything'"),
    ],
)
async def test_bad_entries_exit_2_naming_the_entry(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = await run_cli(["call", *args, "run_command", '{"command": "true"}'], home=tmp_path)
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr


async def test_a_bad_config_value_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    config.write_text('network = "allow"\nallow_domains = ["https://pypi.org"]\n')
    done = await run_cli(
        ["call", "--config", str(config), "run_command", '{"command": "true"}'], home=tmp_path
    )
    assert done.returncode == 2
    assert "allow_domains entry 'https://pypi.org'" in done.stderr, done.stderr
