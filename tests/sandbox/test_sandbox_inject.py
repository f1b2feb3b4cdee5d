"""inject_secrets through ``open_sandbox``: real bubblewrap sandboxes (root and the ordinary
user), the real warden and its egress proxy, a real HTTPS origin on 127.0.0.2 whose test CA the
warden trusts through ``SSL_CERT_FILE`` in the environment it inherits.

curl, Python's urllib, git and pip inside (Node's fetch too, as this process's user) reach the
origin with the real value in their Authorization header, though the sandbox only ever sees the
placeholder; the placeholder sent
anywhere else is refused with a ``[network]`` note naming the variable; and the value is in no
tool result, status, log record, error, nor in the command line or environment of any process
(the warden's included).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from pathlib import Path

import pytest
import trio

from tests.egress.egress_harness import HELLO, PACKAGE, WHEEL, node_with_env_proxy
from tests.sandbox.inject_harness import (
    NAME,
    ORIGIN_HOST,
    fresh_value,
    git_clone_command,
    origin_expecting,
    pip_download_command,
)
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.contract import decode_injection
from trio_sandbox.redact import SecretRedactor
from trio_sandbox.sandbox import (
    SandboxConfig,
    SandboxRestarted,
    SandboxStartError,
    open_sandbox,
)
from trio_sandbox.sandbox._inject import InjectionPlan, without_injected
from trio_sandbox.sandbox._launcher import sandbox_env, warden_argv

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CHILD = Path(__file__).with_name("inject_child.py")


async def test_the_real_value_reaches_the_origin_and_nothing_else(
    sandbox_user: SandboxUser,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = fresh_value()
    async with origin_expecting(workspace, value, monkeypatch) as origin:
        origins, entry = origin.origins, origin.entry
        plan = {
            "name": NAME,
            "entry": entry,
            "other": f"{ORIGIN_HOST}:{origins.http}",
            "unlisted": "127.0.0.3:9",
            "commands": {
                "git": git_clone_command(NAME, entry),
                "pip": pip_download_command(NAME, entry, PACKAGE),
            },
        }
        env = origin.host_environment(NAME, value)
        with trio.fail_after(150):
            done = await trio.run_process(
                sandbox_user.command(sandbox_user.python, str(CHILD)),
                stdin=json.dumps(plan).encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=sandbox_user.env({"HOME": str(workspace), **env}),
                cwd=workspace,
            )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr[-4000:]
    assert value not in stdout
    assert value not in stderr
    report = json.loads(stdout.splitlines()[-1])
    assert report["value_in_report"] is False

    # Substituted at the origin for curl and for urllib (both through the proxy variables and
    # trusting the interception CA through the variables and the system bundle).
    assert report["curl"] == "authorized\n[exit code 0]", report["curl"]
    assert report["urllib"] == "authorized\n\n[exit code 0]", report["urllib"]
    # git (GnuTLS) with the placeholder as URL user-info, pip with it in the index URL.
    assert report["git"] == "cloned through the egress proxy\n[exit code 0]", report["git"]
    assert report["pip"] == f"{WHEEL}\n[exit code 0]", report["pip"]
    # Without the header, the origin refuses: nothing is added to what the sandbox sends.
    assert report["no_token"].startswith("unauthorized\n"), report["no_token"]

    # The sandbox's variable is a placeholder of the value's shape, not the value.
    placeholder = report["reversed"].removesuffix("\n[exit code 0]")[::-1]
    assert placeholder != value
    assert len(placeholder) == len(value)
    assert placeholder.startswith("ghp_")
    # The origin saw the value; the answer the sandbox reads has it back as the placeholder.
    seen = report["headers"].removesuffix("\n[exit code 0]")[::-1]
    field, _, given = seen.partition(": ")
    assert field.lower() == "x-seen-authorization", seen
    assert given == f"Bearer {placeholder}"

    # Anywhere else, refused before a byte of it leaves, named by the variable.
    for key, destination in (
        ("elsewhere", f"{ORIGIN_HOST}:{origins.http}"),
        ("unlisted", "127.0.0.3:9"),
    ):
        text = report[key]
        assert HELLO.decode() not in text
        notes = [line for line in text.splitlines() if line.startswith("[network] refused:")]
        assert len(notes) == 1, text
        assert notes[0].startswith(f"[network] refused: {destination} ("), notes[0]
        assert f"inject_secrets {NAME}" in notes[0]
        assert entry in notes[0]

    # Nowhere on the host: no process (the warden and bwrap included) has it on its command
    # line or in its environment; the warden's environment has no such variable at all.
    assert report["proc"]["wardens_read"], "the scan read no warden's environment"
    assert report["proc"]["value"] == []
    assert report["proc"]["warden_has_name"] == []
    network = report["status"]["network"]
    assert network["mode"] == "allow"
    assert network["inject_secrets"] == {NAME: [entry]}
    assert "inject_secrets" in report["log"]


async def test_a_copy_of_the_value_is_redacted_and_a_respawn_keeps_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedding process's own user (root in CI). A value the redaction rules do not know
    by shape: only its being a known secret (``inject:NAME``) redacts it. The respawn swaps in
    the warm spare, whose warden run has its own CA and the same placeholder."""
    caplog.set_level(logging.DEBUG)
    value = fresh_value("Zq", 30)
    fds_before = sorted(os.listdir("/proc/self/fd"))
    async with origin_expecting(tmp_path, value, monkeypatch) as origin:
        entry = origin.entry
        # The user passing the value in under another name: redacted all the same.
        config = origin.config(NAME, value, monkeypatch, env={"COPY": value})
        texts: list[str] = []
        with trio.fail_after(120):
            async with open_sandbox(config) as sandbox:

                async def run(command: str) -> str:
                    result = await sandbox.call_tool("run_command", {"command": command})
                    texts.append(result.text_content)
                    return result.text_content.removesuffix("\n[exit code 0]")

                shown = await run('echo "$COPY"')
                assert shown.startswith(f"[REDACTED_SECRET:inject:{NAME}:"), shown
                auth = f'curl -sS -H "Authorization: Bearer ${NAME}" https://{entry}/auth'
                assert await run(auth) == "authorized"
                placeholder = (await run(f'printf %s "${NAME}" | rev'))[::-1]
                assert len(placeholder) == len(value)
                assert placeholder != value

                kill = 'kill -9 "$(cut -d" " -f4 /proc/$PPID/stat)"; sleep 5'
                with pytest.raises(SandboxRestarted):
                    await sandbox.call_tool("run_command", {"command": kill})
                assert await run(auth) == "authorized"
                assert (await run(f'printf %s "${NAME}" | rev'))[::-1] == placeholder
                assert sandbox.health.generation == 2
                status = json.dumps(sandbox.status())
    for text in (*texts, status, caplog.text):
        assert value not in text
    # Every descriptor of the three warden runs (the first, the spare swapped in, the spare
    # started after it) was closed: the injection memfds among them.
    assert sorted(os.listdir("/proc/self/fd")) == fds_before


