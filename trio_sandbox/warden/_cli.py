"""`trio-sandbox-warden wrap [OPTIONS] IMAGE -- CMD [ARG...]`: parse, pick a back end, run."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn

from ..concurrency import record_early_signals
from ..contract import (
    ENV_FD_OPTION,
    INJECT_FD_OPTION,
    INJECT_SECRET_OPTION,
    LIMIT_KINDS,
    REPORT_FD_OPTION,
    ContractValueError,
    LimitRequest,
    NetworkMode,
    ResourceLimits,
    Volume,
    default_tool_server_command,
)
from ..program import exit_now
from ._choice import BACKEND_CHOICES, BACKENDS, choose_backend
from ._errors import ReportFdError, WrapRequestError
from ._inject import check_inject_request, parse_inject_requests, take_inject_fd
from ._limits import default_limits
from ._report import Reporter, open_report_fd
from ._spec import (
    WARDEN_ERROR_STATUS,
    BackendName,
    WrapSpec,
    parse_env,
    parse_port,
    parse_user,
    read_env_fd,
)
from ._stopping import ORPHANED, PARENT_GONE_STATUS, open_lifeline

_HOST_NETWORK_WARNING = (
    "trio-sandbox-warden: WARNING: --network host: the sandbox shares this host's network.\n"
    "trio-sandbox-warden: WARNING: it reaches every host and port this machine reaches, its"
    " loopback services included; --network allow lets through only listed destinations.\n"
)


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
    wrap.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    wrap.add_argument(
        "--network",
        choices=[mode.value for mode in NetworkMode],
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
    for kind in LIMIT_KINDS:
        limits.add_argument(kind.option, metavar=kind.metavar, help=kind.help)
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
        INJECT_SECRET_OPTION,
        action="append",
        default=[],
        metavar="NAME=HOST[,HOST...]",
        help="with --network allow: the sandbox gets NAME as a placeholder, which the egress"
        " proxy replaces by the real value (from --inject-fd) in requests to HOST only (TLS"
        " intercepted there with a CA the sandbox trusts); HOST as in --allow-domain, allowed"
        " implicitly; repeatable",
    )
    wrap.add_argument(
        INJECT_FD_OPTION,
        metavar="N",
        help="an inherited descriptor holding the values of --inject-secret and the"
        " interception CA (JSON), read once and closed",
    )
    wrap.add_argument(
        REPORT_FD_OPTION,
        metavar="N",
        help="write the warden's reports (limits, warnings, egress audit; JSON lines) to this"
        " inherited pipe, which no sandboxed process can reach",
    )
    for backend in BACKENDS.values():
        backend.add_arguments(wrap)
    wrap.add_argument("image", metavar="IMAGE")
    for backend in BACKENDS.values():
        backend.add_subcommands(commands)
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
        backend: BackendName = options.backend
        network = NetworkMode(options.network)
        # Volumes only one back end understands (a kubernetes "pvc:..."): left to that one.
        theirs: dict[str, tuple[str, ...]] = {}
        for name, other in BACKENDS.items():
            for prefix, kind in other.volume_kinds.items():
                texts = tuple(text for text in options.volume if text.startswith(prefix))
                if texts and backend != name:
                    raise WrapRequestError(f"--volume {prefix}...: {kind} needs --backend {name}")
                theirs[name] = theirs.get(name, ()) + texts
        foreign = {text for texts in theirs.values() for text in texts}
        spec = WrapSpec(
            image=options.image,
            command=command or default_tool_server_command(),
            volumes=tuple(
                Volume.parse(text).resolved() for text in options.volume if text not in foreign
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
            report=Reporter(open_report_fd(options.report_fd) if options.report_fd else None),
            inject=parse_inject_requests(options.inject_secret),
            inject_fd=take_inject_fd(options.inject_fd) if options.inject_fd else None,
        )
        chosen = BACKENDS.get(backend)  # None: "auto", never a back end with options of its own
        if chosen is not None:
            spec = chosen.configure(spec, options, theirs.get(backend, ()))
        check_inject_request(spec, chosen, backend)
        if spec.network == "allow":
            # Imports Trio (the proxy's package) before the launch: allow mode only.
            from ._egress import egress_environment, egress_policy

            spec = replace(spec, egress=egress_policy(spec, chosen))
            if chosen is None or chosen.proxies_egress:
                # Before the caller's own variables, so that theirs win (the last one set wins).
                spec = replace(spec, env=egress_environment() + spec.env)
        elif spec.allow_domains or spec.deny_domains:
            raise WrapRequestError("--allow-domain and --deny-domain need --network allow")
        return spec
    except (WrapRequestError, ContractValueError, ReportFdError) as exc:
        parser.error(str(exc))


def parse_limits(options: argparse.Namespace) -> ResourceLimits:
    """The limits asked for on the command line, the defaults for the others."""
    request = LimitRequest.parse({kind.name: getattr(options, kind.name) for kind in LIMIT_KINDS})
    return request.resolve(default_limits())


def _launch_and_run(spec: WrapSpec, lifeline: int | None) -> int:
    backend = BACKENDS[choose_backend(spec)]
    # Until Trio takes over, stop signals are only recorded (then honoured at once).
    record_early_signals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    if spec.network == "host" and backend.isolates:
        print(_HOST_NETWORK_WARNING, end="", file=sys.stderr, flush=True)
    # Before importing Trio: bubblewrap boots while the warden's own imports run.
    launched = backend.launch(spec)
    import trio

    from ._supervisor import supervise_sandbox

    return trio.run(supervise_sandbox, launched, spec, lifeline)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; parses `sys.argv` when `argv` is None."""
    # First thing: whoever started us may be killed at any moment from now on.
    lifeline = open_lifeline()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["wrap"]:
        # A back end's own subcommand (or bad usage, which argparse reports).
        command = _parser().parse_args(args)
        status: int = command.run_command(command)
        return status
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
    except* (WrapRequestError, OSError) as group:
        failures = group.exceptions
    for failure in failures:
        print(f"trio-sandbox-warden: error: {failure}", file=sys.stderr, flush=True)
    return WARDEN_ERROR_STATUS


def console_main() -> NoReturn:
    """``python -m trio_sandbox.warden`` and ``trio-sandbox-warden``."""
    exit_now(main())
