"""``open_sandbox``: the sandbox, its proxy and its health monitor in one cancel scope.

    open_sandbox(config)
      nursery (sandbox scope)
      ├─ supervisor ── generation nursery (cancelled and reopened to respawn)
      │                 ├─ warden child: stdout CA parser then log, stderr log + tail
      │                 └─ upstream MCP session to the sandbox (mutual TLS)
      ├─ proxy server (serve_proxy): the one endpoint clients use, stable across respawns
      └─ health monitor (persistent mode)

Leaving the ``async with`` cancels the scope: the proxy shuts down gracefully within a bound and
the warden gets SIGINT, then SIGKILL for its whole process group after ``stop_grace``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from ..mcp import CallToolResult, McpError, Tool
from ..mcp._client import McpClient, McpConnectionError, ProgressCallback, open_mcp_client
from ..mcp._memory import memory_transport
from ..proxy import HttpFace, ProxyFace, ProxyHandle, Upstream, serve_proxy
from ..tls import CertificateChain, MtlsIdentity
from ._config import SandboxConfig, SandboxMode
from ._errors import SandboxFailed, SandboxRestarted, SandboxStartError
from ._groups import single_error
from ._health import HealthCell, SandboxHealth
from ._process import WardenStarted, serve_warden
from ._streams import OutputTail

logger = logging.getLogger("trio_sandbox.sandbox")

CONTAINER_PORT = 8080
# Readiness: the first attempt right after the CA block, then a short doubling backoff.
_READY_FIRST_DELAY = 0.005
_READY_MAX_DELAY = 0.25


class SessionLost(Exception):
    pass


class WardenExited(Exception):
    def __init__(self, status: int, stderr_tail: str) -> None:
        super().__init__(f"the warden exited with status {status}")
        self.status = status
        self.stderr_tail = stderr_tail


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 right now, for the warden to publish the sandbox on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def warden_argv(config: SandboxConfig, host_port: int, client_ca_pem: str) -> list[str]:
    """The contract's command line: ``WARDEN wrap [options] IMAGE -- CMD ARG...``."""
    argv = [*config.warden, "wrap"]
    for volume in config.volumes:
        argv += ["--volume", volume]
    argv += ["-p", f"127.0.0.1:{host_port}:{CONTAINER_PORT}"]
    for key, value in sandbox_env(config, client_ca_pem, os.environ).items():
        argv += ["--env", f"{key}={value}"]
    if config.backend != "auto":
        argv += ["--backend", config.backend]
    return [*argv, config.image, "--", *config.command]


def sandbox_env(
    config: SandboxConfig, client_ca_pem: str, host_env: Mapping[str, str]
) -> dict[str, str]:
    env = {
        "STAKPAK_SKIP_WARDEN": "1",
        "STAKPAK_MCP_PORT": str(CONTAINER_PORT),
        "STAKPAK_MCP_CLIENT_CA": client_ca_pem,
    }
    env.update({name: host_env[name] for name in config.env_passthrough if name in host_env})
    env.update(config.env)
    return env


