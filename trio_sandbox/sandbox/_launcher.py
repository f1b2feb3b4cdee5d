"""Starting one sandbox generation: the seam between the supervisor and what it supervises.

A launcher is a service: it starts a sandbox, opens the MCP session to its tool server, reports
:class:`Launched` with that session, and then runs until the sandbox ends (raising
:class:`WardenExited`) or is cancelled (tearing it down). :func:`warden_launcher` is the real one
(the contract of DESIGN.md §2); tests hand :func:`open_sandbox` an in-process one so that the
health and respawn logic runs under a virtual clock.
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import logging
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Protocol

import attrs
import trio

from ..concurrency import memfd_holding, single_error
from ..contract import (
    CLIENT_CA_VARIABLE,
    CONTAINER_PORT,
    ENV_FD_OPTION,
    LIFELINE_VARIABLE,
    MCP_PORT_VARIABLE,
    REPORT_FD_OPTION,
    SKIP_WARDEN_VARIABLE,
)
from ..mcp import (
    McpClient,
    McpConnectionError,
    McpHttpStatusError,
    TransportFactory,
    websocket_transport,
)
from ..proxy import ClientHooks
from ..tls import MtlsIdentity
from ._config import SandboxConfig
from ._errors import SandboxStartError, WardenExited
from ._inject import InjectionPlan, without_injected
from ._report import EgressCallback, WardenReport
from ._streams import OutputTail
from ._warden_child import WardenStarted, serve_warden, stages

logger = logging.getLogger("trio_sandbox.sandbox")

# Readiness: the first attempt right after the CA block, then a short doubling backoff.
READY_FIRST_DELAY = 0.005
READY_MAX_DELAY = 0.1
# The most the host takes in one message from the tool server, over WebSocket and over HTTP (the
# HTTP transport's default is the same): a file view of 2,000 lines of 2,000 characters escaped
# in JSON fits.
TOOL_SERVER_MESSAGE_BYTES = 64 * 1024 * 1024


@attrs.frozen
class LaunchHooks:
    """What the supervisor gives a launcher for one generation."""

    # Options for ``open_mcp_client`` so that the proxy relays the sandbox's questions and logs.
    client: ClientHooks
    # Call at the very moment the sandbox is known to be gone, before its session is closed, so
    # that calls in flight fail with "restarted" and new calls wait for the next generation.
    went_down: Callable[[str], None]
    # inject_secrets: the values and placeholders every warden run of this sandbox uses (read
    # once by open_sandbox); None: the launcher reads them itself when the config asks for it.
    injection: InjectionPlan | None = None
    # Each connection of the sandbox to the network (or a sum of them) as the warden reports
    # it, named ``sandbox`` (None: they are not read).
    on_egress: EgressCallback | None = None
    sandbox: str = "sandbox"


@attrs.frozen
class Launched:
    """A generation that serves: its MCP session, and the warden's pid when there is one."""

    client: McpClient
    warden_pid: int | None = None
    # Where the tool server is reached (the warden's published port), when it is a URL.
    url: str | None = None
    # trio clock times of the start's milestones (warden_started, ca_block, first_attempt, ready).
    timeline: Mapping[str, float] = attrs.field(factory=dict)
    # What the warden reported on its report channel (limits, egress audit), never on stderr.
    report: WardenReport = attrs.field(factory=WardenReport)


class Launcher(Protocol):
    def __call__(
        self,
        config: SandboxConfig,
        hooks: LaunchHooks,
        *,
        task_status: trio.TaskStatus[Launched],
    ) -> Awaitable[None]: ...


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 right now, for the warden to publish the sandbox on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sandbox_env(
    config: SandboxConfig, client_ca_pem: str, host_env: Mapping[str, str]
) -> dict[str, str]:
    """The variables the sandbox gets: the contract's, the allowed host ones, the configured."""
    env = {
        SKIP_WARDEN_VARIABLE: "1",
        MCP_PORT_VARIABLE: str(CONTAINER_PORT),
        CLIENT_CA_VARIABLE: client_ca_pem,
    }
    passed = (*config.env_passthrough, *config.secret_env)
    env.update({name: host_env[name] for name in passed if name in host_env})
    env.update(config.env)
    # An injected variable is the warden's to set (to its placeholder), never in the env-fd.
    for name in config.inject_secrets:
        env.pop(name, None)
    return env


def secret_environment(config: SandboxConfig, host_env: Mapping[str, str]) -> dict[str, str]:
    """The values of the ``secret_env`` variables the sandbox gets (always redacted)."""
    values = sandbox_env(config, "", host_env)
    found = {name: values[name] for name in config.secret_env if name in values}
    for name in sorted(set(config.secret_env) - set(found)):
        logger.warning("secret_env %s is not set on this host: nothing to pass or redact", name)
    return found


