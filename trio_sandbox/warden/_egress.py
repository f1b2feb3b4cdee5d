"""``--network allow``: the egress proxy, listening inside the sandbox, judging on the host.

The sandbox keeps only its loopback. Once its namespaces exist, the warden makes a socket in the
sandbox's network namespace the same way it publishes a port (:mod:`._publish`), binds it to
``127.0.0.1:EGRESS_PORT`` there and serves :func:`trio_sandbox.egress.serve_egress_proxy` on it
from the warden's own nursery: policy, name resolution and dialing happen in the warden, on the
host, and no relay process runs inside. Connections through a published port wait until the
proxy listens, so no tool call can run a command before its proxy exists.
"""

from __future__ import annotations

import functools
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from ..contract import (
    EGRESS_LINE_PREFIX,
    EGRESS_PORT,
    EGRESS_PROXY_VARIABLE,
    INJECT_SECRET_OPTION,
    InjectRequest,
)
from ..egress import (
    ConnectionRecord,
    Destination,
    DestinationRule,
    EgressPolicy,
    Injection,
    InjectionError,
    PolicyError,
    RuleKind,
    proxy_environment,
    serve_egress_proxy,
)
from ._backend import Backend
from ._errors import WrapRequestError
from ._publish import Connector, SandboxSockets
from ._report import Reporter
from ._spec import WrapSpec

if TYPE_CHECKING:
    from ..tls import LeafContexts
    from ._inject import InjectionMaterial

_LISTEN_BACKLOG = 128


def egress_policy(spec: WrapSpec, backend: Backend | None) -> EgressPolicy:
    """The policy of ``--network allow``, from its entries (the command line's check);
    ``backend`` None: not chosen yet (``auto`` chooses an isolating one)."""
    if backend is not None and not backend.isolates:
        raise WrapRequestError(
            "--network allow needs an isolating back end (bwrap, podman, docker): the process"
            " back end cannot keep a command off the network"
        )
    try:
        policy = EgressPolicy.parse(allow=spec.allow_domains, deny=spec.deny_domains)
    except PolicyError as error:
        option = "--allow-domain" if error.setting == "allow_domains" else "--deny-domain"
        raise WrapRequestError(f"{option}: {error}") from None
    # inject_secrets' hosts are allowed implicitly, each entry exactly as written (never with a
    # port added: an exact name with a port reaches private addresses), and none may be denied.
    listed = {rule.entry for rule in policy.allow}
    added: list[DestinationRule] = []
    for request in spec.inject:
        for rule in inject_rules(request):
            for deny in policy.deny:
                if deny.denies_some_of(rule):
                    raise WrapRequestError(
                        f"{INJECT_SECRET_OPTION} {request.name}: {rule.entry!r} is denied by"
                        f" --deny-domain {deny.entry!r}"
                    )
            if rule.entry not in listed:
                listed.add(rule.entry)
                added.append(rule)
    return attrs.evolve(policy, allow=(*policy.allow, *added)) if added else policy


def inject_rules(request: InjectRequest) -> tuple[DestinationRule, ...]:
    """The hosts of one inject_secrets entry as destination rules (allow_domains' grammar)."""
    try:
        return tuple(
            DestinationRule.parse(host, f"inject_secrets {request.name}") for host in request.hosts
        )
    except PolicyError as error:
        raise WrapRequestError(f"{INJECT_SECRET_OPTION}: {error}") from None


def egress_environment() -> tuple[tuple[str, str], ...]:
    """What every command in the sandbox gets: the proxy variables its tools read, and where
    the tool server asks for refusals."""
    variables = proxy_environment(EGRESS_PORT)
    variables[EGRESS_PROXY_VARIABLE] = f"127.0.0.1:{EGRESS_PORT}"
    return tuple(variables.items())


def print_log_line(line: str) -> None:
    """The proxy's decision log on the warden's stderr, for people (bounded per second): the
    host counts decisions from the audit on the report channel, never from these lines."""
    print(f"{EGRESS_LINE_PREFIX}{line}", file=sys.stderr, flush=True)