@attrs.define(eq=False)
class Sandbox:
    """A running sandbox behind its proxy. Get one from :func:`open_sandbox`."""

    config: SandboxConfig
    chain: CertificateChain
    upstream: Upstream
    _nursery: trio.Nursery
    proxy: ProxyHandle | None = None
    _local: McpClient | None = None
    _health: HealthCell = attrs.field(factory=HealthCell)
    _restart: trio.Event = attrs.field(factory=trio.Event)
    _generation_up: trio.Event = attrs.field(factory=trio.Event)
    _failures_in_a_row: int = 0
    _warden_pid: int | None = None

    # --- what users see -----------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        assert self.proxy is not None
        assert self.proxy.url is not None
        return self.proxy.url

    @property
    def health(self) -> SandboxHealth:
        return self._health.value

    async def wait_health_change(self) -> SandboxHealth:
        """Block until the health changes; returns the new value."""
        return await self._health.wait_change()

    @property
    def tools(self) -> list[Tool]:
        """The tools clients of the proxy see, as of the last listing."""
        assert self.proxy is not None
        return [Tool.from_json(raw) for raw in self.proxy.server.listed_tools]

    @property
    def warden_pid(self) -> int | None:
        return self._warden_pid

    async def list_tools(self) -> list[Tool]:
        return await self._client().list_tools()

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> CallToolResult:
        """Call a tool through the proxy, as any client would."""
        return await self._client().call_tool(name, arguments or {}, progress=progress)

    async def restart(self) -> None:
        """Replace the sandbox with a fresh one; returns once the new one serves."""
        self._generation_up = trio.Event()
        self._restart.set()
        await self._generation_up.wait()

    def write_client_bundle(self, directory: str | os.PathLike[str]) -> Any:
        """Write ca.pem, client.pem and client.key (0600) for a client in another process."""
        return self.chain.write_client_bundle(directory)

    def _client(self) -> McpClient:
        assert self._local is not None
        return self._local

    # --- generations --------------------------------------------------------------------------

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Keep a sandbox running; respawn on request or death, with backoff, up to a limit."""
        config = self.config
        attempts = 0
        first = True
        while True:
            reason = "restart requested"
            try:
                with single_error():
                    async with trio.open_nursery() as generation:
                        await generation.start(self._run_generation)
                        self._health.update(
                            healthy=True,
                            consecutive_ok=self.health.consecutive_ok + 1,
                            consecutive_failures=0,
                            last_ok=trio.current_time(),
                            generation=self.health.generation + 1,
                        )
                        self._generation_up.set()
                        if first:
                            first = False
                            task_status.started()
                        await self._restart.wait()
                        self._restart = trio.Event()
                        generation.cancel_scope.cancel()
            except (
                SandboxStartError,
                WardenExited,
                SessionLost,
                McpConnectionError,
                McpError,
            ) as exc:
                if first:
                    raise _as_start_error(exc) from None
                reason = str(exc).splitlines()[0]
            self.upstream.detach(f"the sandbox restarted ({reason})")
            self._warden_pid = None
            if config.mode is SandboxMode.EPHEMERAL:
                raise SandboxFailed(f"the ephemeral sandbox ended: {reason}")
            if self.health.consecutive_ok > 0 or reason == "restart requested":
                attempts = 0  # it had a healthy period: this is a fresh series of attempts
            attempts += 1
            self._health.update(
                healthy=False,
                consecutive_ok=0,
                last_error=reason,
                total_respawn_attempts=self.health.total_respawn_attempts + 1,
            )
            if attempts > config.max_respawn_attempts:
                raise SandboxFailed(
                    f"the sandbox failed {attempts - 1} respawn attempts in a row; last: {reason}"
                )
            delay = min(config.respawn_backoff * 2 ** (attempts - 1), config.respawn_backoff_max)
            logger.warning("sandbox down (%s); respawning in %.2f s", reason, delay)
            await trio.sleep(delay)

    async def _run_generation(self, *, task_status: trio.TaskStatus[None]) -> None:
        config = self.config
        identity = MtlsIdentity.generate_client()
        host_port = free_loopback_port()
        argv = warden_argv(config, host_port, identity.ca_cert_pem())
        tail = OutputTail()
        async with trio.open_nursery() as nursery:
            started: WardenStarted = await nursery.start(partial(self._watch_warden, argv, tail))
            self._warden_pid = started.process.pid
            ssl_context = identity.client_ssl_context(started.server_ca_pem)
            url = f"https://127.0.0.1:{host_port}/mcp"
            client: McpClient = await nursery.start(
                partial(self._hold_session, url, ssl_context, tail, started.process)
            )
            self.upstream.attach(client)
            await self.upstream.refresh_listing(limit=config.health_timeout)
            nursery.start_soon(self._respawn_when_broken)
            task_status.started()

    async def _respawn_when_broken(self) -> None:
        """A call that lost the session is the earliest sign of a dead sandbox: respawn now
        rather than after ``respawn_threshold`` failed probes."""
        await self.upstream.wait_broken()
        raise SessionLost(self.upstream.last_error or "the session to the sandbox broke")

    async def _watch_warden(
        self, argv: Sequence[str], tail: OutputTail, *, task_status: trio.TaskStatus[WardenStarted]
    ) -> None:
        status = await serve_warden(
            argv,
            env=os.environ,
            ca_timeout=self.config.ca_timeout,
            stop_grace=self.config.stop_grace,
            stderr_tail=tail,
            task_status=task_status,
        )
        # Calls in flight learn at once that the sandbox went away, not when a probe notices.
        self.upstream.detach(f"the sandbox restarted (warden exited with status {status})")
        raise WardenExited(status, tail.text())

    async def _hold_session(
        self,
        url: str,
        ssl_context: Any,
        tail: OutputTail,
        process: trio.Process,
        *,
        task_status: trio.TaskStatus[McpClient],
    ) -> None:
        """Connect as soon as the server answers (no fixed sleeps), then keep the session."""
        delay = _READY_FIRST_DELAY
        last_error = "no attempt"
        with trio.move_on_after(self.config.ready_timeout):
            while True:
                try:
                    async with open_mcp_client(url, ssl_context=ssl_context) as client:
                        task_status.started(client)
                        await trio.sleep_forever()
                except McpConnectionError as exc:
                    last_error = exc.reason
                    if process.returncode is not None:
                        break
                await trio.sleep(delay)
                delay = min(delay * 2, _READY_MAX_DELAY)
        raise SandboxStartError(
            "ready",
            f"the tool server did not answer at {url}: {last_error}",
            exit_status=process.returncode,
            stderr_tail=tail.text(),
        )

    # --- health -------------------------------------------------------------------------------

    async def _monitor(self) -> None:
        """Probe the sandbox's own session (not the merged proxy view) every interval."""
        config = self.config
        while True:
            await trio.sleep(config.health_interval)
            client = self.upstream.client
            if client is None:
                continue  # respawning: the supervisor reports on that
            error: str | None = None
            with trio.move_on_after(config.health_timeout) as deadline:
                try:
                    await client.ping()
                except (McpConnectionError, McpError) as exc:
                    error = str(exc)
            if deadline.cancelled_caught:
                error = f"no answer to ping within {config.health_timeout:g} s"
            health = self.health
            if error is None:
                self._health.update(
                    healthy=True,
                    consecutive_ok=health.consecutive_ok + 1,
                    consecutive_failures=0,
                    last_ok=trio.current_time(),
                )
                continue
            failures = health.consecutive_failures + 1
            self._health.update(
                healthy=False, consecutive_ok=0, consecutive_failures=failures, last_error=error
            )
            if failures >= config.respawn_threshold:
                logger.warning("sandbox unhealthy %d times in a row: respawning", failures)
                self._restart.set()