NODE_FETCH = (
    "fetch(process.argv[1], {headers: {Authorization: `token ${process.env.%s}`}})"
    ".then(async (r) => console.log(r.status, (await r.text()).trim()))"
    ".catch((e) => { while (e.cause) e = e.cause; console.log('error', e.message); })"
)


async def test_git_pip_and_node_inside_get_the_value_substituted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tools of issue 23 inside a real sandbox (this process's user), each trusting the
    interception CA through the variables the warden sets: git with the placeholder as URL
    user-info (Basic), pip with it in the index URL, Node 22's fetch in a header."""
    value = fresh_value()
    node = node_with_env_proxy()
    volumes = [f"{Path(node).parent}:/opt/node/bin:ro"] if node else []
    async with origin_expecting(tmp_path, value, monkeypatch) as origin:
        entry = origin.entry
        config = origin.config(NAME, value, monkeypatch, volumes=volumes, warm_spares=0)
        commands = {
            "git": git_clone_command(NAME, entry),
            "pip": pip_download_command(NAME, entry, PACKAGE),
        }
        if node:
            script = shlex.quote(NODE_FETCH % NAME)
            # stderr aside: Node warns that its proxy agent is experimental.
            commands["node"] = f"/opt/node/bin/node -e {script} https://{entry}/auth 2>/dev/null"
        texts: dict[str, str] = {}
        with trio.fail_after(150):
            async with open_sandbox(config) as sandbox:
                for tool, command in commands.items():
                    result = await sandbox.call_tool("run_command", {"command": command})
                    texts[tool] = result.text_content
    assert texts["git"] == "cloned through the egress proxy\n[exit code 0]", texts["git"]
    assert texts["pip"] == f"{WHEEL}\n[exit code 0]", texts["pip"]
    if node:
        assert texts["node"] == "200 authorized\n[exit code 0]", texts["node"]
    assert value not in json.dumps(texts)


async def test_every_session_sandbox_injects_with_its_own_warden_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sandbox.session()`` starts a sandbox of its own (a warden run with its own CA): the
    value reaches the origin from each, and each sees the sandbox's one placeholder."""
    value = fresh_value()
    async with origin_expecting(tmp_path, value, monkeypatch) as origin:
        entry = origin.entry
        config = origin.config(NAME, value, monkeypatch, warm_spares=0)
        auth = f'curl -sS -H "Authorization: Bearer ${NAME}" https://{entry}/auth'
        shown = f'printf %s "${NAME}" | rev'
        placeholders: list[str] = []
        with trio.fail_after(120):
            async with open_sandbox(config) as sandbox:
                for _ in range(2):
                    async with sandbox.session() as session:
                        result = await session.call_tool("run_command", {"command": auth})
                        assert result.text_content == "authorized\n[exit code 0]"
                        result = await session.call_tool("run_command", {"command": shown})
                        placeholders.append(result.text_content.split("\n")[0][::-1])
                result = await sandbox.call_tool("run_command", {"command": shown})
                placeholders.append(result.text_content.split("\n")[0][::-1])
    assert len(set(placeholders)) == 1
    assert value not in placeholders


def test_the_value_is_restored_towards_no_source_that_did_not_show_it() -> None:
    """As open_sandbox adds it: a model copying the redacted value into a call's arguments
    sends the redacted form, not the value (the sandbox never had it, so never showed it)."""
    value = fresh_value()
    redactor = SecretRedactor()
    redactor.add_known_secret(value, f"inject:{NAME}", source=None)
    shown = redactor.redact_text(f"token {value}", source="another-upstream")
    assert value not in shown
    assert redactor.restore_text(shown, source="sandbox") == shown
    assert redactor.restore_json({"command": shown}, source="sandbox") == {"command": shown}


async def test_an_unset_variable_is_a_start_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(NAME, raising=False)
    config = SandboxConfig(network="allow", inject_secrets={NAME: ["api.github.com"]})
    with pytest.raises(SandboxStartError) as caught:
        async with open_sandbox(config):
            pass  # pragma: no cover - it does not start
    assert caught.value.step == "inject_secrets"
    assert f"inject_secrets {NAME} is not set on this host" in str(caught.value)


@pytest.mark.parametrize("value", ["short1", "has a space in it", "tab\tin\tthe\tvalue"])
async def test_a_value_that_cannot_go_into_a_header_is_a_start_error_without_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NAME, value)
    config = SandboxConfig(network="allow", inject_secrets={NAME: ["api.github.com"]})
    with pytest.raises(SandboxStartError) as caught:
        async with open_sandbox(config):
            pass  # pragma: no cover - it does not start
    assert f"{NAME} has a value of {len(value)} characters" in str(caught.value)
    assert value not in str(caught.value)


