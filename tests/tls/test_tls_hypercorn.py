"""hypercorn serving an in-memory mTLS context, reached by httpx over a real handshake."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio
from hypercorn.trio import serve
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseStartEvent,
    Scope,
)

from trio_sandbox.tls import CertificateChain, InMemoryTlsConfig, MtlsIdentity

HANG_GUARD_SECONDS = 10.0

# A client refused during the TLS 1.3 handshake has already sent its request when the server
# hangs up, so httpx reports either "server disconnected" (EOF first) or a read error (RST
# first). Both mean the connection was refused; a response would fail the test.
REFUSED = (httpx.RemoteProtocolError, httpx.ReadError)


async def hello_app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Smallest honest ASGI app: lifespan handled, HTTP answers with its scheme."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    body = f"hello over {scope['scheme']}".encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asynccontextmanager
async def serving(server_context: ssl.SSLContext) -> AsyncIterator[str]:
    """Run hypercorn on 127.0.0.1 (any port) with ``server_context``; yield its base URL."""
    config = InMemoryTlsConfig(server_context)
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, hello_app, config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield binds[0]
        finally:
            shutdown.set()


def test_config_turns_tls_on_with_the_given_context() -> None:
    context = CertificateChain.generate().server_ssl_context()
    config = InMemoryTlsConfig(context)
    assert config.ssl_enabled
    assert config.create_ssl_context() is context
    assert config.certfile is None  # no key file anywhere
    assert config.ssl_handshake_timeout == 10.0
    config.bind = ["127.0.0.1:0"]
    sockets = config.create_sockets()
    try:
        assert len(sockets.secure_sockets) == 1
        assert sockets.insecure_sockets == []
    finally:
        for sock in sockets.secure_sockets:
            sock.close()


async def test_httpx_reaches_hypercorn_over_mutual_tls() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with serving(server.server_ssl_context(client.ca_cert_pem())) as url:
            assert url.startswith("https://127.0.0.1:")
            # http2=True makes httpx offer h2; the server's ALPN picks http/1.1 anyway.
            async with httpx.AsyncClient(
                verify=client.client_ssl_context(server.ca_cert_pem()), http2=True
            ) as http:
                response = await http.get(f"{url}/")
            assert response.status_code == 200
            assert response.text == "hello over https"
            assert response.http_version == "HTTP/1.1"


async def test_httpx_with_the_chain_reaches_localhost() -> None:
    chain = CertificateChain.generate()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with serving(chain.server_ssl_context()) as url:
            port = url.rsplit(":", 1)[1]
            async with httpx.AsyncClient(verify=chain.client_ssl_context()) as http:
                response = await http.get(f"https://localhost:{port}/")
            assert response.text == "hello over https"


async def test_hypercorn_refuses_a_client_without_a_certificate() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    no_certificate = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_certificate.load_verify_locations(cadata=server.ca_cert_pem())
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with serving(server.server_ssl_context(client.ca_cert_pem())) as url:
            async with httpx.AsyncClient(verify=no_certificate) as http:
                with pytest.raises(REFUSED):
                    await http.get(f"{url}/")
            # The server is still healthy for a client that does present one.
            async with httpx.AsyncClient(
                verify=client.client_ssl_context(server.ca_cert_pem())
            ) as http:
                assert (await http.get(f"{url}/")).status_code == 200


async def test_hypercorn_refuses_a_client_from_another_ca() -> None:
    client, stranger = MtlsIdentity.generate_client(), MtlsIdentity.generate_client()
    server = MtlsIdentity.generate_server()
    stranger_context = stranger.client_ssl_context(server.ca_cert_pem())
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with (
            serving(server.server_ssl_context(client.ca_cert_pem())) as url,
            httpx.AsyncClient(verify=stranger_context) as http,
        ):
            with pytest.raises(REFUSED):
                await http.get(f"{url}/")
