"""``trio-sandbox proxy``: the aggregating MCP proxy on its own, in front of any MCP servers.

Upstreams come from ``--upstream NAME=URL`` and from an ``mcpServers`` file (JSON or TOML). The
face is exactly one of: mutual TLS with a fresh certificate chain whose client bundle is written
to ``--client-cert-dir``, TLS with a bearer token (``--token-file``), plain HTTP on loopback
(``--plain-http``), or MCP on this process's stdin/stdout (``--stdio``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from ..observe import ObserveSettings, open_observer
from ..proxy import (
    ConfigError,
    HttpFace,
    HttpUpstream,
    NameCollisionError,
    OutputGuard,
    ProxyFace,
    ProxyHandle,
    StdioFace,
    UpstreamSpec,
    WebSocketUpstream,
    check_prefixes,
    client_ssl_context,
    effective_prefix,
    load_upstreams,
    serve_proxy,
)
from ..tls import CertificateChain, ClientBundlePaths
from ._errors import UsageError
from ._janitor import serve_janitor
from ._options import (
    Listen,
    add_observe_options,
    observe_settings,
    parse_listen,
    parse_upstream,
    read_token,
    run_observed,
)
from ._signals import stop_on_signals


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "proxy",
        help="serve one MCP endpoint in front of other MCP servers",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="NAME=URL", help="repeatable"
    )
    parser.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="NAME=PREFIX",
        help="tool prefix of upstream NAME (default: NAME; 'NAME=' for none)",
    )
    parser.add_argument("--upstream-ca", metavar="FILE", help="CA to trust for https/wss upstreams")
    parser.add_argument("--upstream-cert", metavar="FILE", help="client certificate for upstreams")
    parser.add_argument("--upstream-key", metavar="FILE", help="its private key")
    parser.add_argument("--config", metavar="FILE", help="an mcpServers file (.json or .toml)")
    parser.add_argument(
        "--listen", metavar="127.0.0.1:PORT", help="where to serve (default: a free port)"
    )
    parser.add_argument(
        "--list-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="per-upstream bound on a listing",
    )
    face = parser.add_mutually_exclusive_group(required=True)
    face.add_argument("--plain-http", action="store_true", help="plain HTTP, loopback only")
    face.add_argument("--token-file", metavar="FILE", help="TLS, clients send this bearer token")
    face.add_argument(
        "--client-cert-dir", metavar="DIR", help="mutual TLS; write the client bundle into DIR"
    )
    face.add_argument("--stdio", action="store_true", help="MCP on stdin/stdout")
    parser.add_argument(
        "--ca-out",
        metavar="FILE",
        help="with --token-file: write the proxy's CA certificate here (default: print it)",
    )
    add_observe_options(parser)
    parser.set_defaults(handler=proxy_command)


def say(message: str) -> None:
    print(f"trio-sandbox proxy: {message}", file=sys.stderr, flush=True)


@attrs.frozen
class ProxyOptions:
    upstreams: Sequence[UpstreamSpec]
    face: ProxyFace
    chain: CertificateChain | None
    bundle_dir: Path | None
    ca_out: Path | None
    list_timeout: float
    observe: ObserveSettings = attrs.field(factory=ObserveSettings)


def _upstream_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.upstream_key and not args.upstream_cert:
        raise UsageError("--upstream-key: given without --upstream-cert")
    if not (args.upstream_ca or args.upstream_cert):
        return None
    for kind in ("ca", "cert", "key"):
        path = getattr(args, f"upstream_{kind}")
        if path is not None and not os.access(path, os.R_OK):
            raise UsageError(f"--upstream-{kind}: cannot read {path}")
    try:
        return client_ssl_context(args.upstream_ca, args.upstream_cert, args.upstream_key)
    except (OSError, ssl.SSLError, ConfigError) as exc:
        raise UsageError(
            f"--upstream-ca/--upstream-cert/--upstream-key: cannot use them: {exc}"
        ) from None


def proxy_options(args: argparse.Namespace) -> ProxyOptions:
    """Check every option and build what :func:`serve_proxy` needs; UsageError names the option."""
    upstreams: list[UpstreamSpec] = []
    if args.config:
        try:
            upstreams += load_upstreams(args.config)
        except ConfigError as exc:
            raise UsageError(f"--config: {exc}") from None
    tls = _upstream_tls(args)
    secure_used = False
    for value in args.upstream:
        spec = parse_upstream(value)
        if isinstance(spec, HttpUpstream | WebSocketUpstream) and spec.url.startswith(
            ("https://", "wss://")
        ):
            secure_used = True
            if tls is not None:
                spec = attrs.evolve(spec, ssl_context=tls)
        upstreams.append(spec)
    if tls is not None and not secure_used:
        raise UsageError("--upstream-ca/--upstream-cert: no https:// or wss:// --upstream to use")
    if not upstreams:
        raise UsageError("--upstream: give at least one upstream (or --config)")
    names = [spec.name for spec in upstreams]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"--upstream: two upstreams are named {name!r}")
    for value in args.prefix:
        name, sep, prefix = value.partition("=")
        if not sep or not name:
            raise UsageError(f"--prefix: expected NAME=PREFIX (or NAME= for none), got {value!r}")
        if name not in names:
            raise UsageError(f"--prefix: no upstream is named {name!r}; known: {names}")
        upstreams = [
            attrs.evolve(spec, prefix=prefix) if spec.name == name else spec for spec in upstreams
        ]
    try:
        check_prefixes((spec.name, effective_prefix(spec)) for spec in upstreams)
    except (NameCollisionError, ValueError) as exc:
        raise UsageError(f"--prefix: {exc}") from None
    if args.list_timeout <= 0:
        raise UsageError("--list-timeout: must be a positive number of seconds")
    if args.ca_out and not args.token_file:
        raise UsageError("--ca-out: only with --token-file")

    if args.stdio:
        if args.listen:
            raise UsageError("--listen: not with --stdio")
        observe = observe_settings(args, "proxy --stdio", stdout_free=False)
        return ProxyOptions(upstreams, StdioFace(), None, None, None, args.list_timeout, observe)
    listen = parse_listen(args.listen) if args.listen else Listen("127.0.0.1", 0)
    chain: CertificateChain | None = None
    token: str | None = None
    if not args.plain_http:
        token = read_token(args.token_file) if args.token_file else None
        hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
        if listen.host not in hostnames:
            hostnames = (listen.host, *hostnames)
        chain = CertificateChain.generate(server_hostnames=hostnames)
    try:
        face = HttpFace(
            host=listen.host, port=listen.port, chain=chain, token=token, plain=args.plain_http
        )
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    return ProxyOptions(
        upstreams,
        face,
        chain,
        Path(args.client_cert_dir) if args.client_cert_dir else None,
        Path(args.ca_out) if args.ca_out else None,
        args.list_timeout,
        observe_settings(args, "proxy", stdout_free=True),
    )


def proxy_command(args: argparse.Namespace) -> int:
    options = proxy_options(args)
    run_observed(options.observe, serve_until_signalled, options)
    return 0


async def serve_until_signalled(options: ProxyOptions) -> None:
    """Serve until SIGINT/SIGTERM (or, on stdio, the end of stdin)."""
    await stop_on_signals(partial(_serve, options), announce=say)


async def _serve(options: ProxyOptions) -> None:
    written: ClientBundlePaths | None = None
    say(f"connecting to {len(options.upstreams)} upstream(s)")
    try:
        async with open_observer(options.observe) as observer, trio.open_nursery() as nursery:
            handle: ProxyHandle = await nursery.start(
                partial(
                    serve_proxy,
                    options.upstreams,
                    options.face,
                    list_timeout=options.list_timeout,
                    guard=OutputGuard(observer=observer),
                )
            )
            if observer.metrics_url is not None:
                say(f"Prometheus metrics at {observer.metrics_url}")
            for status in handle.statuses():
                say(f"upstream {json.dumps(status.to_json(), sort_keys=True)}")
            if handle.url is None:
                say("serving MCP on stdin/stdout")
            else:
                written = _explain(options, handle.url)
            if written is not None:
                files = [written.client_key, written.client_cert, written.ca_cert]
                await nursery.start(partial(serve_janitor, files, written.directory))
    finally:
        if written is not None:
            _remove_bundle(written)


def _explain(options: ProxyOptions, url: str) -> ClientBundlePaths | None:
    say(f"listening at {url}")
    chain = options.chain
    if chain is None:
        say("plain HTTP on loopback: no authentication")
        return None
    if options.bundle_dir is not None:
        paths = chain.write_client_bundle(options.bundle_dir)
        say(f"client bundle (0600 files) in {paths.directory}; removed when the proxy stops")
        say(
            f"connect with: curl --cacert {paths.ca_cert} --cert {paths.client_cert} "
            f"--key {paths.client_key} {url}"
        )
        say(f"or in Python: trio_sandbox.tls.load_client_ssl_context({str(paths.directory)!r})")
        return paths
    if options.ca_out is not None:
        options.ca_out.write_text(chain.ca_cert_pem())
        say(f"proxy CA certificate written to {options.ca_out}")
        trust = str(options.ca_out)
    else:
        say(f"proxy CA certificate:\n{chain.ca_cert_pem().strip()}")
        trust = "the CA certificate above"
    say(f"clients send 'Authorization: Bearer <token>' and trust {trust}")
    return None


def _remove_bundle(paths: ClientBundlePaths) -> None:
    # The chain dies with this process: leave no private key behind (and nothing else removed).
    for file in (paths.client_key, paths.client_cert, paths.ca_cert):
        file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        paths.directory.rmdir()
