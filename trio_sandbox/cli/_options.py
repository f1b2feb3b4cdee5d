"""The options shared by ``run``, ``stdio``, ``call`` and ``tools``, and the TOML file behind them.

Every option has a key of the same name in the config file; the command line wins over the file.
Errors name the option or key and say what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from ..contract import (
    INJECT_SECRET_OPTION,
    LIMIT_KINDS,
    InjectRequest,
    InjectRequestError,
    NetworkMode,
    Volume,
    VolumeError,
)
from ..observe import ObserveSettings
from ..proxy import (
    ConfigError,
    HttpUpstream,
    OutputLimits,
    UpstreamSpec,
    WebSocketUpstream,
    upstreams_from_mapping,
)
from ..sandbox import SandboxConfig, SandboxMode
from ._errors import UsageError

T = TypeVar("T")

# Config keys that map one to one onto SandboxConfig fields, with their expected types.
_SCALARS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "image": (str, "a string"),
    "mode": (str, "'persistent' or 'ephemeral'"),
    "backend": (str, "auto, bwrap, podman, docker, process or kubernetes"),
    "user": (str, "UID or UID:GID"),
    "network": (str, "'none', 'allow' or 'host'"),
    "redact": (bool, "true or false"),
    **{kind.name: ((str, *kind.number_types), kind.expected) for kind in LIMIT_KINDS},
    "health_interval": ((int, float), "a number of seconds"),
    "health_timeout": ((int, float), "a number of seconds"),
    "respawn_threshold": (int, "a whole number"),
    "max_respawn_attempts": (int, "a whole number"),
    "respawn_wait": ((int, float), "a number of seconds"),
    "ca_timeout": ((int, float), "a number of seconds"),
    "stop_grace": ((int, float), "a number of seconds"),
    "max_sandboxes": (int, "a whole number"),
    "warm_spares": (int, "a whole number (0: none)"),
    "audit_log": (str, "a path, or '-' for standard output"),
    "audit_log_max_bytes": (int, "a whole number of bytes (0: never rotated)"),
    "audit_log_backups": (int, "a whole number"),
    "metrics_listen": (str, "HOST:PORT such as 127.0.0.1:9464"),
    "traces": (bool, "true or false"),
}
_LISTS = {
    "volumes",
    "command",
    "warden",
    "env_passthrough",
    "upstream",
    "allow_domains",
    "deny_domains",
    "secret_env",
}
_TABLES = {"env", "mcpServers", "inject_secrets"}
_OTHER = {"listen", "sandbox_prefix", "output_max_lines", "output_max_bytes"}
KNOWN_KEYS = frozenset(_SCALARS) | _LISTS | _TABLES | _OTHER
BACKENDS = ("auto", "bwrap", "podman", "docker", "process", "kubernetes")


@attrs.frozen
class Listen:
    host: str
    port: int


def add_sandbox_options(parser: argparse.ArgumentParser, *, spares: bool = False) -> None:
    """The options every command that starts a sandbox takes; ``spares``: and
    ``--warm-spares`` (the long-lived commands: a one-shot command keeps none)."""
    parser.add_argument("--config", metavar="FILE", help="a TOML file with the same keys")
    parser.add_argument(
        "--image", help="'host' (default), a root file system directory, or an image"
    )
    parser.add_argument(
        "--volume", action="append", metavar="HOST:CONTAINER[:ro]", help="repeatable"
    )
    parser.add_argument("--mode", choices=[m.value for m in SandboxMode])
    parser.add_argument(
        "--max-sandboxes",
        type=int,
        metavar="N",
        help="ephemeral mode: per-session sandboxes running at once (default 8)",
    )
    if spares:
        parser.add_argument(
            "--warm-spares",
            type=int,
            metavar="N",
            help=(
                "sandboxes kept started and ready, so that a respawn or a new ephemeral"
                " session gets one at once (default 1; 0: none; each costs a running sandbox)"
            ),
        )
    parser.add_argument("--backend", choices=BACKENDS, help="the warden back end (default auto)")
    parser.add_argument(
        "--upstream", action="append", metavar="NAME=URL", help="another MCP server (repeatable)"
    )
    parser.add_argument(
        "--env-passthrough", action="append", metavar="NAME", help="host variable to pass in"
    )
    for kind in LIMIT_KINDS:
        parser.add_argument(
            kind.option, metavar=kind.metavar, help=f"{kind.help}; 'unlimited' lifts it"
        )
    parser.add_argument(
        "--user",
        metavar="UID[:GID]",
        help="run the tools as this uid (default: the owner of the first writable volume)",
    )
    parser.add_argument(
        "--no-redact",
        action="store_true",
        default=None,
        help=(
            "do not run the secret rules on what the sandbox (and --upstream servers) send;"
            " --secret-env values and generated passwords are redacted all the same"
        ),
    )
    parser.add_argument(
        "--secret-env",
        action="append",
        metavar="NAME",
        help="host variable passed into the sandbox whose value is always redacted (repeatable)",
    )
    parser.add_argument(
        INJECT_SECRET_OPTION,
        action="append",
        metavar="NAME=HOST[,HOST...]",
        help="host variable that never enters the sandbox: it sees a placeholder, which the"
        " egress proxy replaces by the value in requests to HOST only (needs --network allow;"
        " HOST as in --allow-domain, allowed implicitly; repeatable)",
    )
    parser.add_argument(
        "--network",
        choices=[mode.value for mode in NetworkMode],
        help="none (default: the sandbox's own loopback only), allow (only --allow-domain"
        " destinations, through an egress proxy), host (the host's network: NOT isolated)",
    )
    parser.add_argument(
        "--allow-domain",
        action="append",
        metavar="HOST[:PORT]",
        help="with --network allow: pypi.org, *.example.com (subdomains), 10.0.0.5:8080;"
        " without a port, 80 and 443 (repeatable)",
    )
    parser.add_argument(
        "--deny-domain",
        action="append",
        metavar="HOST[:PORT]",
        help="refused even if allowed; without a port, every port (repeatable)",
    )
    add_observe_options(parser)


def add_observe_options(parser: argparse.ArgumentParser) -> None:
    """The audit log, the metrics and the traces: every command that serves takes them."""
    parser.add_argument(
        "--audit-log",
        metavar="FILE|-",
        help="append a JSON Lines record of every call, read, sandbox start/respawn/stop and"
        " network connection to FILE (0600, rotated at 64 MiB keeping 5), or '-' for standard"
        " output where it is free; secrets redacted",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (plain HTTP: keep it on"
        " 127.0.0.1 or ::1)",
    )
    parser.add_argument(
        "--traces",
        action="store_true",
        default=None,
        help="export OpenTelemetry spans over OTLP/HTTP as the OTEL_* variables say (needs"
        " the otel extra: pip install 'trio_sandbox[otel]')",
    )


def observe_settings(
    args: argparse.Namespace, command: str, *, stdout_free: bool
) -> ObserveSettings:
    """The observe options of a command that has no config file for them; ``--audit-log -`` is
    refused where standard output is the command's own (MCP messages, a result)."""
    settings = ObserveSettings(
        audit_log=args.audit_log, metrics_listen=args.metrics_listen, traces=bool(args.traces)
    )
    if not stdout_free:
        refuse_audit_on_stdout(settings, command)
    return settings