def test_the_warden_gets_names_and_hosts_on_its_command_line_and_no_value_anywhere_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    value = fresh_value()
    host_env = {NAME: value, "KEEP": "kept", "OTHER": "x"}
    config = SandboxConfig(
        network="allow",
        inject_secrets={NAME: ["api.github.com", "127.0.0.2:8443"]},
        env_passthrough=["OTHER"],
    )
    plan = InjectionPlan.read(config, host_env)
    assert plan is not None
    assert value not in repr(plan)
    (secret,) = plan.secrets
    assert secret.value == value
    assert secret.placeholder != value
    argv = warden_argv(config, 9999, env_fd=5, injection=(plan, 7))
    assert argv[argv.index("--inject-fd") + 1] == "7"
    assert argv[argv.index("--inject-secret") + 1] == f"{NAME}=api.github.com,127.0.0.2:8443"
    # The hosts are the warden's to allow (as written); not repeated as --allow-domain.
    assert not any(item.startswith("--allow-domain") for item in argv)
    assert value not in " ".join(argv)
    # Not in the sandbox's variables (the warden sets the placeholder), not in the warden's.
    assert NAME not in sandbox_env(config, "", host_env)
    assert without_injected(host_env, plan) == {"KEEP": "kept", "OTHER": "x"}
    # A descriptor per warden run: each with its own CA, the same placeholder.
    first, second = plan.descriptor(), plan.descriptor()
    try:
        payloads = [decode_injection(os.pread(fd, 1 << 20, 0), "test") for fd in (first, second)]
    finally:
        for fd in (first, second):
            os.close(fd)
    assert payloads[0].ca_certificate != payloads[1].ca_certificate
    assert [p.secrets for p in payloads] == [plan.secrets, plan.secrets]
    assert value not in caplog.text
