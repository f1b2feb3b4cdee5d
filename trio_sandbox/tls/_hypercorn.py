"""A hypercorn ``Config`` that serves TLS from an ``ssl.SSLContext`` built in memory.

hypercorn 0.18 turns TLS on only when ``certfile`` and ``keyfile`` paths are set: its
``ssl_enabled`` property decides whether ``bind`` sockets become TLS listeners, and
``create_ssl_context()`` builds a context from those files. We override both, so no key
file is ever needed and the context keeps everything we set on it (client-certificate
requirement, trusted CA, TLS 1.2 minimum, ALPN).
"""

from __future__ import annotations

import ssl

from hypercorn.config import Config

from ._identity import HTTP_ALPN_PROTOCOLS

# hypercorn waits 60 s by default for a TLS handshake; a peer that opens a connection and
# says nothing should not hold a connection slot that long.
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0


class InMemoryTlsConfig(Config):
    """hypercorn ``Config`` whose TLS comes from ``ssl_context``, not from files.

    ``bind`` addresses serve TLS with that context. Build the context with
    ``MtlsIdentity.server_ssl_context`` or ``CertificateChain.server_ssl_context``; it
    offers only ``http/1.1`` over ALPN (Streamable HTTP and WebSocket both live there), so
    hypercorn never switches to its HTTP/2 protocol.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__()
        self._in_memory_ssl_context = ssl_context
        self.ssl_handshake_timeout = handshake_timeout
        # Only read by the base create_ssl_context, which we replace; kept truthful.
        self.alpn_protocols = list(HTTP_ALPN_PROTOCOLS)

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._in_memory_ssl_context
