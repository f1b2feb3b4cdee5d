"""``serve_egress_proxy``: accept connections, tell SOCKS5 from HTTP, serve each one.

The first byte decides: 0x05 is a SOCKS5 greeting, anything else is read as HTTP/1.1. A client
that says nothing within the handshake timeout is dropped; a client error ends only that client's
connection. Cancelling the service closes the listener and every connection and tunnel it
opened, and leaves no task behind.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Final, NoReturn

import trio

from ..concurrency import CAN_SPLICE, BufferedSocket
from ._connections import DEFAULT_MAX_RECORDS, ConnectionCallback, ConnectionLog
from ._decision_log import DEFAULT_WINDOW, DecisionLog
from ._dial import Dialer
from ._errors import SocksError
from ._events import ChangesCallback, EgressStats, EventCallback, EventSink, logger
from ._guard import SecretGuard
from ._http_proxy import HttpFrontEnd, refuse_in_tunnel
from ._inject import Injection
from ._intercept import intercept_tunnel
from ._policy import EgressPolicy
from ._routing import Resolver, system_resolver
from ._socks import connect_socks, read_socks_request
from ._throttle import DEFAULT_BURST, DEFAULT_RATE, Throttle

DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
DEFAULT_IDLE_TIMEOUT: Final = 60.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_MAX_CONNECTIONS: Final = 256
# How often the audit's changes are handed over at most (the first of a quiet spell at once).
DEFAULT_PUBLISH_INTERVAL: Final = 0.1
# accept(2) failures that mean "out of resources for now" (as in trio.serve_listeners).
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_SOCKS4_REJECTED: Final = bytes((0, 0x5B)) + bytes(6)
_TLS_HANDSHAKE: Final = 0x16
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


async def serve_egress_proxy(
    listener: trio.abc.Listener[trio.SocketStream],
    policy: EgressPolicy,
    *,
    resolver: Resolver = system_resolver,
    on_event: EventCallback | None = None,
    on_log: Callable[[str], None] | None = None,
    on_changes: ChangesCallback | None = None,
    on_connection: ConnectionCallback | None = None,
    stats: EgressStats | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    decisions_per_second: float = DEFAULT_RATE,
    decision_burst: int = DEFAULT_BURST,
    log_window: float = DEFAULT_WINDOW,
    records_per_window: int = DEFAULT_MAX_RECORDS,
    publish_interval: float = DEFAULT_PUBLISH_INTERVAL,
    zero_copy: bool = True,
    injection: Injection | None = None,
    task_status: trio.TaskStatus[EgressStats] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the egress proxy on ``listener`` until cancelled; the listener is closed then.

    ``resolver`` resolves names on the host (default: ``getaddrinfo``); ``on_event`` is called
    with every decision (it must not raise); ``on_log`` gets the decision log's lines (default:
    this package's logger at INFO), at most ``2 * 20 + 1`` per ``log_window`` seconds;
    ``on_changes`` gets the audit's changed entries (:meth:`EgressStats.take_changes`) at most
    every ``publish_interval`` seconds, and whenever the sandbox asks for its refusals;
    ``on_connection`` gets a record per connection (:mod:`._connections` says what one is per
    protocol), at most ``records_per_window`` one by one per ``log_window`` seconds and the
    rest summed when the window ends (it must not raise either); ``stats``
    collects counters (one is made if not given) and is what ``task_status.started`` reports.
    A client must send its whole request head within ``handshake_timeout`` seconds; an idle
    keep-alive connection is closed after ``idle_timeout``; resolving and connecting take at most
    ``connect_timeout``. At most ``max_connections`` clients are served at once (more wait in
    the listen backlog), and new connections and requests are taken at most
    ``decisions_per_second`` (after a burst of ``decision_burst``): faster clients wait.
    ``zero_copy``: relay with splice(2) where the kernel offers it. ``injection``: the secrets
    the sandbox holds as placeholders, replaced in requests to their hosts and refused elsewhere.
    """
    stats = EgressStats() if stats is None else stats
    log = DecisionLog(on_log or _log_info, log_window)
    connections = ConnectionLog(on_connection, log_window, records_per_window)
    events = EventSink(stats, log, on_event, on_changes, connections)
    guard = None if injection is None else SecretGuard(injection, resolver, handshake_timeout)
    dialer = Dialer(policy, resolver, events, connect_timeout, guard)
    zero_copy = zero_copy and CAN_SPLICE
    throttle = Throttle(decisions_per_second, decision_burst)
    http = HttpFrontEnd(dialer, handshake_timeout, idle_timeout, zero_copy, throttle)
    slots = trio.Semaphore(max_connections)

    async def serve_connection(stream: trio.SocketStream) -> None:
        stats.connections_open += 1
        try:
            async with stream:
                await _serve_client(BufferedSocket(stream), dialer, http, handshake_timeout)
        except _BROKEN as error:
            logger.debug("client connection ended: %r", error)
        except Exception:
            # A fault in one connection must not take egress away from every other one.
            logger.exception("egress proxy: internal error serving a connection")
        finally:
            stats.connections_open -= 1
            slots.release()

    try:
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(log.serve)
            nursery.start_soon(connections.serve)
            nursery.start_soon(events.serve_publishing, publish_interval)
            task_status.started(stats)
            while True:
                await throttle.take()
                await slots.acquire()
                try:
                    stream = await listener.accept()
                except OSError as error:
                    slots.release()
                    if error.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    logger.error("egress proxy: cannot accept (%s); retrying", error)
                    await trio.sleep(0.1)
                    continue
                except BaseException:
                    slots.release()
                    raise
                nursery.start_soon(serve_connection, stream)
    finally:
        # Connections closed after the window's task stopped are summed too: every one is in
        # exactly one record.
        connections.close_window()


