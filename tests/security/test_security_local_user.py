"""Another local user against a running sandbox (the fourth attacker of the threat model).

The owner (root, and an ordinary user) runs ``trio-sandbox run`` with a secret passed into the
sandbox (``--secret-env``) and its client bundle on disk; another local user (uid 61000, with
the system's python3) then looks for the secret in every process's command line and environment,
reads the bundle, and speaks HTTPS to the proxy and to the sandbox's published port without a
client certificate and with one of its own CA. Every attempt must fail, and the owner's next
call must work.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import trio

from tests.cli.cli_harness import CHILD_LIMIT, RunningCli, free_port, run_cli, start_cli
from tests.support.sandbox_users import SETPRIV, SandboxUser
from trio_sandbox.tls import CertificateChain

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

PROBE = Path(__file__).with_name("local_user_probe.py")
# Not 65534: a sandbox started by root with no volume runs as nobody, and shares that uid.
STRANGER = 61000
SECRET = "ghp_" + "Q7x9LmN2pR4sT6vW8yZ0aB1cD3eF5gH7iJ9k"


async def probe_as_another_user(plan: dict[str, object]) -> dict[str, object]:
    argv = [
        SETPRIV,
        f"--reuid={STRANGER}",
        f"--regid={STRANGER}",
        "--clear-groups",
        "--inh-caps=-all",
        "/usr/bin/python3",
        "-c",
        PROBE.read_text(),
        json.dumps(plan),
    ]
    done = await trio.run_process(
        argv, capture_stdout=True, capture_stderr=True, check=False, cwd="/"
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


async def test_another_local_user_gets_nothing_from_a_running_sandbox(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root (as CI has)")
    home = workspace.parent if sandbox_user.switch else tmp_path
    bundle = workspace / "bundle"
    port = free_port()
    run = [
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        "--client-cert-dir",
        str(bundle),
        "--secret-env",
        "PROBE_TOKEN",
        "--env-passthrough",
        "PROBE_PASSED",
    ]
    passed = {"PROBE_TOKEN": SECRET, "PROBE_PASSED": SECRET[::-1]}
    strangers = CertificateChain.generate().write_client_bundle(tmp_path / "strangers")
    with trio.fail_after(CHILD_LIMIT * 2):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(run, home=home, user=sandbox_user, extra_env=passed)
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            url = (await running.wait_for(r"proxy listening at (\S+)"))[1]
            await running.wait_for("client certificate bundle")
            plan = {
                "secret": SECRET,
                "bundle": str(bundle),
                "proxy_port": port,
                "owner": process.pid,
                "cert": strangers.client_cert.read_text(),
                "key": strangers.client_key.read_text(),
            }
            report = await probe_as_another_user(plan)
            reversed_report = await probe_as_another_user({**plan, "secret": SECRET[::-1]})
            status = await run_cli(
                ["status", "--url", url, "--client-cert-dir", str(bundle)],
                home=home,
                user=sandbox_user,
            )
            nursery.cancel_scope.cancel()
    assert report["uid"] == STRANGER
    # The secret is in no command line any user can read, and in no environment this user can.
    assert report["holding"] == {"cmdline": [], "environ": []}
    assert reversed_report["holding"] == {"cmdline": [], "environ": []}
    # The bundle's directory is the owner's alone.
    assert report["bundle_listing"] == "PermissionError"
    assert report["bundle"] == {}
    # Neither the proxy nor the sandbox's published port serves anyone without the owner's key.
    ports = report["no_cert"]
    assert isinstance(ports, dict)
    assert len(ports) == 2, report  # the proxy and the sandbox's one published port
    assert all(outcome.startswith("refused") for outcome in ports.values()), report
    own_ca = report["own_ca"]
    assert isinstance(own_ca, dict)
    assert all(outcome.startswith("refused") for outcome in own_ca.values()), report
    # The owner's next call works.
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["health"]["healthy"] is True