def _as_start_error(exc: BaseException) -> SandboxStartError:
    if isinstance(exc, SandboxStartError):
        return exc
    if isinstance(exc, WardenExited):
        return SandboxStartError(
            "ready", "the warden exited", exit_status=exc.status, stderr_tail=exc.stderr_tail
        )
    return SandboxStartError("ready", str(exc))


@asynccontextmanager
async def open_sandbox(
    config: SandboxConfig | None = None, *, face: ProxyFace | None = None
) -> AsyncIterator[Sandbox]:
    """Start a sandbox and its proxy; leaving the block tears everything down.

    ``face`` defaults to mutual TLS on a free 127.0.0.1 port with a fresh certificate chain
    (``sandbox.write_client_bundle`` exports what another process needs to connect).
    """
    config = config or SandboxConfig()
    chain = face.chain if isinstance(face, HttpFace) and face.chain is not None else None
    chain = chain or CertificateChain.generate()
    face = face or HttpFace(chain=chain)
    upstream = Upstream(config.sandbox_name, config.sandbox_prefix, call_wait=config.respawn_wait)
    with single_error():
        async with trio.open_nursery() as nursery:
            sandbox = Sandbox(config, chain, upstream, nursery)
            await nursery.start(sandbox._supervise)
            sandbox.proxy = await nursery.start(serve_proxy, [upstream, *config.upstreams], face)
            if config.mode is SandboxMode.PERSISTENT:
                nursery.start_soon(sandbox._monitor)
            async with open_mcp_client(memory_transport(sandbox.proxy.server)) as local:
                sandbox._local = local
                yield sandbox
            nursery.cancel_scope.cancel()


__all__ = ["Sandbox", "SandboxRestarted", "open_sandbox"]