def run_observed(settings: ObserveSettings, main: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(main, *args)``, with ``--traces``: inside an OpenTelemetry SDK provider made
    from the ``OTEL_*`` variables, shut down (its last spans sent) after Trio has stopped."""
    # What the program loaded so far lives as long as it does: later full collections need not
    # walk it (over the imports alone, one paused the event loop 15-20 ms).
    gc.freeze()
    if not settings.traces:
        return trio.run(main, *args)
    from ..observe import otel_provider_from_environment

    with otel_provider_from_environment(set_global=True):
        return trio.run(main, *args)


def refuse_audit_on_stdout(settings: ObserveSettings, command: str) -> None:
    """``--audit-log -`` for a command whose standard output is its own (MCP messages, a
    result): refused rather than mixed in."""
    if settings.audit_log == "-":
        raise UsageError(
            f"--audit-log -: standard output is {command}'s own; give the audit log a file"
        )


def read_token(path: str) -> str:
    """The bearer token in ``--token-file``: at least 16 characters, surrounding space dropped."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise UsageError("--token-file: the token must be at least 16 characters")
    return token


def parse_listen(value: str, where: str = "--listen") -> Listen:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise UsageError(f"{where}: expected HOST:PORT such as 127.0.0.1:8765, got {value!r}")
    return Listen(host, int(port))


def parse_upstream(value: str, where: str = "--upstream", *, redact: bool = True) -> UpstreamSpec:
    name, sep, url = value.partition("=")
    if not sep or not name or not url:
        raise UsageError(f"{where}: expected NAME=URL, got {value!r}")
    if url.startswith(("ws://", "wss://")):
        return WebSocketUpstream(name=name, url=url, redact=redact)
    if url.startswith(("http://", "https://")):
        return HttpUpstream(name=name, url=url, redact=redact)
    raise UsageError(f"{where}: {url!r} is not an http(s):// or ws(s):// URL")


def load_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(KNOWN_KEYS))}"
        )
    return data


def _check(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise UsageError(f"config key {key!r}: expected {what}, got {value!r}")
    return value


def _string_list(data: Mapping[str, Any], key: str) -> list[str]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"config key {key!r}: expected a list of strings, got {value!r}")
    return value


def _inject_table(data: Mapping[str, Any]) -> dict[str, list[str]]:
    table: dict[str, list[str]] = _check(data, "inject_secrets", dict, "a table of NAME = [hosts]")
    for name, hosts in table.items():
        if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
            raise UsageError(
                f"config key 'inject_secrets': {name} must be a list of hosts"
                ' (NAME = ["api.example.com"])'
            )
    return table


