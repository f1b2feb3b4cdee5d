"""``trio-sandbox run``: start the sandbox and its proxy, say how to connect, follow its health."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

from ..program import state_dir
from ..proxy import HttpFace
from ..sandbox import Sandbox, SandboxConfig, open_sandbox
from ..tls import CertificateChain, ClientBundlePaths
from ._janitor import serve_janitor
from ._options import Listen, add_sandbox_options, read_token, run_observed, sandbox_config
from ._signals import say, stop_on_signals


def default_bundle_dir() -> Path:
    return state_dir() / "client"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="start the sandbox and serve its MCP proxy")
    add_sandbox_options(parser, spares=True)
    parser.add_argument(
        "--listen", metavar="127.0.0.1:PORT", help="proxy address (default: a free port)"
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--client-cert-dir",
        metavar="DIR",
        help=f"where to write the client certificate bundle (default {default_bundle_dir()})",
    )
    auth.add_argument("--token-file", metavar="FILE", help="serve TLS + bearer token from FILE")
    parser.set_defaults(handler=run_command)


class _StageHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


def report_stages() -> None:
    """Print the sandbox's start-up milestones (identity, warden, CA, ready) as they happen."""
    stages = logging.getLogger("trio_sandbox.stages")
    stages.setLevel(logging.INFO)
    stages.propagate = False
    if not any(isinstance(handler, _StageHandler) for handler in stages.handlers):
        stages.addHandler(_StageHandler())


def run_command(args: argparse.Namespace) -> int:
    config, listen = sandbox_config(args)
    token = read_token(args.token_file) if args.token_file else None
    bundle_dir = Path(args.client_cert_dir) if args.client_cert_dir else default_bundle_dir()
    report_stages()
    run_observed(
        config.observe_settings,
        stop_on_signals,
        partial(_run, config, listen or Listen("127.0.0.1", 0), token, bundle_dir),
    )
    say("stopped")
    return 0


async def _run(config: SandboxConfig, listen: Listen, token: str | None, bundle_dir: Path) -> None:
    say("generating the proxy's certificate chain")
    chain = CertificateChain.generate()
    face = HttpFace(host=listen.host, port=listen.port, chain=chain, token=token)
    say(
        f"starting the sandbox: image {config.image}, back end {config.backend}, mode {config.mode}"
    )
    started = trio.current_time()
    async with open_sandbox(config, face=face) as sandbox:
        elapsed = trio.current_time() - started
        say(f"sandbox ready in {elapsed:.2f} s: {len(sandbox.tools)} tools")
        say(f"proxy listening at {sandbox.proxy_url}")
        if sandbox.proxy.server.observer.metrics_url is not None:
            say(f"Prometheus metrics at {sandbox.proxy.server.observer.metrics_url}")
        # Only the files this run wrote are removed at exit, never other files in the directory.
        written: list[Path] = []
        _make_parents(bundle_dir)
        if token is None:
            paths: ClientBundlePaths = sandbox.write_client_bundle(bundle_dir)
            written = [paths.client_key, paths.client_cert, paths.ca_cert]
            say(f"client certificate bundle (0600 files) in {bundle_dir}")
            say(
                "connect with: trio-sandbox status --url "
                f"{sandbox.proxy_url} --client-cert-dir {bundle_dir}"
            )
        else:
            ca_file = trio.Path(bundle_dir / "ca.pem")
            await ca_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            await ca_file.write_text(chain.ca_cert_pem())
            written = [Path(ca_file)]
            say(f"clients send 'Authorization: Bearer <token>' and trust {ca_file}")
        try:
            async with trio.open_nursery() as nursery:
                # Removes the bundle should this process be killed; the finally does otherwise.
                await nursery.start(partial(serve_janitor, written, bundle_dir))
                await _follow_health(sandbox)
        finally:
            # The bundle is good for this run only; leave no key behind.
            _remove_bundle(written, bundle_dir)


def _make_parents(bundle_dir: Path) -> None:
    # On a fresh machine ~/.local/state does not exist yet.
    bundle_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def _remove_bundle(written: list[Path], bundle_dir: Path) -> None:
    for file in written:
        file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        bundle_dir.rmdir()  # only if nothing else is in it


async def _follow_health(sandbox: Sandbox) -> NoReturn:
    while True:
        health = await sandbox.wait_health_change()
        say(f"health {json.dumps(health.to_json(), sort_keys=True)}")
