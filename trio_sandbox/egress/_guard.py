"""Never silent: a placeholder going anywhere its value is not written is refused, named.

A placeholder sent where the proxy does not replace it would reach the server as a meaningless
string: a 401 at best, and the client's user none the wiser. So the proxy looks for placeholders
in everything it reads in the clear before a byte of it leaves: plain ``http://`` requests (any
host: the value would cross the network in clear), CONNECT lines and their fields, SOCKS5 host
names, and the first bytes of a plain tunnel (a cleartext head, raw placeholder bytes, or a TLS
ClientHello naming an injected host through a tunnel to somewhere else). Inside a TLS tunnel it
does not intercept it cannot look.

A refusal names the secret and the hosts it is scoped to, never its value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final

import attrs
import trio

from ..concurrency import BufferedSocket
from ._client_hello import is_tls_handshake, server_name
from ._errors import DestinationError, HttpError
from ._http_head import parse_request_head
from ._inject import (
    INJECT_SETTING,
    INTERCEPTED_PORTS,
    Injection,
    PlaceholderFound,
    PlaceholderMatcher,
)
from ._names import IPAddress, parse_host
from ._policy import Destination, RefusalKind, Refused, RuleKind
from ._routing import Resolver

# How long the addresses of an injected name are trusted for the by-address check.
ADDRESS_CACHE_SECONDS: Final = 30.0
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def _refused(target: str, found: PlaceholderFound, *, cleartext: bool = False) -> Refused:
    return Refused(target, RefusalKind.SECRET_OUT_OF_SCOPE, found.reason(cleartext=cleartext))


@attrs.define(eq=False)
class SecretGuard:
    """The placeholders of ``injection``'s secrets, looked for where they must not go."""

    injection: Injection
    resolver: Resolver
    # How long a plain tunnel waits for the client's first bytes before relaying unscreened.
    first_flight_wait: float
    matcher: PlaceholderMatcher = attrs.field(init=False)
    # name -> (when resolved, its addresses), for the by-address check.
    _addresses: dict[str, tuple[float, frozenset[IPAddress]]] = attrs.field(factory=dict)

    @matcher.default
    def _matcher(self) -> PlaceholderMatcher:
        return PlaceholderMatcher(self.injection.secrets)

    def host(self, target: str, host: str, where: str) -> Refused | None:
        """A placeholder in a host name (clients lower-case those: any case counts)."""
        found = self.matcher.find(host, ignore_case=True)
        return None if found is None else _refused(target, PlaceholderFound(found, where))

    def request(
        self,
        target: str,
        request_target: str,
        fields: Iterable[tuple[str, str]],
        *,
        cleartext: bool,
    ) -> Refused | None:
        """A placeholder in a request target (any case: it holds the host name) or in header
        fields (Basic credentials decoded)."""
        found = self.matcher.find(request_target, ignore_case=True)
        located = (
            PlaceholderFound(found, "the request target")
            if found is not None
            else self.matcher.find_in_head("", fields)
        )
        return None if located is None else _refused(target, located, cleartext=cleartext)

    async def by_address(self, destination: Destination) -> Refused | None:
        """An IP destination that is a current address of a name some secret is injected for
        (on this port), while that address itself is not an entry: the client would send the
        placeholder through a tunnel the proxy does not intercept."""
        address = destination.host
        if isinstance(address, str) or self.injection.scoped(destination):
            return None
        for secret in self.injection.secrets:
            for rule in secret.scope:
                if (
                    rule.kind is RuleKind.NAME
                    and isinstance(rule.host, str)
                    and rule.covers_port(destination.port, portless=INTERCEPTED_PORTS)
                    and address in await self._resolved(rule.host)
                ):
                    return Refused(
                        str(destination),
                        RefusalKind.INJECTED_BY_ADDRESS,
                        f"an address of {rule.host}, where {INJECT_SETTING} {secret.name} is"
                        f" replaced only when it is asked for by name; connect to"
                        f" {rule.host}:{destination.port}",
                    )
        return None

    async def _resolved(self, name: str) -> frozenset[IPAddress]:
        now = trio.current_time()
        cached = self._addresses.get(name)
        if cached is not None and now - cached[0] < ADDRESS_CACHE_SECONDS:
            return cached[1]
        try:
            addresses = frozenset(await self.resolver(name))
        except OSError:
            addresses = frozenset()
        self._addresses[name] = (now, addresses)
        return addresses

    def first_flight(self, data: bytes, destination: Destination) -> Refused | None:
        """The first bytes a client sent into a plain tunnel: a ClientHello naming an injected
        host other than the tunnel's, or a placeholder in them (a cleartext head's Basic
        credentials decoded)."""
        target = str(destination)
        if is_tls_handshake(data):
            name = server_name(data)
            refused = None if name is None else self._other_sni(name, destination)
            if refused is not None:
                return refused
        # A ClientHello's server name is lower-cased by the client: any case counts there.
        if (found := self.matcher.find_bytes(data, ignore_case=is_tls_handshake(data))) is not None:
            where = "the first data sent through the tunnel"
            return _refused(target, PlaceholderFound(found, where))
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            with contextlib.suppress(HttpError):
                head = parse_request_head(data[: head_end + 4])
                return self.request(target, head.target, head.fields, cleartext=True)
        return None

    def _other_sni(self, name: str, destination: Destination) -> Refused | None:
        try:
            host = parse_host(name)
        except DestinationError:
            return None
        if host == destination.host:
            return None
        secrets = self.injection.scoped(Destination(host, destination.port))
        if not secrets:
            return None
        names = ", ".join(secret.name for secret in secrets)
        return Refused(
            str(destination),
            RefusalKind.SECRET_OUT_OF_SCOPE,
            f"the TLS ClientHello names {name}, where {INJECT_SETTING} {names} is replaced,"
            f" through a tunnel to another host; connect to {name}:{destination.port} by name;"
            " nothing was sent",
        )


async def wait_first_flight(client: BufferedSocket, upstream: BufferedSocket) -> None:
    """Until the client's first bytes in a tunnel are in its buffer, the upstream spoke first
    (SSH, SMTP: then nothing is held back), or either side closed."""
    if client.buffer or upstream.buffer:
        return
    async with trio.open_nursery() as nursery:

        async def fill(side: BufferedSocket) -> None:
            with contextlib.suppress(*_BROKEN):
                await side.fill()
            nursery.cancel_scope.cancel()

        nursery.start_soon(fill, client)
        nursery.start_soon(fill, upstream)
