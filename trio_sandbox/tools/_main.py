"""``python -m trio_sandbox.tools``: the tool server of the sandbox contract (DESIGN.md §2).

It makes its own server identity, requires client certificates signed by
``STAKPAK_MCP_CLIENT_CA``, binds its port, and only then prints the CA block and the
``MCP server started at`` line that the host waits for.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import ssl
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from ..concurrency import run_until_signalled
from ..contract import (
    CLIENT_CA_VARIABLE,
    MCP_PORT_VARIABLE,
    RUNTIME_VARS_VARIABLE,
    SKIP_WARDEN_VARIABLE,
)
from ..mcp import HttpSettings, JsonObject, McpHttpApp, McpServer, RequestContext, serve_http
from ..mcp.lowlevel import MethodHandler
from ..program import exit_now
from ..tls import MtlsIdentity, format_ca_block
from ._errors import ToolServerOptionsError, ToolServerWedged
from ._limits import ToolLimits
from ._sandbox_limits import limits_from_environ
from ._toolset import open_tool_server

logger = logging.getLogger("trio_sandbox.tools")

# In-flight calls get this long to finish after SIGINT/SIGTERM.
SHUTDOWN_GRACE = 3.0


@attrs.frozen
class ToolServerOptions:
    port: int
    bind: str
    client_ca_pem: str | None
    workdir: Path | None


def default_bind(environ: Mapping[str, str]) -> str:
    """All interfaces inside a container or namespace sandbox, where the warden publishes the
    port; loopback anywhere else."""
    inside = environ.get(SKIP_WARDEN_VARIABLE) == "1" or "container" in environ
    return "0.0.0.0" if inside else "127.0.0.1"


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> ToolServerOptions:
    parser = argparse.ArgumentParser(
        prog="python -m trio_sandbox.tools",
        description="The MCP tool server that runs inside the sandbox (mutual TLS).",
    )
    parser.add_argument(
        "--port", type=int, help=f"port to bind (default ${MCP_PORT_VARIABLE}, or 0)"
    )
    parser.add_argument("--bind", help="address to bind (default: see the README)")
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help=f"serve plain HTTP on loopback when ${CLIENT_CA_VARIABLE} is not set (development)",
    )
    parser.add_argument("--workdir", type=Path, help="directory relative paths resolve against")
    args = parser.parse_args(argv)
    port = args.port
    if port is not None and not 0 <= port <= 65535:
        raise ToolServerOptionsError(f"--port must be a port number, not {port}")
    if port is None:
        raw = environ.get(MCP_PORT_VARIABLE, "0")
        if not raw.isdigit() or int(raw) > 65535:
            raise ToolServerOptionsError(f"${MCP_PORT_VARIABLE} must be a port number, not {raw!r}")
        port = int(raw)
    client_ca = environ.get(CLIENT_CA_VARIABLE) or None
    bind = args.bind or default_bind(environ)
    if client_ca is None:
        if not args.plain_http:
            raise ToolServerOptionsError(
                f"${CLIENT_CA_VARIABLE} is not set: refusing to serve without client certificates "
                "(pass --plain-http to serve plain HTTP on loopback for development)"
            )
        if args.bind is not None and args.bind not in ("127.0.0.1", "::1", "localhost"):
            raise ToolServerOptionsError("--plain-http serves on loopback only")
        bind = "127.0.0.1" if args.bind is None else args.bind
    return ToolServerOptions(port, bind, client_ca, args.workdir)


@attrs.frozen
class ServerTls:
    """The server's own identity and the context that requires certificates from the client CA."""

    identity: MtlsIdentity
    ssl_context: ssl.SSLContext


def server_tls(options: ToolServerOptions) -> ServerTls | None:
    """A fresh server identity, or None for plain HTTP; ToolServerOptionsError for an unusable
    client CA."""
    if options.client_ca_pem is None:
        return None
    identity = MtlsIdentity.generate_server()
    try:
        context = identity.server_ssl_context(options.client_ca_pem)
    except (ValueError, ssl.SSLError) as exc:
        raise ToolServerOptionsError(
            f"${CLIENT_CA_VARIABLE} is not a usable CA certificate: {exc}"
        ) from None
    return ServerTls(identity, context)


