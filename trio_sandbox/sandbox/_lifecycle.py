"""``open_sandbox``: the sandbox, its proxy and its health monitor in one cancel scope.

    open_sandbox(config)
      nursery (sandbox scope)
      ├─ spare pool (_spares, warm_spares > 0 or ephemeral mode): sandboxes started ahead,
      │                 each a generation (launcher: warden child, CA parser, mutual-TLS
      │                 session, tools listed) handed to one taker and torn down after it
      ├─ supervisor (_supervisor) ── a spare moved onto the upstream, or (no pool) a generation
      │                 nursery of its own (cancelled and reopened to respawn)
      ├─ proxy server (serve_proxy): the one endpoint clients use, stable across respawns
      ├─ health monitor (_monitor, persistent mode)
      └─ per-client sandboxes (_ephemeral: every client's in ephemeral mode, those of
                                 handles in both modes), one generation each

Leaving the ``async with`` cancels the scope: the proxy shuts down gracefully within a bound and
the warden gets SIGINT, then SIGKILL for its whole process group after ``stop_grace``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from ..concurrency import exception_leaves, single_error
from ..mcp import (
    CallToolResult,
    McpClient,
    ProgressCallback,
    RequestContext,
    Resource,
    ResourceContents,
    Tool,
    memory_transport,
    open_mcp_client,
)
from ..observe import LifecyclePhase, Observer, SandboxGauges, open_observer
from ..proxy import HttpFace, OutputGuard, ProxyFace, ProxyHandle, Upstream, serve_proxy
from ..redact import MIN_KNOWN_SECRET_LENGTH, KnownSecretTooShort
from ..tls import CertificateChain
from ._config import SandboxConfig, SandboxMode
from ._ephemeral import SessionSandboxes
from ._errors import SandboxStartError
from ._generation import first_line
from ._handles import HANDLE_META_KEY, HANDLE_RESOURCE
from ._health import SandboxHealth
from ._inject import InjectionPlan
from ._launcher import Launched, Launcher, LaunchHooks, secret_environment, warden_launcher
from ._limit_watch import limit_numbers, serve_limit_watch
from ._monitor import serve_health_monitor
from ._report import WardenReport
from ._sandbox_session import SandboxSession
from ._spares import SparePool
from ._status import STATUS_RESOURCE
from ._supervisor import Supervisor
from ._unserved import raise_if_unserved, sandbox_upstream
from ._usage import sandbox_usage

logger = logging.getLogger("trio_sandbox.sandbox")

_HANDLE_RESOURCE = Resource(
    uri=HANDLE_RESOURCE,
    name="new-sandbox-handle",
    title="A new sandbox handle",
    description=(
        "Reading this issues a fresh handle for a sandbox of your own, apart from your client's"
        f" usual one: put it in the _meta of a request as {HANDLE_META_KEY!r} and the request"
        " runs in that handle's sandbox (started on first use, stopped after"
        " ephemeral_idle_timeout idle). A handle works only for the client that read it."
    ),
    mime_type="text/plain",
)


@attrs.define(eq=False)
class Sandbox:
    """A running sandbox behind its proxy. Get one from :func:`open_sandbox`."""

    config: SandboxConfig
    chain: CertificateChain
    _supervisor: Supervisor
    # Every client's sandbox (ephemeral mode) and every handle's (both modes).
    _session_sandboxes: SessionSandboxes
    proxy: ProxyHandle
    # The embedder's own client of the proxy (in memory): its calls pass the proxy like any.
    _local: McpClient
    # Warm spares (None: none are kept, and the persistent sandbox respawns cold).
    _spares: SparePool | None = None

    def __attrs_post_init__(self) -> None:
        self.proxy.server.mcp.add_resource(STATUS_RESOURCE, self._read_status)
        self.proxy.server.mcp.add_resource(_HANDLE_RESOURCE, self._issue_handle)

    @property
    def upstream(self) -> Upstream:
        """The proxy's upstream for the sandbox (whichever generation serves)."""
        return self._supervisor.upstream

    @property
    def proxy_url(self) -> str:
        """Where other processes reach the proxy (stable across respawns)."""
        return self.proxy.http_url

    @property
    def health(self) -> SandboxHealth:
        return self._supervisor.health.value

    async def wait_health_change(self) -> SandboxHealth:
        """Block until the health changes; returns the new value."""
        return await self._supervisor.health.wait_change()

    @property
    def tools(self) -> Sequence[Tool]:
        """The tools clients of the proxy see, as of the last listing (the same objects until
        the listing changes)."""
        return self.proxy.server.tools

    @property
    def warden_pid(self) -> int | None:
        """The current generation's warden (its process group has the same id), if any."""
        launched = self._launched()
        return launched.warden_pid if launched is not None else None

    @property
    def sandbox_url(self) -> str | None:
        """Where the current generation's tool server is published (behind mutual TLS):
        ``wss://`` when it takes WebSocket (ours), else the contract's ``https://``."""
        launched = self._launched()
        return launched.url if launched is not None else None

    @property
    def start_timeline(self) -> Mapping[str, float]:
        """trio clock times of the current generation's start milestones."""
        launched = self._launched()
        return launched.timeline if launched is not None else {}

    @property
    def session_sandboxes(self) -> int:
        """How many per-client sandboxes exist now (every client's in ephemeral mode, every
        used handle's in both modes)."""
        return self._session_sandboxes.count

    async def wait_spares_ready(self, count: int | None = None) -> None:
        """Until ``count`` warm spares (default: ``warm_spares``) are ready to be handed out;
        at once when none are kept. A spare that dies meanwhile is replaced, not counted."""
        if self._spares is not None:
            await self._spares.wait_ready(self.config.warm_spares if count is None else count)

    def _launched(self) -> Any:
        generation = self._supervisor.current
        return generation.launched if generation is not None else None

    async def list_tools(self) -> list[Tool]:
        return await self._local.list_tools()

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> CallToolResult:
        """Call a tool through the proxy, as any client would.

        Raises :class:`SandboxRestarted` when the sandbox went away while the call was in
        flight (it may or may not have run; it is not retried), and :class:`SandboxUnavailable`
        when no sandbox came back within ``respawn_wait``.
        """
        result = await self._local.call_tool(name, arguments or {}, progress=progress)
        return raise_if_unserved(result)

    async def read_resource(self, uri: str) -> list[ResourceContents]:
        """Read a resource through the proxy: an upstream's, the status, or the whole of a
        shortened output (the ``resource_link`` of a large result)."""
        return await self._local.read_resource(uri)

    def gauges(self) -> SandboxGauges:
        """What a metrics scrape shows of the sandbox now (read on the host, never asked of
        the sandbox)."""
        launched = self._launched()
        limits = launched.report.limits if launched is not None else None
        usage = sandbox_usage(limits, self.warden_pid)
        numbers = limit_numbers(limits)
        memory, pids = usage["memory_bytes"], usage["pids"]
        return SandboxGauges(
            generation=self.health.generation,
            ready_spares=self._spares.status().ready if self._spares is not None else 0,
            session_sandboxes=self.session_sandboxes,
            memory_bytes=memory if isinstance(memory, int) else None,
            memory_limit_bytes=numbers.memory_bytes,
            pids=pids if isinstance(pids, int) else None,
            pids_limit=numbers.pids,
        )

    def status(self) -> dict[str, object]:
        """Health and upstream states, as ``trio-sandbox status`` shows them."""
        launched = self._launched()
        report = launched.report if launched is not None else WardenReport()
        limits = report.limits
        return {
            "mode": self.config.mode.value,
            "image": self.config.image,
            "proxy_url": self.proxy.url,
            "health": self.health.to_json(),
            "upstreams": [status.to_json() for status in self.proxy.statuses()],
            "limits": (
                {k: v for k, v in limits.items() if k != "cgroups"}
                if isinstance(limits, dict)
                else None
            ),
            "usage": sandbox_usage(limits, self.warden_pid),
            # Sandboxes started ahead: ready, starting, in use, and why starts back off.
            "spares": self._spares.status().to_json() if self._spares is not None else None,
            "network": {
                "mode": self.config.network.value,
                "allow_domains": list(self.config.allow_domains),
                "deny_domains": list(self.config.deny_domains),
                # Names and hosts only: the values are never in a status.
                "inject_secrets": {
                    name: list(hosts) for name, hosts in self.config.inject_secrets.items()
                },
                # The egress audit since this sandbox started: per allow-list entry, per
                # allowed destination, per refused destination (the warden's report channel).
                **report.network_status(),
            },
        }

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SandboxSession]:
        """A fresh sandbox for the calls of this block, stopped when it ends::

            async with sandbox.session() as s:
                await s.call_tool("run_command", {"command": "make"})

        Its calls pass the proxy as the sandbox's own do, with a handle of their own; the
        sandbox starts on the first call, is one generation (never respawned: a call after it
        died gets a fresh one) and counts against ``max_sandboxes``. Works in both modes.
        """
        sandboxes = self._session_sandboxes
        handle = sandboxes.issue_handle(None)
        try:
            yield SandboxSession(handle, self._local)
        finally:
            # Stopped before the block is left, within the warden's stop grace and a margin.
            with trio.CancelScope(shield=True), trio.move_on_after(self.config.stop_grace + 5):
                await sandboxes.release(sandboxes.handles.sandbox_key(handle, None))

    async def _issue_handle(self, uri: str, ctx: RequestContext) -> list[ResourceContents]:
        handle = self._session_sandboxes.issue_handle(ctx)
        return [ResourceContents(uri=uri, text=handle, mime_type="text/plain")]

    async def _read_status(self, uri: str, ctx: RequestContext) -> list[ResourceContents]:
        text = json.dumps(self.status(), sort_keys=True)
        return [ResourceContents(uri=uri, text=text, mime_type="application/json")]

    async def restart(self) -> None:
        """Replace the sandbox with a fresh one; returns once the new one serves."""
        await self._supervisor.restart()

    def write_client_bundle(self, directory: str | os.PathLike[str]) -> Any:
        """Write ca.pem, client.pem and client.key (0600) for a client in another process."""
        return self.chain.write_client_bundle(directory)