def _inject_options(texts: list[str]) -> dict[str, list[str]]:
    """``--inject-secret NAME=HOST[,HOST...]`` entries; a repeated NAME adds hosts."""
    merged: dict[str, list[str]] = {}
    for text in texts:
        try:
            request = InjectRequest.parse(text)
        except InjectRequestError as error:
            raise UsageError(str(error)) from None
        hosts = merged.setdefault(request.name, [])
        hosts += [host for host in request.hosts if host not in hosts]
    return merged


def sandbox_config(args: argparse.Namespace) -> tuple[SandboxConfig, Listen | None]:
    """Merge the config file (if any) and the command line into a SandboxConfig."""
    data = load_config_file(args.config) if args.config else {}
    base_dir = Path(args.config).parent if args.config else Path.cwd()
    fields: dict[str, Any] = {}
    for key, (kind, what) in _SCALARS.items():
        if key in data:
            fields[key] = _check(data, key, kind, what)
    for key in (
        "volumes",
        "command",
        "warden",
        "env_passthrough",
        "allow_domains",
        "deny_domains",
        "secret_env",
    ):
        if key in data:
            fields[key] = _string_list(data, key)
    if "env" in data:
        env = _check(data, "env", dict, "a table of strings")
        if not all(isinstance(v, str) for v in env.values()):
            raise UsageError("config key 'env': every value must be a string")
        fields["env"] = env
    if "inject_secrets" in data:
        fields["inject_secrets"] = _inject_table(data)
    if "sandbox_prefix" in data:
        fields["sandbox_prefix"] = _check(data, "sandbox_prefix", str, "a string")
    output_limits = {
        field: _check(data, key, int, "a positive whole number")
        for key, field in (("output_max_lines", "max_lines"), ("output_max_bytes", "max_bytes"))
        if key in data
    }
    for field, value in output_limits.items():
        if value <= 0:
            raise UsageError(f"config key 'output_{field}': expected a positive whole number")
    if output_limits:
        fields["output_limits"] = OutputLimits(**output_limits)
    upstreams: list[UpstreamSpec] = []
    if "mcpServers" in data:
        try:
            upstreams += upstreams_from_mapping(
                {"mcpServers": data["mcpServers"]}, base_dir, "config key 'mcpServers'"
            )
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    for item in _string_list(data, "upstream") if "upstream" in data else []:
        upstreams.append(parse_upstream(item, "config key 'upstream'"))
    listen = (
        parse_listen(_check(data, "listen", str, "HOST:PORT"), "config key 'listen'")
        if ("listen" in data)
        else None
    )

    # The command line wins.
    if args.image is not None:
        fields["image"] = args.image
    if args.volume:
        fields["volumes"] = args.volume
    if args.mode is not None:
        fields["mode"] = args.mode
    if args.max_sandboxes is not None:
        fields["max_sandboxes"] = args.max_sandboxes
    if getattr(args, "warm_spares", None) is not None:
        fields["warm_spares"] = args.warm_spares
    if args.backend is not None:
        fields["backend"] = args.backend
    if args.env_passthrough:
        fields["env_passthrough"] = args.env_passthrough
    if args.user is not None:
        fields["user"] = args.user
    if args.no_redact:
        fields["redact"] = False
    if args.secret_env:
        fields["secret_env"] = args.secret_env
    if args.inject_secret:
        fields["inject_secrets"] = _inject_options(args.inject_secret)
    if args.network is not None:
        fields["network"] = args.network
    if args.audit_log is not None:
        fields["audit_log"] = args.audit_log
    if args.metrics_listen is not None:
        fields["metrics_listen"] = args.metrics_listen
    if args.traces:
        fields["traces"] = True
    if args.allow_domain:
        fields["allow_domains"] = args.allow_domain
    if args.deny_domain:
        fields["deny_domains"] = args.deny_domain
    for limit in LIMIT_KINDS:
        if getattr(args, limit.name) is not None:
            fields[limit.name] = getattr(args, limit.name)
    for item in args.upstream or []:
        upstreams.append(parse_upstream(item, redact=not args.no_redact))
    if getattr(args, "listen", None):
        listen = parse_listen(args.listen)
    if "mode" in fields and fields["mode"] not in [m.value for m in SandboxMode]:
        raise UsageError(
            f"config key 'mode': expected 'persistent' or 'ephemeral', got {fields['mode']!r}"
        )
    if "backend" in fields and fields["backend"] not in BACKENDS:
        raise UsageError(f"config key 'backend': expected one of {', '.join(BACKENDS)}")
    fields["volumes"] = [_expand_volume(v, base_dir) for v in fields.get("volumes", [])]
    try:
        config = SandboxConfig(upstreams=upstreams, **fields)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid configuration: {exc}") from None
    return config, listen


def _expand_volume(spec: str, base_dir: Path) -> Volume:
    """Relative host paths (./x, ../x) are relative to the config file, as users expect."""
    try:
        volume = Volume.parse(spec)  # here, so that the error names the option
    except VolumeError as exc:
        raise UsageError(str(exc)) from None
    if volume.source.startswith("."):  # never a named volume's
        return dataclasses.replace(volume, source=str((base_dir / volume.source).resolve()))
    return volume