def environment_fd(variables: Mapping[str, str]) -> int:
    """The sandbox's variables for ``--env-fd``: ``K=V`` records ended by NUL bytes, in memory
    (values on a command line are readable by every local user)."""
    data = b"".join(f"{key}={value}".encode() + b"\0" for key, value in variables.items())
    return memfd_holding("trio-sandbox-env", data)


def warden_argv(
    config: SandboxConfig,
    host_port: int,
    *,
    env_fd: int,
    report_fd: int | None = None,
    injection: tuple[InjectionPlan, int] | None = None,
) -> list[str]:
    """The contract's command line: ``WARDEN wrap [options] IMAGE -- CMD ARG...``, with our
    warden's extensions: ``env_fd``, the sandbox's variables (:func:`environment_fd`),
    ``report_fd``, the descriptor the warden writes its reports to, and ``injection``, the
    plan of inject_secrets with the descriptor holding its values (names and hosts only here:
    the hosts are allowed by the warden, not repeated as ``--allow-domain``)."""
    argv = [*config.warden, "wrap"]
    if report_fd is not None:
        argv += [REPORT_FD_OPTION, str(report_fd)]
    argv += [ENV_FD_OPTION, str(env_fd)]
    for volume in config.volumes:
        argv += ["--volume", volume.format()]
    argv += ["-p", f"127.0.0.1:{host_port}:{CONTAINER_PORT}"]
    if config.backend != "auto":
        argv += ["--backend", config.backend]
    if config.user is not None:
        argv += ["--user", config.user]
    if config.network != "none":
        argv += ["--network", config.network.value]
    argv += [f"--allow-domain={entry}" for entry in config.allow_domains]
    argv += [f"--deny-domain={entry}" for entry in config.deny_domains]
    if injection is not None:
        plan, inject_fd = injection
        argv += plan.argv(inject_fd)
    argv += config.limit_request.to_argv()
    return [*argv, config.image, "--", *config.command]


@attrs.define(eq=False)
class _WardenRun:
    config: SandboxConfig
    hooks: LaunchHooks
    tail: OutputTail = attrs.field(factory=OutputTail)
    timeline: dict[str, float] = attrs.field(factory=dict)
    ready: bool = False
    report: WardenReport = attrs.field(factory=WardenReport)


@functools.cache
def _compile_package() -> None:
    """Write this package's bytecode once per process, where it may be written.

    The sandbox sees the package read-only, so a tool server whose modules were never imported
    on the host would compile all of them again at every start (about half a second here).
    Up-to-date files cost a stat each.
    """
    package_dir = Path(__file__).resolve().parents[1]
    if os.access(package_dir, os.W_OK):
        # quiet=2: nothing on stdout, which is the MCP channel of `trio-sandbox stdio`. A file
        # that cannot be written is skipped: the sandbox then compiles it in memory.
        with contextlib.suppress(OSError):
            compileall.compile_dir(package_dir, quiet=2)


async def warden_launcher(
    config: SandboxConfig, hooks: LaunchHooks, *, task_status: trio.TaskStatus[Launched]
) -> None:
    """Start the sandbox through the warden (DESIGN.md §2) and hold its MCP session."""
    run = _WardenRun(config, hooks, report=WardenReport(hooks.on_egress, hooks.sandbox))
    plan = hooks.injection or InjectionPlan.read(config, os.environ)
    await trio.to_thread.run_sync(_compile_package)
    try:
        identity = MtlsIdentity.generate_client()
    except Exception as exc:  # pragma: no cover - cryptography failing is not expected
        raise SandboxStartError("identity", f"cannot make the client identity: {exc}") from exc
    stages.info("client identity ready (fresh CA and leaf, ECDSA P-256)")
    host_port = free_loopback_port()
    # The report channel: a pipe only this process and the warden hold.
    report_read_fd, report_write_fd = os.pipe2(os.O_CLOEXEC)
    reports = trio.lowlevel.FdStream(report_read_fd)
    handed = [report_write_fd]
    try:
        # A fresh interception CA per warden run (each generation, each spare).
        inject_fd = plan.descriptor() if plan is not None else None
        if inject_fd is not None:
            handed.append(inject_fd)
        env_fd = environment_fd(sandbox_env(config, identity.ca_cert_pem(), os.environ))
        handed.append(env_fd)
    except BaseException:
        for fd in handed:
            os.close(fd)
        await reports.aclose()
        raise
    injection = (plan, inject_fd) if plan is not None and inject_fd is not None else None
    argv = warden_argv(
        config, host_port, env_fd=env_fd, report_fd=report_write_fd, injection=injection
    )
    run.timeline["warden_started"] = trio.current_time()
    with single_error():
        async with reports, trio.open_nursery() as nursery:
            started: WardenStarted = await nursery.start(
                partial(_watch_warden, run, argv, tuple(handed), reports, plan)
            )
            run.timeline["ca_block"] = trio.current_time()
            stages.info("warden started (pid %d); server CA received", started.process.pid)
            try:
                ssl_context = identity.client_ssl_context(started.server_ca_pem)
            except Exception as exc:
                raise SandboxStartError(
                    "ca",
                    f"the server CA cannot be trusted: {exc}",
                    exit_status=started.process.returncode,
                    stderr_tail=run.tail.text(),
                ) from exc
            url = f"https://127.0.0.1:{host_port}/mcp"
            client: McpClient = await nursery.start(
                partial(_hold_session, run, url, ssl_context, started.process)
            )
            run.ready = True
            run.timeline["ready"] = trio.current_time()
            stages.info("tool server ready at %s (mutual TLS)", client.target)
            task_status.started(
                Launched(client, started.process.pid, client.target, dict(run.timeline), run.report)
            )


