"""A sandbox whose bind volume covers the OAuth token store is refused (review finding 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trio_sandbox.oauth import OAuthSettings
from trio_sandbox.proxy import HttpUpstream
from trio_sandbox.sandbox import SandboxConfig


def _oauth_upstream() -> HttpUpstream:
    return HttpUpstream("remote", "https://mcp.example/mcp", oauth=OAuthSettings())


@pytest.mark.parametrize("suffix", ["", ":ro"])
def test_a_volume_covering_the_token_store_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    # An OAuth upstream: refused even before any login made the directory.
    with pytest.raises(ValueError, match="contains the OAuth token store") as caught:
        SandboxConfig(volumes=[f"{home}:/home{suffix}"], upstreams=[_oauth_upstream()])
    assert f"{home}:/home" in str(caught.value)
    # Through a symbolic link to the home: the real paths are compared.
    link = tmp_path / "link"
    link.symlink_to(home)
    with pytest.raises(ValueError, match="contains the OAuth token store"):
        SandboxConfig(volumes=[f"{link}:/home{suffix}"], upstreams=[_oauth_upstream()])
    # No OAuth upstream and no stored tokens: nothing to protect.
    SandboxConfig(volumes=[f"{home}:/home{suffix}"])
    # Stored tokens (of any configuration): refused without an OAuth upstream too.
    (home / "state" / "trio-sandbox" / "oauth").mkdir(parents=True, mode=0o700)
    with pytest.raises(ValueError, match="contains the OAuth token store"):
        SandboxConfig(volumes=[f"{home}/state:/state{suffix}"])
    # A narrower volume beside the store: fine.
    (home / "work").mkdir()
    SandboxConfig(volumes=[f"{home}/work:/work{suffix}"], upstreams=[_oauth_upstream()])
    assert os.path.isdir(home / "state" / "trio-sandbox" / "oauth")
