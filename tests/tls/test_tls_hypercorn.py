"""hypercorn (through serve_http) serving an in-memory mTLS context, reached by httpx."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from trio_sandbox.mcp import BoundServer, serve_http
from trio_sandbox.tls import CertificateChain, MtlsIdentity

HANG_GUARD_SECONDS = 10.0

# A client refused during the TLS 1.3 handshake has already sent its request when the server
# hangs up, so httpx reports either "server disconnected" (EOF first) or a read error (RST
# first). Both mean the connection was refused; a response would fail the test.
REFUSED = (httpx.RemoteProtocolError, httpx.ReadError)


async def hello_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
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
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asynccontextmanager
async def serving(server_context: ssl.SSLContext) -> AsyncIterator[str]:
    """Serve ``hello_app`` on 127.0.0.1 (any port) with ``server_context``; yield its base URL."""
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(
            partial(serve_http, hello_app, ssl_context=server_context, path="")
        )
        yield bound.url
        nursery.cancel_scope.cancel()


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