async def _watch_warden(
    run: _WardenRun,
    argv: list[str],
    handed_fds: tuple[int, ...],
    reports: trio.lowlevel.FdStream,
    plan: InjectionPlan | None,
    *,
    task_status: trio.TaskStatus[WardenStarted],
) -> None:
    status = await serve_warden(
        argv,
        # The warden stops its sandbox when this process is gone, however it died. An injected
        # variable's value reaches it only in its descriptor: not in its environment (nor in
        # podman's, which inherits the warden's).
        env={**without_injected(os.environ, plan), LIFELINE_VARIABLE: str(os.getpid())},
        ca_timeout=run.config.ca_timeout,
        stop_grace=run.config.stop_grace,
        stderr_tail=run.tail,
        handed_fds=handed_fds,
        reports=reports,
        on_report_line=run.report.read_line,
        task_status=task_status,
    )
    # Calls in flight learn at once that the sandbox went away, not when a probe notices.
    run.hooks.went_down(f"the warden exited with status {status}")
    if not run.ready:
        raise SandboxStartError(
            "ready",
            "the warden exited before the tool server answered",
            exit_status=status,
            stderr_tail=run.tail.text(),
        )
    raise WardenExited(status, run.tail.text())


async def _hold_session(
    run: _WardenRun,
    url: str,
    ssl_context: ssl.SSLContext,
    process: trio.Process,
    *,
    task_status: trio.TaskStatus[McpClient],
) -> None:
    """Connect as soon as the server answers (no fixed sleeps), then keep the session.

    Over WebSocket on the same endpoint when the tool server takes it (ours does: one frame
    each way per message instead of an HTTP exchange, about a third less CPU per call on both
    sides); a server that answers the upgrade with an HTTP status (the original tool server
    speaks Streamable HTTP only) is spoken to over ``url`` from then on.

    ``ready_timeout`` bounds the attempts only: once connected, the session lives as long as the
    sandbox (a deadline left over from the start would tear down a healthy sandbox).
    """
    delay = READY_FIRST_DELAY
    last_error = "no attempt"
    connected = False
    websocket = websocket_transport(
        "wss" + url.removeprefix("https"),
        ssl_context=ssl_context,
        max_received_size=TOOL_SERVER_MESSAGE_BYTES,
    )
    target: str | TransportFactory = websocket
    with trio.move_on_after(run.config.ready_timeout) as start_deadline:
        while True:
            run.timeline.setdefault("first_attempt", trio.current_time())
            try:
                async with run.hooks.client.open_client(target, ssl_context=ssl_context) as client:
                    connected = True
                    start_deadline.deadline = math.inf
                    task_status.started(client)
                    try:
                        await trio.sleep_forever()
                    finally:
                        run.hooks.went_down("the sandbox was stopped")
            except McpConnectionError as exc:
                if connected:
                    raise  # the session broke: this generation is over
                if target is websocket and isinstance(exc, McpHttpStatusError):
                    stages.info("the tool server refused WebSocket (%r): over HTTPS", exc.reason)
                    target = url
                    continue
                last_error = exc.reason
            await trio.sleep(delay)
            delay = min(delay * 2, READY_MAX_DELAY)
    raise SandboxStartError(
        "ready",
        f"the tool server did not answer at {url} within {run.config.ready_timeout:g} s: "
        f"{last_error}",
        exit_status=process.returncode,
        stderr_tail=run.tail.text(),
    )