def _warn_about_skipped_volumes(config: SandboxConfig) -> None:
    """The contract lets the warden skip a bind volume whose host path does not exist; the
    user should hear of it, not find an empty directory."""
    for volume in config.volumes:
        if volume.named or volume.claim:
            continue
        source = volume.resolved().source
        if not os.path.exists(source):
            logger.warning(
                "volume %s is skipped: %s does not exist on this host", volume.format(), source
            )


def _hooked(launcher: Launcher, plan: InjectionPlan | None, observer: Observer) -> Launcher:
    """``launcher`` giving every generation and spare the same ``plan`` (inject_secrets: the
    values and placeholders; each warden run makes its own CA) and, when something observes,
    its connections to the observer and a watch of the kernel's limit hits beside it."""

    async def launch(
        config: SandboxConfig, hooks: LaunchHooks, *, task_status: trio.TaskStatus[Launched]
    ) -> None:
        hooks = attrs.evolve(hooks, injection=plan)
        if not observer.sinks:
            await launcher(config, hooks, task_status=task_status)
            return
        hooks = attrs.evolve(hooks, on_egress=observer.egress)
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[Launched]) -> None:
                try:
                    await launcher(config, hooks, task_status=task_status)
                finally:
                    nursery.cancel_scope.cancel()  # the watch ends with its sandbox

            launched: Launched = await nursery.start(run)
            task_status.started(launched)
            report = launched.report

            def hit(limit: str, count: int) -> None:
                observer.lifecycle(
                    LifecyclePhase.LIMIT_HIT,
                    report.sandbox,
                    generation=report.generation,
                    limit=limit,
                    count=count,
                )

            nursery.start_soon(serve_limit_watch, lambda: report.limits, hit)

    return launch


