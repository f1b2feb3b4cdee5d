"""A real HTTPS origin for inject_secrets tests through ``open_sandbox`` and the CLI: its
``/auth`` expects the value, and the warden trusts its test CA through ``SSL_CERT_FILE`` in the
environment it inherits from the program that embeds the sandbox."""

from __future__ import annotations

import secrets
import shutil
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.egress.egress_harness import Origins, serving_site
from trio_sandbox.sandbox import SandboxConfig

ORIGIN_HOST = "127.0.0.2"
NAME = "GITHUB_TOKEN"
_ALPHANUMERIC = string.ascii_letters + string.digits


def fresh_value(prefix: str = "ghp_", length: int = 36) -> str:
    """A token no process holds by chance (GitHub-shaped by default)."""
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


@attrs.frozen
class InjectOrigin:
    origins: Origins
    # The inject_secrets entry of its HTTPS port (an IP literal: the warden resolves with the
    # system's resolver, which knows no test names).
    entry: str
    # Its test CA, readable by every user (the ordinary user's warden reads it).
    ca: Path

    def host_environment(self, name: str, value: str) -> dict[str, str]:
        """What the embedding program's environment needs: the value, and the trust store."""
        return {name: value, "SSL_CERT_FILE": str(self.ca)}

    def config(
        self, name: str, value: str, monkeypatch: pytest.MonkeyPatch, **more: Any
    ) -> SandboxConfig:
        """A sandbox of this process injecting ``name`` for the origin (its environment set
        for it), with ``more`` settings."""
        for key, setting in self.host_environment(name, value).items():
            monkeypatch.setenv(key, setting)
        more.setdefault("stop_grace", 5.0)
        return SandboxConfig(network="allow", inject_secrets={name: [self.entry]}, **more)


@asynccontextmanager
async def origin_expecting(
    directory: Path, value: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InjectOrigin]:
    """The origin on 127.0.0.2 whose ``/auth`` wants ``value``. It learns it from its
    environment at its start only: the test's environment (which the warden inherits) never
    holds the value under another name than the injected one."""
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", value)
    async with serving_site(directory / "origin", host=ORIGIN_HOST) as origins:
        monkeypatch.delenv("ORIGIN_EXPECT_TOKEN")
        ca = directory / "origin-ca.pem"
        shutil.copyfile(origins.certificates.ca, ca)
        ca.chmod(0o644)
        yield InjectOrigin(origins, f"{ORIGIN_HOST}:{origins.https}", ca)


def git_clone_command(name: str, entry: str) -> str:
    """git with the placeholder as URL user-info (sent as Basic credentials)."""
    return (
        f'git clone -q "https://x-access-token:${name}@{entry}/private/repo.git"'
        " /tmp/clone && cat /tmp/clone/README"
    )


def pip_download_command(name: str, entry: str, package: str) -> str:
    """pip with the placeholder in its index URL."""
    return (
        "python3 -m pip download -q --no-deps --no-cache-dir --retries 1 --index-url"
        f' "https://__token__:${name}@{entry}/private/simple/" -d /tmp/got {package}'
        " && ls /tmp/got"
    )