async def serve_tool_server(
    options: ToolServerOptions,
    *,
    tls: ServerTls | None = None,
    announce: trio.abc.SendStream | None = None,
    subreaper: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the tools until cancelled; prints the CA block once the socket is bound.

    ``tls`` defaults to :func:`server_tls` of ``options``. ``subreaper`` is for a process of its
    own (``main``): then it raises :class:`ToolServerWedged` when no process can start any more,
    so that the sandbox is replaced."""
    if tls is None:
        tls = server_tls(options)
    identity = tls.identity if tls is not None else None
    ssl_context = tls.ssl_context if tls is not None else None
    limits = ToolLimits(sandbox=limits_from_environ(os.environ))
    async with open_tool_server(
        workdir=options.workdir, limits=limits, subreaper=subreaper
    ) as server:
        # mTLS authenticates every client; the Host check still guards the plain-HTTP mode.
        settings = HttpSettings(
            allowed_hosts=frozenset({"*"}) if identity else HttpSettings().allowed_hosts
        )
        app = McpHttpApp(server, settings)
        warm_up = _WarmUp()
        warm_up.install(server)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                lambda task_status: serve_http(
                    app,
                    host=options.bind,
                    port=options.port,
                    ssl_context=ssl_context,
                    graceful_timeout=SHUTDOWN_GRACE,
                    task_status=task_status,
                )
            )
            host = f"[{options.bind}]" if ":" in options.bind else options.bind
            scheme = "https" if identity is not None else "http"
            url = f"{scheme}://{host}:{bound.port}/mcp"
            if identity is not None:
                text = format_ca_block(identity.ca_cert_pem(), url)
            else:
                text = f"MCP server started at {url}\n"
            await _announce(text, announce)
            task_status.started(url)
            nursery.start_soon(warm_up.run)


# How long after its first listing the tool server leaves the CPU to its host's start.
WARM_UP_DELAY = 0.1
# What a host sends to learn that the server is warm (by protocol era).
_LIVENESS_METHODS = ("ping", "server/discover")


@attrs.define(eq=False)
class _WarmUp:
    """The first call validates its arguments with jsonschema (~30 ms to import). It is imported
    off the event loop once the host's start is done: ``WARM_UP_DELAY`` after the first
    ``tools/list`` is answered (a cold start's handshake and listings do not share the CPU with
    it), or at once when a liveness request follows that listing — how the host asks for a warm
    spare: such a request is answered once the import is done, so a spare handed out has it. A
    call that comes sooner imports jsonschema itself, as it always did."""

    listed: trio.Event = attrs.Factory(trio.Event)
    asked: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)

    def install(self, server: McpServer) -> None:
        list_tools = server.handler_for("tools/list")
        if list_tools is None:
            self.listed.set()
        else:

            async def list_then_tell(params: JsonObject, ctx: RequestContext) -> JsonObject:
                try:
                    return await list_tools(params, ctx)
                finally:
                    self.listed.set()
                    server.route("tools/list", list_tools)

            server.route("tools/list", list_tools if self.listed.is_set() else list_then_tell)
        for method in _LIVENESS_METHODS:
            if (answer := server.handler_for(method)) is not None:
                server.route(method, self._answered_when_warm(answer))

    def _answered_when_warm(self, answer: MethodHandler) -> MethodHandler:
        async def when_warm(params: JsonObject, ctx: RequestContext) -> JsonObject:
            if self.listed.is_set():
                self.asked.set()
                await self.done.wait()
            return await answer(params, ctx)

        return when_warm

    async def run(self) -> None:
        await self.listed.wait()
        with trio.move_on_after(WARM_UP_DELAY):
            await self.asked.wait()
        await trio.to_thread.run_sync(_import_argument_validation)
        self.done.set()


def _import_argument_validation() -> None:
    import jsonschema.exceptions  # noqa: F401 - imported for its side effect only


async def _announce(text: str, stream: trio.abc.SendStream | None) -> None:
    if stream is not None:
        await stream.send_all(text.encode())
        return
    sys.stdout.write(text)
    sys.stdout.flush()


async def _run(options: ToolServerOptions, tls: ServerTls | None) -> None:
    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            # A stop signal waits for the start: the host then reads a whole announcement.
            with trio.CancelScope(shield=True):
                await nursery.start(
                    functools.partial(serve_tool_server, options, tls=tls, subreaper=True)
                )
            await trio.sleep_forever()

    def stopping(signum: int) -> None:
        logger.info("%s: shutting down", signal.Signals(signum).name)

    await run_until_signalled(serve, on_signal=stopping)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("TRIO_SANDBOX_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, os.environ)
        tls = server_tls(options)
    except ToolServerOptionsError as exc:
        print(f"trio-sandbox-tools: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_run, options, tls)
    except ToolServerWedged as exc:
        print(f"trio-sandbox-tools: {exc}", file=sys.stderr)
        return 1
    return 0


def drop_runtime_variables(environ: MutableMapping[str, str]) -> None:
    """Forget the variables that only started this interpreter (the warden names them), so
    that the commands the tools run get the sandbox's environment, not the runtime's."""
    for name in environ.get(RUNTIME_VARS_VARIABLE, "").split(","):
        if name:
            environ.pop(name, None)


def console_main() -> NoReturn:
    """``python -m trio_sandbox.tools`` and ``trio-sandbox-tools``."""
    drop_runtime_variables(os.environ)
    exit_now(main())