@asynccontextmanager
async def open_sandbox(
    config: SandboxConfig | None = None,
    *,
    face: ProxyFace | None = None,
    launcher: Launcher = warden_launcher,
) -> AsyncIterator[Sandbox]:
    """Start a sandbox and its proxy; leaving the block tears everything down.

    ``face`` defaults to mutual TLS on a free 127.0.0.1 port with a fresh certificate chain
    (``sandbox.write_client_bundle`` exports what another process needs to connect).
    ``launcher`` starts one sandbox generation; the warden of the contract by default.
    Raises :class:`SandboxStartError` when the first sandbox does not come up, and
    :class:`SandboxFailed` (out of the ``async with``) when respawning gave up.
    """
    config = config or SandboxConfig()
    _warn_about_skipped_volumes(config)
    # inject_secrets' values, read once; every warden run of this sandbox injects them.
    injection = InjectionPlan.read(config, os.environ)
    chain = face.chain if isinstance(face, HttpFace) and face.chain is not None else None
    chain = chain or CertificateChain.generate()
    face = face or HttpFace(chain=chain)
    async with open_observer(config.observe_settings) as observer:
        launcher = _hooked(launcher, injection, observer)
        stopped = "stopped"
        try:
            async with _running(config, face, chain, launcher, injection, observer) as sandbox:
                yield sandbox
        except BaseException as error:
            stopped = first_line(error)
            raise
        finally:
            observer.lifecycle(LifecyclePhase.STOP, config.sandbox_name, reason=stopped)


