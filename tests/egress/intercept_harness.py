"""An in-process egress proxy that intercepts ``secure.test`` (the HTTPS origin of
:func:`serving_site`) with a test-made interception CA, as the warden's Injection would: the
secret ``GITHUB_TOKEN`` is the value the origin's ``/auth`` and ``/private/`` expect."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest

from tests.egress.egress_harness import (
    Certificates,
    Origins,
    RunningProxy,
    make_certificates,
    map_resolver,
    running_proxy,
    serving_site,
)
from trio_sandbox.egress import Destination, EgressPolicy, InjectedSecret, Injection
from trio_sandbox.egress._names import parse_host

VALUE = "ghp_R3alV4lue0fTheT0kenR3alV4lue0fTheT0"
PLACEHOLDER = "ghp_Pl4ceh0lderPl4ceh0lderPl4ceh0lderPl"
OTHER_VALUE = "sk-0therRealValue000000"
OTHER_PLACEHOLDER = "sk-0therPlaceholder0000"
NAME = "GITHUB_TOKEN"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@attrs.frozen
class Setup:
    proxy: RunningProxy
    origins: Origins
    interception_ca: Certificates
    home: Path

    @property
    def host(self) -> str:
        return f"secure.test:{self.origins.https}"


def make_injection(
    interception: Certificates, origin_ca: Path, port: int, host: str = "secure.test"
) -> Injection:
    """GITHUB_TOKEN injected for ``host:port`` (a name or an IP literal), OTHER for
    other.test."""

    async def server_context(destination: Destination) -> ssl.SSLContext:
        assert destination == Destination(parse_host(host), port)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(interception.cert, interception.key)
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def upstream_context() -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(origin_ca))
        context.set_alpn_protocols(["http/1.1"])
        return context

    return Injection(
        (
            InjectedSecret(NAME, VALUE, PLACEHOLDER, (f"{host}:{port}",)),
            InjectedSecret("OTHER", OTHER_VALUE, OTHER_PLACEHOLDER, ("other.test",)),
        ),
        server_context,
        upstream_context,
    )


@asynccontextmanager
async def intercepting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, origin_ca: Path | None = None
) -> AsyncIterator[Setup]:
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", VALUE)
    interception = make_certificates(directory(tmp_path / "intercept"), ("secure.test",))
    async with serving_site(tmp_path) as origins:
        injection = make_injection(
            interception, origin_ca or origins.certificates.ca, origins.https
        )
        resolver = map_resolver({"secure.test": [LOOPBACK], "plain.test": [LOOPBACK]})
        policy = EgressPolicy.parse([f"secure.test:{origins.https}", f"plain.test:{origins.https}"])
        async with running_proxy(policy, resolver, injection=injection) as proxy:
            yield Setup(proxy, origins, interception, tmp_path / "home")
            # Nothing is left open: every client connection and upstream was closed.
            await proxy.wait_until_idle()


def directory(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