def _log_info(line: str) -> None:
    logger.info("%s", line)


async def _serve_client(
    client: BufferedSocket, dialer: Dialer, http: HttpFrontEnd, handshake_timeout: float
) -> None:
    accepted_at = trio.current_time()
    with trio.move_on_at(accepted_at + handshake_timeout) as waited:
        if not await client.fill():
            return
    if waited.cancelled_caught:
        logger.info("dropped a client that sent nothing within %g s", handshake_timeout)
        return
    first = client.buffer[0]
    if first == 5:
        await _serve_socks(client, dialer, handshake_timeout, http.idle_timeout, http.zero_copy)
    elif first == 4:
        logger.info("refused a SOCKS4 client: only SOCKS5 is served (use socks5h://)")
        await client.stream.send_all(_SOCKS4_REJECTED)
    elif first == _TLS_HANDSHAKE:
        logger.info(
            "dropped a client that started TLS: the proxy speaks plain HTTP and SOCKS5 "
            "(use an http:// proxy URL)"
        )
    else:
        await http.serve(client, accepted_at)


async def _serve_socks(
    client: BufferedSocket,
    dialer: Dialer,
    handshake_timeout: float,
    idle_timeout: float,
    zero_copy: bool,
) -> None:
    deadline = trio.current_time() + handshake_timeout
    try:
        with trio.move_on_at(deadline) as waited:
            request = await read_socks_request(client)
    except SocksError as error:
        logger.info("SOCKS5 client refused: %s", error.reason)
        return
    if waited.cancelled_caught:
        logger.info("dropped a SOCKS5 client whose request did not arrive in time")
        return
    if request is None:
        return
    upstream = await connect_socks(client, request, dialer)
    if upstream is None:
        return
    async with upstream:
        guard = dialer.guard
        scoped = () if guard is None else guard.injection.scoped(upstream.destination)
        if scoped:
            await intercept_tunnel(
                client,
                upstream,
                dialer,
                "socks5",
                scoped,
                handshake_timeout=handshake_timeout,
                idle_timeout=idle_timeout,
            )
            return
        refused = await dialer.screen_tunnel("socks5", client, upstream)
        if refused is not None:
            await refuse_in_tunnel(client, refused)
            return
        await upstream.tunnel(client, zero_copy=zero_copy)