@asynccontextmanager
async def _running(
    config: SandboxConfig,
    face: ProxyFace,
    chain: CertificateChain,
    launcher: Launcher,
    injection: InjectionPlan | None,
    observer: Observer,
) -> AsyncIterator[Sandbox]:
    # Where every sandbox beside the main one comes from: warm spares, or one started on demand
    # (a handle's, an ephemeral client's). The main sandbox's respawns swap in a spare only when
    # spares are kept, or in the ephemeral mode, whose shared sandbox comes from the pool too.
    pool = SparePool(config, launcher, config.sandbox_name, config.sandbox_prefix)
    respawn_pool = pool if config.warm_spares > 0 or config.mode is SandboxMode.EPHEMERAL else None
    sessions = SessionSandboxes(
        config,
        pool,
        config.sandbox_name,
        config.sandbox_prefix,
        per_client=config.mode is SandboxMode.EPHEMERAL,
        observer=observer,
    )
    upstream = sandbox_upstream(
        config.sandbox_name,
        config.sandbox_prefix,
        call_wait=config.respawn_wait,
        redact=config.redact,
        route=sessions.route,
        route_key=sessions.source_key,
        consumed_meta_keys=frozenset({HANDLE_META_KEY}),
    )
    guard = OutputGuard(config.output_limits, observer=observer)
    for name, value in secret_environment(config, os.environ).items():
        try:
            guard.add_known_secret(value, f"env:{name}", source=upstream.source_key(None))
        except KnownSecretTooShort:
            # Never passed in clear: a value this short cannot be redacted, so no start.
            raise SandboxStartError(
                "secret_env",
                f"secret_env {name} has a value of {len(value)} characters, fewer than"
                f" {MIN_KNOWN_SECRET_LENGTH}: too short to be redacted wherever it appears;"
                " use a longer secret or pass it with env_passthrough instead",
            ) from None
    for secret in injection.secrets if injection is not None else ():
        # The real value is redacted wherever it shows, and restored towards no one (owner
        # None): a model copying its redacted form into an argument sends no value in. The
        # placeholder is not a secret (only the egress proxy gives it a meaning, for its hosts)
        # and stays as it is, so that the model can read and write it.
        guard.add_known_secret(secret.value, f"inject:{secret.name}", source=None)
    supervisor = Supervisor(config, launcher, upstream, pool=respawn_pool, observer=observer)
    with single_error():
        async with trio.open_nursery() as nursery:
            # The rules compile in a thread while the sandbox boots, not on the first message
            # (every message to a client is redacted, whatever the upstreams' settings).
            nursery.start_soon(guard.redactor)
            await nursery.start(pool.serve)
            await nursery.start(sessions.serve)
            await nursery.start(supervisor.serve)
            try:
                proxy: ProxyHandle = await nursery.start(
                    partial(
                        serve_proxy,
                        [upstream, *config.upstreams],
                        face,
                        call_wait=config.respawn_wait,
                        guard=guard,
                    )
                )
            except BaseException as exc:
                bind_error = [leaf for leaf in exception_leaves(exc) if isinstance(leaf, OSError)]
                if not bind_error:
                    raise
                raise SandboxStartError(
                    "proxy", f"the proxy could not start: {bind_error[0]}"
                ) from None
            if config.mode is SandboxMode.PERSISTENT:
                nursery.start_soon(serve_health_monitor, supervisor)
            async with open_mcp_client(memory_transport(proxy.server.mcp, name="sandbox")) as local:
                sandbox = Sandbox(
                    config, chain, supervisor, sessions, proxy, local, spares=respawn_pool
                )
                observer.gauges = sandbox.gauges
                try:
                    yield sandbox
                finally:
                    observer.gauges = None
            nursery.cancel_scope.cancel()
