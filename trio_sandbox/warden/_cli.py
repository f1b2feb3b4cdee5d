"""`trio-sandbox-warden wrap [OPTIONS] IMAGE -- CMD [ARG...]`: parse, pick a back end, run."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import attrs

from ..concurrency import record_early_signals
from ..contract import ENV_FD_OPTION, REPORT_FD_OPTION
from ..program import exit_now
from ._kubernetes_options import (
    add_kubernetes_options,
    is_claim_volume,
    kubernetes_options,
    parse_claim_volume,
)
from ._limits import Limits, lifts_limit, parse_cpus, parse_pids, parse_size
from ._report import Reporter, ReportFdError, open_report_fd
from ._spec import (
    BACKENDS,
    NETWORKS,
    WARDEN_ERROR_STATUS,
    Backend,
    Network,
    WrapSpec,
    WrapUsageError,
    parse_env,
    parse_port,
    parse_user,
    parse_volume,
    read_env_fd,
)
from ._stopping import ORPHANED, PARENT_GONE_STATUS, open_lifeline

T = TypeVar("T")

_HOST_NETWORK_WARNING = (
    "trio-sandbox-warden: WARNING: --network host: the sandbox shares this host's network.\n"
    "trio-sandbox-warden: WARNING: it reaches every host and port this machine reaches, its"
    " loopback services included; --network allow lets through only listed destinations.\n"
)


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
    wrap.add_argument(
        "--network",
        choices=NETWORKS,
        default="none",
        help="none (default: loopback only), allow (only the --allow-domain destinations,"
        " through a proxy the warden serves inside), host (the host's network: NO isolation)",
    )
    wrap.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="with --network allow: a destination (pypi.org, *.example.com, 10.0.0.5:8080;"
        " without a port: 80 and 443), repeatable",
    )
    wrap.add_argument(
        "--deny-domain",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="with --network allow: refused even when allowed (without a port: every port)",
    )
    limits = wrap.add_argument_group(
        "limits (for the whole sandbox; 'unlimited' lifts one; defaults protect a laptop)"
    )
    limits.add_argument("--memory", metavar="SIZE", help="e.g. 2G (default: 4G or half the RAM)")
    limits.add_argument("--pids", metavar="N", help="processes and threads (default 1024)")
    limits.add_argument("--cpus", metavar="N", help="CPUs, may be fractional (default: half)")
    limits.add_argument("--tmp-size", metavar="SIZE", help="the /tmp tmpfs (default 1G)")
    wrap.add_argument(
        "--user",
        metavar="UID[:GID]",
        help="run the command as this uid (default: the owner of the first writable volume)",
    )
    wrap.add_argument(
        ENV_FD_OPTION,
        metavar="N",
        help="read more K=V variables from this inherited descriptor (records ended by NUL"
        " bytes), where other local users cannot see them, unlike the command line",
    )
    wrap.add_argument(
        REPORT_FD_OPTION,
        metavar="N",
        help="write the warden's reports (limits, warnings, egress audit; JSON lines) to this"
        " inherited pipe, which no sandboxed process can reach",
    )
    add_kubernetes_options(wrap)
    wrap.add_argument("image", metavar="IMAGE")
    sweep = commands.add_parser(
        "sweep",
        help="delete leftover kubernetes Pods of sandboxes whose warden is gone (or overdue)",
    )
    add_kubernetes_options(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
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
        claims = tuple(parse_claim_volume(text) for text in options.volume if is_claim_volume(text))
        if claims and backend != "kubernetes":
            raise WrapUsageError(
                "--volume pvc:...: a PersistentVolumeClaim needs --backend kubernetes"
            )
        spec = WrapSpec(
            image=options.image,
            command=command or default_command(),
            volumes=tuple(
                parse_volume(text) for text in options.volume if not is_claim_volume(text)
            ),
            # The descriptor's first, then the command line's: a later value wins.
            env=(
                *(read_env_fd(options.env_fd) if options.env_fd else ()),
                *(parse_env(text) for text in options.env),
            ),
            ports=tuple(parse_port(text) for text in options.publish),
            workdir=options.workdir,
            backend=backend,
            network=network,
            allow_domains=tuple(options.allow_domain),
            deny_domains=tuple(options.deny_domain),
            user=parse_user(options.user) if options.user else None,
            limits=parse_limits(options),
            kubernetes=kubernetes_options(options, claims) if backend == "kubernetes" else None,
            report=Reporter(open_report_fd(options.report_fd) if options.report_fd else None),
        )
        if spec.network == "allow":
            # Imports Trio (the proxy's package) before the launch: allow mode only.
            from ._egress import egress_environment, egress_policy

            spec = attrs.evolve(spec, egress=egress_policy(spec))
            if spec.backend != "kubernetes":  # a Pod's egress is its NetworkPolicy: no proxy
                # After the caller's own variables, so that they win.
                spec = attrs.evolve(spec, env=spec.env + egress_environment())
        elif spec.allow_domains or spec.deny_domains:
            raise WrapUsageError("--allow-domain and --deny-domain need --network allow")
        return spec
    except (WrapUsageError, ReportFdError) as exc:
        parser.error(str(exc))


def parse_limits(options: argparse.Namespace) -> Limits:
    """The limits asked for on the command line, the defaults for the others."""
    defaults = Limits.defaults()

    def pick(text: str | None, default: T, parse: Callable[[str], T]) -> T | None:
        if text is None:
            return default
        return None if lifts_limit(text) else parse(text)

    return Limits(
        memory=pick(options.memory, defaults.memory, lambda t: parse_size(t, "--memory")),
        pids=pick(options.pids, defaults.pids, parse_pids),
        cpus=pick(options.cpus, defaults.cpus, parse_cpus),
        tmp_size=pick(options.tmp_size, defaults.tmp_size, lambda t: parse_size(t, "--tmp-size")),
    )


def _engine_reachable(engine: str) -> bool:
    """podman runs without a daemon; the docker client needs a reachable service."""
    if engine == "podman":
        return True
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        probe = subprocess.run([engine, "version"], capture_output=True, timeout=5, check=False)
        return probe.returncode == 0
    return False


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
        if shutil.which(engine) and _engine_reachable(engine):
            return "podman" if engine == "podman" else "docker"
    raise WrapUsageError(
        f"image {spec.image!r} needs a container engine, but neither podman nor a reachable"
        " docker was found; use IMAGE 'host' or a root file system directory with bubblewrap"
    )


def _launch_and_run(spec: WrapSpec, lifeline: int | None) -> int:
    backend = choose_backend(spec)
    if backend == "bwrap" and not spec.image_is_root_fs:
        raise WrapUsageError(f"bwrap runs 'host' or a root directory, not {spec.image!r}")
    # Until Trio takes over, stop signals are only recorded (then honoured at once).
    early_signals = record_early_signals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    if spec.network == "host" and backend != "process":
        print(_HOST_NETWORK_WARNING, end="", file=sys.stderr, flush=True)
    from ._prelaunch import Prelaunch

    prelaunch = Prelaunch(lifeline=lifeline)
    if backend == "bwrap":
        # Start bubblewrap before importing Trio: the sandbox boots while the warden's own
        # imports run.
        from ._bwrap import launch_bwrap

        prelaunch = Prelaunch(bwrap=launch_bwrap(spec), lifeline=lifeline)
    elif backend in ("podman", "docker") and spec.reaches_into_netns:
        from ._netns import fork_netns_helper

        prelaunch = Prelaunch(netns_helper=fork_netns_helper(), lifeline=lifeline)
    import trio

    from ._run import wrap

    return trio.run(wrap, backend, spec, prelaunch, early_signals)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; parses `sys.argv` when `argv` is None."""
    # First thing: whoever started us may be killed at any moment from now on.
    lifeline = open_lifeline()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sweep"]:
        from ._kubernetes_sweep import sweep_main

        return sweep_main(_parser().parse_args(args))
    spec = parse_wrap_args(args)
    if lifeline == ORPHANED:
        print(
            "trio-sandbox-warden: error: the process that started the warden is gone",
            file=sys.stderr,
            flush=True,
        )
        return PARENT_GONE_STATUS
    failures: tuple[BaseException, ...] = ()
    try:
        return _launch_and_run(spec, lifeline)
    except* (WrapUsageError, OSError) as group:
        failures = group.exceptions
    for failure in failures:
        print(f"trio-sandbox-warden: error: {failure}", file=sys.stderr, flush=True)
    return WARDEN_ERROR_STATUS


def console_main() -> NoReturn:
    """``python -m trio_sandbox.warden`` and ``trio-sandbox-warden``."""
    exit_now(main())
