"""The OAuth token store attacked by the code in the sandbox, as root and as an ordinary user:
tokens kept where the proxy keeps them (saved by the product's own store, as that user) are not on
the sandbox's file system, a volume that would bring them in is refused before anything starts,
and neither way does a token reach anything the host prints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.cli_harness import run_cli
from tests.support.sandbox_users import SandboxUser

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

STORE_CHILD = Path(__file__).resolve().parents[1] / "oauth" / "store_child.py"
ACCESS = "probe-access-" + "token-7c1e9a0b52d4"


async def _store_tokens(user: SandboxUser, home: Path) -> Path:
    """A login's tokens in ``home``'s store (where run_cli's children look), as ``user``."""
    directory = home / "state" / "trio-sandbox" / "oauth"
    plan = {"directory": str(directory), "ops": [["save", "forge", ACCESS], ["load", "forge"]]}
    results = await user.run_json(
        str(STORE_CHILD), home=home, stdin=json.dumps(plan).encode(), limit=60
    )
    assert results == [{"ok": None}, {"ok": ACCESS}]
    return directory


@needs_bwrap
async def test_the_sandbox_cannot_read_the_token_store(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    directory = await _store_tokens(sandbox_user, workspace)
    token_file = directory / "forge.json"
    command = (
        f"cat {token_file}; cat {token_file.parent}/*; ls -a {workspace};"
        f" grep -rs {ACCESS[:12]} /tmp /home /root {workspace} || echo not-found"
    )
    done = await run_cli(
        ["call", "run_command", json.dumps({"command": command})],
        home=workspace,
        user=sandbox_user,
    )
    assert done.returncode == 0, done.stderr
    assert "No such file or directory" in done.stdout
    assert "not-found" in done.stdout
    for text in (done.stdout, done.stderr):
        assert ACCESS not in text
        assert "refresh-" + ACCESS not in text
        assert "client-secret-value" not in text


@needs_bwrap
@pytest.mark.parametrize("mode", ["", ":ro"])
async def test_a_volume_that_would_bring_the_store_in_is_refused(
    sandbox_user: SandboxUser, workspace: Path, mode: str
) -> None:
    await _store_tokens(sandbox_user, workspace)
    done = await run_cli(
        [
            "call",
            "--volume",
            f"{workspace}:/work{mode}",
            "run_command",
            json.dumps({"command": "cat /work/state/trio-sandbox/oauth/forge.json"}),
        ],
        home=workspace,
        user=sandbox_user,
    )
    assert done.returncode != 0
    assert "contains the OAuth token store" in done.stderr
    assert "warden started" not in done.stderr  # refused before any sandbox ran
    assert ACCESS not in done.stdout + done.stderr
