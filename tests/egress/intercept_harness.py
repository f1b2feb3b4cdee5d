"""An in-process egress proxy that intercepts ``secure.test`` (the HTTPS origin of
:func:`serving_site`) with a test-made interception CA, as the warden's Injection would: the
secret ``GITHUB_TOKEN`` is the value the origin's ``/auth`` and ``/private/`` expect."""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from tests.egress.egress_harness import (
    Certificates,
    Origins,
    RunningProxy,
    make_certificates,
    map_resolver,
    open_connection,
    receive_until,
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
# A second secret for secure.test with two special characters (how each is spelled varies).
MIXED_NAME = "MIXED_TOKEN"
MIXED_VALUE = "ab-cd_ef12345678"
MIXED_PLACEHOLDER = "XY-ZW_QR98765432"
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
    interception: Certificates,
    origin_ca: Path,
    port: int,
    host: str = "secure.test",
    *,
    mixed: bool = False,
) -> Injection:
    """GITHUB_TOKEN injected for ``host:port`` (a name or an IP literal), OTHER for
    other.test; ``mixed``: MIXED_TOKEN for ``host:port`` too."""

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
            *(
                [InjectedSecret(MIXED_NAME, MIXED_VALUE, MIXED_PLACEHOLDER, (f"{host}:{port}",))]
                if mixed
                else []
            ),
        ),
        server_context,
        upstream_context,
    )


@asynccontextmanager
async def intercepting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    origin_ca: Path | None = None,
    mixed: bool = False,
    timeouts: tuple[float, float] = (10.0, 60.0),
) -> AsyncIterator[Setup]:
    """``timeouts``: the proxy's handshake and idle timeouts."""
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", VALUE)
    interception = make_certificates(directory(tmp_path / "intercept"), ("secure.test",))
    async with serving_site(tmp_path) as origins:
        injection = make_injection(
            interception, origin_ca or origins.certificates.ca, origins.https, mixed=mixed
        )
        resolver = map_resolver({"secure.test": [LOOPBACK], "plain.test": [LOOPBACK]})
        policy = EgressPolicy.parse([f"secure.test:{origins.https}", f"plain.test:{origins.https}"])
        async with running_proxy(
            policy,
            resolver,
            injection=injection,
            handshake_timeout=timeouts[0],
            idle_timeout=timeouts[1],
        ) as proxy:
            yield Setup(proxy, origins, interception, tmp_path / "home")
            # Nothing is left open: every client connection and upstream was closed.
            await proxy.wait_until_idle()


def directory(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


async def connect_through(setup: Setup, target: str) -> trio.SocketStream:
    """A tunnel to ``target`` (granted)."""
    stream = await open_connection(setup.proxy.port)
    await stream.send_all(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert (await receive_until(stream, b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    return stream


async def tls_through(setup: Setup, host: str | None = None) -> trio.SSLStream[trio.SocketStream]:
    target = host or setup.host
    stream = await connect_through(setup, target)
    context = ssl.create_default_context(cafile=str(setup.interception_ca.ca))
    tls = trio.SSLStream(stream, context, server_hostname=target.rpartition(":")[0])
    await tls.do_handshake()
    return tls


async def exchange(
    tls: trio.SSLStream[trio.SocketStream], head: str, bound: float = math.inf
) -> bytes:
    """Send ``head``, read until the proxy closes (a close without close_notify included);
    :class:`trio.TooSlowError` if it does not within ``bound`` seconds."""
    data = b""
    async with tls:
        await tls.send_all(head.encode())
        with trio.fail_after(bound):
            try:
                while chunk := await tls.receive_some(65536):
                    data += chunk
            except trio.BrokenResourceError:
                pass
    return data


@asynccontextmanager
async def scripted_origin(
    tmp_path: Path,
    serve: Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]],
    timeouts: tuple[float, float] = (10.0, 60.0),
) -> AsyncIterator[Setup]:
    """A proxy intercepting secure.test, whose origin is ``serve`` (given each connection's
    server-side TLS on 127.0.0.1): for what the origin server cannot do (close on cue,
    record the bytes it gets)."""
    origin_certs = make_certificates(directory(tmp_path / "origin"), ("secure.test",))
    interception = make_certificates(directory(tmp_path / "intercept"), ("secure.test",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(origin_certs.cert, origin_certs.key)
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
        async with tls:
            await serve(tls)

    injection = make_injection(interception, origin_certs.ca, port)
    policy = EgressPolicy.parse([f"secure.test:{port}"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        async with running_proxy(
            policy,
            map_resolver({"secure.test": [LOOPBACK]}),
            injection=injection,
            handshake_timeout=timeouts[0],
            idle_timeout=timeouts[1],
        ) as proxy:
            yield Setup(proxy, Origins(tmp_path, origin_certs, 0, port), interception, tmp_path)
        nursery.cancel_scope.cancel()
