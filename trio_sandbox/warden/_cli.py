"""`trio-sandbox-warden wrap [OPTIONS] IMAGE -- CMD [ARG...]`: parse, pick a back end, run."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from collections.abc import Sequence

import trio

from ._bwrap import run_bwrap
from ._container import engine_reachable, run_container
from ._process import run_process
from ._spec import (
    BACKENDS,
    NETWORKS,
    Backend,
    Network,
    WrapSpec,
    WrapUsageError,
    parse_env,
    parse_port,
    parse_volume,
)

WARDEN_ERROR_STATUS = 125  # like docker/podman: the warden itself failed


def default_command() -> tuple[str, ...]:
    """This package's own tool server, run by the interpreter running the warden."""
    return (sys.executable, "-m", "trio_sandbox.tools")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-sandbox-warden",
        description="Run a command (by default the trio_sandbox tool server) in a sandbox.",
    )
    commands = parser.add_subparsers(dest="subcommand", required=True)
    wrap = commands.add_parser(
        "wrap",
        usage="%(prog)s [OPTIONS] IMAGE [-- CMD [ARG...]]",
        help="run CMD in IMAGE ('host' = this machine's root file system, read-only; a"
        " directory = that root file system; anything else = an OCI image)",
    )
    wrap.add_argument("--volume", "-v", action="append", default=[], metavar="HOST:CONTAINER[:ro]")
    wrap.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    wrap.add_argument(
        "--publish", "-p", action="append", default=[], metavar="127.0.0.1:HOSTPORT:CONTAINERPORT"
    )
    wrap.add_argument("--workdir", "-w", default=None, metavar="DIR")
    wrap.add_argument("--backend", choices=BACKENDS, default="auto")
    wrap.add_argument("--network", choices=NETWORKS, default="none")
    wrap.add_argument("image", metavar="IMAGE")
    return parser


def parse_wrap_args(argv: Sequence[str]) -> WrapSpec:
    """Parse `wrap ...` (without the program name). Exits with status 2 on bad usage."""
    argv = list(argv)
    command: tuple[str, ...] = ()
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], tuple(argv[split + 1 :])
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        backend: Backend = options.backend
        network: Network = options.network
        return WrapSpec(
            image=options.image,
            command=command or default_command(),
            volumes=tuple(parse_volume(text) for text in options.volume),
            env=tuple(parse_env(text) for text in options.env),
            ports=tuple(parse_port(text) for text in options.publish),
            workdir=options.workdir,
            backend=backend,
            network=network,
        )
    except WrapUsageError as exc:
        parser.error(str(exc))


def choose_backend(spec: WrapSpec) -> Backend:
    """`auto`: bubblewrap for `host` or a root directory, a reachable container engine for an
    OCI image, otherwise an error; never the unisolated process back end."""
    if spec.backend != "auto":
        return spec.backend
    if spec.image_is_root_fs:
        if shutil.which("bwrap"):
            return "bwrap"
        raise WrapUsageError(
            f"image {spec.image!r} needs bubblewrap, which is not installed (Debian package"
            " 'bubblewrap'); --backend process runs WITHOUT isolation"
        )
    for engine in ("podman", "docker"):
        if shutil.which(engine) and engine_reachable(engine):
            return "podman" if engine == "podman" else "docker"
    raise WrapUsageError(
        f"image {spec.image!r} needs a container engine, but neither podman nor a reachable"
        " docker was found; use IMAGE 'host' or a root file system directory with bubblewrap"
    )


async def _run_backend(spec: WrapSpec) -> int:
    backend = choose_backend(spec)
    if backend == "bwrap":
        if not spec.image_is_root_fs:
            raise WrapUsageError(
                f"bwrap runs 'host' or a root file system directory, not {spec.image!r}"
            )
        return await run_bwrap(spec)
    if backend == "process":
        return await run_process(spec)
    return await run_container(backend, spec)


async def wrap(spec: WrapSpec) -> int:
    """Run the sandbox until the command exits (its status) or SIGINT/SIGTERM/SIGHUP arrive
    (the command is stopped, everything reaped, status 128 + signal number: 130 for SIGINT)."""
    received: list[int] = []
    status = WARDEN_ERROR_STATUS
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            backend_scope = trio.CancelScope()

            async def watch_signals() -> None:
                async for signum in signals:
                    received.append(signum)
                    backend_scope.cancel()
                    return

            nursery.start_soon(watch_signals)
            with backend_scope:
                status = await _run_backend(spec)
            nursery.cancel_scope.cancel()
    if received:
        return 128 + received[0]
    return 128 - status if status < 0 else status


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; parses `sys.argv` when `argv` is None."""
    args = list(sys.argv[1:] if argv is None else argv)
    spec = parse_wrap_args(args)
    failures: tuple[BaseException, ...] = ()
    try:
        return trio.run(wrap, spec)
    except* (WrapUsageError, OSError) as group:
        failures = group.exceptions
    for failure in failures:
        print(f"trio-sandbox-warden: error: {failure}", file=sys.stderr, flush=True)
    return WARDEN_ERROR_STATUS