@attrs.define(eq=False)
class InterceptionContexts:
    """The TLS contexts of inject_secrets' interception, made on demand in worker threads: the
    CA (from the injection descriptor, key in memory only) and its leaves per host, and the
    context towards the real hosts. One mint at a time per host: concurrent CONNECTs to one
    host wait for the same leaf. :mod:`trio_sandbox.tls` (and cryptography, ~85 ms) is imported
    on first use, never before the sandbox starts."""

    material: InjectionMaterial = attrs.field(repr=False)
    _leaves: LeafContexts | None = attrs.field(default=None, init=False)
    _upstream: ssl.SSLContext | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _making: dict[str, trio.Event] = attrs.field(factory=dict, init=False)

    def _leaf_contexts(self) -> LeafContexts:
        """In a worker thread: the CA, read once."""
        with self._lock:
            if self._leaves is None:
                from ..tls import (
                    InterceptionAuthority,
                    InterceptionAuthorityError,
                    InterceptionScopeError,
                    LeafContexts,
                )

                payload = self.material.payload
                try:
                    authority = InterceptionAuthority.from_pem(
                        payload.ca_certificate, payload.ca_key, self.material.scope_hosts()
                    )
                except (InterceptionAuthorityError, InterceptionScopeError) as error:
                    raise WrapRequestError(f"inject_secrets: {error}") from None
                self._leaves = LeafContexts(authority)
            return self._leaves

    def _mint(self, host: str) -> ssl.SSLContext:
        return self._leaf_contexts().context(host)

    def _make_upstream(self) -> ssl.SSLContext:
        from ..tls import upstream_context

        return upstream_context()

    async def _once(self, key: str, ready: Callable[[], ssl.SSLContext | None]) -> bool:
        """Wait while another task makes ``key``; True when this task must make it (it then
        calls :meth:`_made`), False when ``ready()`` has it."""
        while True:
            if ready() is not None:
                return False
            making = self._making.get(key)
            if making is None:
                self._making[key] = trio.Event()
                return True
            await making.wait()

    def _made(self, key: str) -> None:
        self._making.pop(key).set()

    def _cached_leaf(self, host: str) -> ssl.SSLContext | None:
        return self._leaves.cached(host) if self._leaves is not None else None

    async def server_context(self, destination: Destination) -> ssl.SSLContext:
        """The context presenting a leaf for ``destination``'s host."""
        host = str(destination.host).lower()
        if await self._once(host, functools.partial(self._cached_leaf, host)):
            try:
                return await trio.to_thread.run_sync(self._mint, host)
            finally:
                self._made(host)
        context = self._cached_leaf(host)
        return context if context is not None else await self.server_context(destination)

    async def upstream_context(self) -> ssl.SSLContext:
        """The client context towards the real hosts (made once)."""
        if await self._once("", lambda: self._upstream):
            try:
                self._upstream = await trio.to_thread.run_sync(self._make_upstream)
            finally:
                self._made("")
        assert self._upstream is not None
        return self._upstream

    def injection(self) -> Injection:
        try:
            return Injection(self.material.secrets, self.server_context, self.upstream_context)
        except InjectionError as error:
            raise WrapRequestError(str(error)) from None

    async def warm_up(self) -> None:
        """Right after the proxy listens: the CA read, the leaves of the exact hosts (no
        wildcard) on the ports they are intercepted on, and the upstream context made."""
        for secret in self.material.secrets:
            for rule in secret.scope:
                if rule.kind is not RuleKind.WILDCARD:
                    await self.server_context(Destination(rule.host, rule.port or 443))
        await self.upstream_context()


def injection_line(material: InjectionMaterial) -> str:
    """The start line naming what is intercepted (names and hosts, never a value)."""
    scoped = "; ".join(
        f"{request.name} \u2192 {', '.join(request.hosts)}" for request in material.requests
    )
    return f"inject_secrets: {scoped} (TLS intercepted there only)"


@attrs.define(eq=False)
class SandboxEgress:
    """The egress proxy of one sandbox; ``listening`` is set once it accepts connections."""

    policy: EgressPolicy
    report: Reporter
    listening: trio.Event = attrs.Factory(trio.Event)
    # inject_secrets' values and CA (None: nothing injected).
    injected: InjectionMaterial | None = attrs.field(default=None, repr=False)

    async def serve(
        self, sockets: SandboxSockets, sandbox_exists: Callable[[], Awaitable[None]]
    ) -> None:
        """Wait for the sandbox's namespaces, listen in them and serve until cancelled."""
        await sandbox_exists()
        listening_socket = await sockets.socket()
        try:
            listening_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                await listening_socket.bind(("127.0.0.1", EGRESS_PORT))
            except OSError as error:
                raise OSError(
                    error.errno,
                    f"cannot listen for the egress proxy on 127.0.0.1:{EGRESS_PORT} in the"
                    f" sandbox: {error.strerror}",
                ) from None
            listening_socket.listen(_LISTEN_BACKLOG)
        except BaseException:
            listening_socket.close()
            raise
        listener = trio.SocketListener(listening_socket)
        contexts = InterceptionContexts(self.injected) if self.injected is not None else None
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_egress_proxy,
                    listener,
                    self.policy,
                    on_log=print_log_line,
                    on_changes=functools.partial(self.report.send, "egress"),
                    on_connection=self.report_connection if self.report.enabled else None,
                    injection=contexts.injection() if contexts is not None else None,
                )
            )
            self.listening.set()
            if contexts is not None:
                assert self.injected is not None
                print_log_line(injection_line(self.injected))
                await contexts.warm_up()

    def report_connection(self, record: ConnectionRecord) -> None:
        """One connection of the sandbox (or a window's sum of them) for the host's audit."""
        self.report.send("connection", record.to_report())

    def after_listening(self, connect: Connector) -> Connector:
        """``connect`` that hands over its connection only once the proxy listens."""

        async def connect_when_listening(port: int) -> trio.SocketStream:
            stream = await connect(port)
            try:
                await self.listening.wait()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return stream

        return connect_when_listening
