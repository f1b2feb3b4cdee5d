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
import sys
from collections.abc import Awaitable, Callable

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
    DestinationRule,
    EgressPolicy,
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
                if denies(deny, rule):
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


def denies(deny: DestinationRule, rule: DestinationRule) -> bool:
    """Whether the deny rule ``deny`` refuses some of what the allow rule ``rule`` covers
    where it would inject (its host, or under a wildcard the names a deny name covers)."""
    if rule.kind is RuleKind.WILDCARD:
        host_denied = deny.kind is not RuleKind.ADDRESS and (
            rule.host == deny.host or str(rule.host).endswith("." + str(deny.host))
        )
    else:
        host_denied = deny.covers_host(rule.host, subdomains=True)
    if not host_denied:
        return False
    if deny.port is None or rule.port is None:
        return True
    return deny.port == rule.port


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
class SandboxEgress:
    """The egress proxy of one sandbox; ``listening`` is set once it accepts connections."""

    policy: EgressPolicy
    report: Reporter
    listening: trio.Event = attrs.Factory(trio.Event)

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
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_egress_proxy,
                    listener,
                    self.policy,
                    on_log=print_log_line,
                    on_changes=functools.partial(self.report.send, "egress"),
                )
            )
            self.listening.set()

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
