"""``--inject-secret NAME=HOST[,HOST...]`` and the ``[inject_secrets]`` table: how they become
``SandboxConfig.inject_secrets``, every refusal (exit 2, naming the setting, NAME and the entry,
never a value), and ``trio-sandbox call`` with a real sandbox and a real HTTPS origin, as root
and as the ordinary user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.cli_harness import run_cli
from tests.sandbox.inject_harness import fresh_value, origin_expecting
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.cli._errors import UsageError
from trio_sandbox.cli._main import build_parser
from trio_sandbox.cli._options import sandbox_config

NAME = "API_TOKEN"


def config_of(*args: str, toml: str | None = None, tmp_path: Path | None = None) -> object:
    argv = ["call", *args]
    if toml is not None:
        assert tmp_path is not None
        file = tmp_path / "sandbox.toml"
        file.write_text(toml)
        argv += ["--config", str(file)]
    config, _ = sandbox_config(build_parser().parse_args([*argv, "run_command", "{}"]))
    return config.inject_secrets


def test_the_option_is_repeatable_and_a_repeated_name_adds_hosts() -> None:
    found = config_of(
        "--network",
        "allow",
        "--inject-secret",
        f"{NAME}=api.example.com,uploads.example.com:443",
        "--inject-secret",
        "OTHER=*.other.test",
        "--inject-secret",
        f"{NAME}=api.example.com,10.0.0.5:8443",
    )
    assert found == {
        NAME: ("api.example.com", "uploads.example.com:443", "10.0.0.5:8443"),
        "OTHER": ("*.other.test",),
    }


@pytest.mark.parametrize(
    "command",
    [["run"], ["stdio"], ["call"], ["tools"]],
)
def test_every_command_that_starts_a_sandbox_takes_the_option(command: list[str]) -> None:
    args = build_parser().parse_args(
        [*command, "--network", "allow", "--inject-secret", f"{NAME}=api.example.com"]
        + (["run_command", "{}"] if command == ["call"] else [])
    )
    config, _ = sandbox_config(args)
    assert config.inject_secrets == {NAME: ("api.example.com",)}


def test_the_table_and_the_command_line_replaces_it(tmp_path: Path) -> None:
    toml = f'network = "allow"\n[inject_secrets]\n{NAME} = ["api.example.com", "h.test:8443"]\n'
    assert config_of(toml=toml, tmp_path=tmp_path) == {NAME: ("api.example.com", "h.test:8443")}
    assert config_of("--inject-secret", "B=b.test", toml=toml, tmp_path=tmp_path) == {
        "B": ("b.test",)
    }


@pytest.mark.parametrize(
    ("args", "toml", "message"),
    [
        (["--inject-secret", f"{NAME}=api.example.com"], None, "needs network = 'allow'"),
        (
            ["--network", "host", "--inject-secret", f"{NAME}=api.example.com"],
            None,
            "(not 'host')",
        ),
        (
            ["--network", "allow", "--backend", "kubernetes", "--inject-secret", f"{NAME}=a.test"],
            None,
            "the kubernetes back end does not have",
        ),
        (["--network", "allow", "--inject-secret", NAME], None, "expected NAME=HOST[,HOST...]"),
        (["--network", "allow", "--inject-secret", f"{NAME}="], None, f"{NAME} names no host"),
        (["--network", "allow", "--inject-secret", "9X=a.test"], None, "NAME is a variable name"),
        (
            ["--network", "allow", "--inject-secret", f"{NAME}=https://a.test/x"],
            None,
            "is not a host",
        ),
        (
            ["--network", "allow", "--inject-secret", f"{NAME}=a.test:70000"],
            None,
            f"inject_secrets {NAME} entry 'a.test:70000'",
        ),
        (
            ["--network", "allow", "--inject-secret", f"{NAME}=*"],
            None,
            f"inject_secrets {NAME} entry '*'",
        ),
        (
            ["--network", "allow", "--secret-env", NAME, "--inject-secret", f"{NAME}=a.test"],
            None,
            f"inject_secrets {NAME}: also in secret_env",
        ),
        (
            ["--network", "allow", "--env-passthrough", NAME, "--inject-secret", f"{NAME}=a.test"],
            None,
            f"inject_secrets {NAME}: also in env_passthrough",
        ),
        (
            [
                "--network",
                "allow",
                "--deny-domain",
                "example.com",
                "--inject-secret",
                f"{NAME}=api.example.com",
            ],
            None,
            f"inject_secrets {NAME}: 'api.example.com' is denied by deny_domains 'example.com'",
        ),
        ([], f'network = "allow"\ninject_secrets = ["{NAME}"]\n', "a table of NAME = [hosts]"),
        (
            [],
            f'network = "allow"\n[inject_secrets]\n{NAME} = "a.test"\n',
            f"{NAME} must be a list of hosts",
        ),
        (
            [],
            f'network = "allow"\n[env]\n{NAME} = "x"\n[inject_secrets]\n{NAME} = ["a.test"]\n',
            f"inject_secrets {NAME}: also in env",
        ),
    ],
)
def test_every_refusal_names_the_setting(
    tmp_path: Path, args: list[str], toml: str | None, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        config_of(*args, toml=toml, tmp_path=tmp_path)
    assert message in str(caught.value)


async def test_a_refusal_exits_2(tmp_path: Path) -> None:
    done = await run_cli(
        ["call", "--inject-secret", f"{NAME}=a.test", "run_command", '{"command": "true"}'],
        home=tmp_path,
    )
    assert done.returncode == 2, done
    assert "inject_secrets needs network = 'allow'" in done.stderr


async def test_call_injects_for_both_users(
    sandbox_user: SandboxUser,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = fresh_value("tok_", 32)
    async with origin_expecting(workspace, value, monkeypatch) as origin:
        for key, setting in origin.host_environment(NAME, value).items():
            monkeypatch.setenv(key, setting)
        entry = origin.entry
        command = f'curl -sS -H "Authorization: Bearer ${NAME}" https://{entry}/auth'
        done = await run_cli(
            [
                "call",
                "--network",
                "allow",
                "--inject-secret",
                f"{NAME}={entry}",
                "run_command",
                json.dumps({"command": command}),
            ],
            home=workspace,
            user=sandbox_user,
            limit=60,
        )
        missing = await run_cli(
            [
                "call",
                "--network",
                "allow",
                "--inject-secret",
                f"UNSET_{NAME}={entry}",
                "run_command",
                json.dumps({"command": "true"}),
            ],
            home=workspace,
            user=sandbox_user,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "authorized\n[exit code 0]\n", done.stdout
    assert value not in done.stdout + done.stderr
    assert missing.returncode == 1  # a start error, as every other
    assert f"inject_secrets UNSET_{NAME} is not set on this host" in missing.stderr
