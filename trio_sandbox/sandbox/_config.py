"""How a sandbox is made and watched: :class:`SandboxConfig` and :class:`SandboxMode`."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..contract import (
    CPUS,
    MEMORY,
    PIDS,
    TMP_SIZE,
    InjectRequest,
    InjectRequestError,
    LimitRequest,
    NetworkMode,
    Unlimited,
    Volume,
    default_tool_server_command,
)
from ..egress import DestinationRule, EgressPolicy, PolicyError
from ..observe import ObserveSettings
from ..program import state_dir
from ..proxy import HttpUpstream, OutputLimits, UpstreamSpec


class SandboxMode(enum.StrEnum):
    """``persistent``: one monitored sandbox for every client; ``ephemeral``: one per session."""

    PERSISTENT = "persistent"
    EPHEMERAL = "ephemeral"


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _upstreams(value: Iterable[UpstreamSpec]) -> tuple[UpstreamSpec, ...]:
    return tuple(value)


def _default_warden() -> tuple[str, ...]:
    return (sys.executable, "-m", "trio_sandbox.warden")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, not {value!r}")


def _valid_user(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    uid, sep, gid = value.partition(":")
    if not uid.isdigit() or (sep and not gid.isdigit()):
        raise ValueError(f"user must be UID or UID:GID (numbers), not {value!r}")


# Converters from what a user gives for a limit ("2G", 1024, "unlimited", None) to its value;
# LimitError (a ValueError) naming the setting.
def _memory(value: object) -> int | Unlimited | None:
    return MEMORY.convert(value)


def _pids(value: object) -> int | Unlimited | None:
    return PIDS.convert(value)


def _cpus(value: object) -> float | Unlimited | None:
    return CPUS.convert(value)


def _tmp_size(value: object) -> int | Unlimited | None:
    return TMP_SIZE.convert(value)


def _volumes(value: Iterable[str | Volume]) -> tuple[Volume, ...]:
    return tuple(
        item if isinstance(item, Volume) else Volume.parse(item, where="volume") for item in value
    )


def _network_mode(value: str) -> NetworkMode:
    return NetworkMode.parse(value, where="network")


def _egress_entries(config: SandboxConfig) -> None:
    """Bad allow/deny entries are refused at start, the entry named (exit 2 on the CLI)."""
    if config.network != "allow":
        if config.allow_domains or config.deny_domains:
            mode = config.network.value
            raise ValueError(
                f"allow_domains and deny_domains need network = 'allow' (not {mode!r})"
            )
        return
    try:
        EgressPolicy.parse(allow=config.allow_domains, deny=config.deny_domains)
    except PolicyError as error:
        raise ValueError(str(error)) from None


def _inject_secrets(value: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """NAME -> hosts, as a dict of tuples; a bare string for the hosts is refused (it would be
    read as one host per character)."""
    if not isinstance(value, Mapping):
        raise TypeError("inject_secrets must map each NAME to a list of hosts")
    hosts: dict[str, tuple[str, ...]] = {}
    for name, entries in value.items():
        if isinstance(entries, str) or not all(isinstance(entry, str) for entry in entries):
            raise ValueError(f"inject_secrets {name}: expected a list of hosts, not a string")
        hosts[name] = tuple(entries)
    return hosts


_INJECT_NEEDS_ALLOW = (
    "inject_secrets needs network = 'allow': the egress proxy replaces the placeholders"
    " (not {mode!r})"
)
_INJECT_NO_PROXY = (
    "inject_secrets needs the egress proxy, which the kubernetes back end does not have (a"
    " NetworkPolicy cannot terminate TLS); use bwrap or podman"
)


def _inject_entries(config: SandboxConfig) -> None:
    """inject_secrets' checks at start (exit 2 on the CLI): errors name the setting, NAME and
    the host entry, never a value (the values are read from the host only when the sandbox
    starts)."""
    if not config.inject_secrets:
        return
    if config.network != "allow":
        raise ValueError(_INJECT_NEEDS_ALLOW.format(mode=config.network.value))
    if config.backend == "kubernetes":
        raise ValueError(_INJECT_NO_PROXY)
    elsewhere = {
        "env": set(config.env),
        "env_passthrough": set(config.env_passthrough),
        "secret_env": set(config.secret_env),
    }
    deny = EgressPolicy.parse(deny=config.deny_domains).deny
    for name, hosts in config.inject_secrets.items():
        try:
            request = InjectRequest(name, hosts)
        except InjectRequestError as error:
            raise ValueError(f"inject_secrets {name}: {error.reason}") from None
        for setting, names in elsewhere.items():
            if name in names:
                raise ValueError(
                    f"inject_secrets {name}: also in {setting}, which would pass the real"
                    f" value into the sandbox (the sandbox sees the placeholder as {name})"
                )
        for host in request.hosts:
            try:
                rule = DestinationRule.parse(host, f"inject_secrets {name}")
            except PolicyError as error:
                raise ValueError(str(error)) from None
            for denied in deny:
                if denied.denies_some_of(rule):
                    raise ValueError(
                        f"inject_secrets {name}: {host!r} is denied by deny_domains"
                        f" {denied.entry!r}"
                    )


def _audit_log_outside_volumes(config: SandboxConfig) -> None:
    """An audit log the sandbox can write (in a writable bind volume) could be rewritten by the
    code it records: refused, naming the volume."""
    if config.audit_log is None or config.audit_log == "-":
        return
    log = os.path.realpath(os.path.expanduser(config.audit_log))
    for volume in config.volumes:
        if volume.read_only or volume.named or volume.claim:
            continue
        source = os.path.realpath(volume.resolved().source)
        if log == source or log.startswith(source.rstrip("/") + "/"):
            raise ValueError(
                f"audit_log {config.audit_log!r} is inside the writable volume"
                f" {volume.format()}: the sandbox could rewrite it; put it elsewhere"
            )


def _token_store_outside_volumes(config: SandboxConfig) -> None:
    """The OAuth token store (``$XDG_STATE_HOME/trio-sandbox/oauth``) inside a bind volume, even
    a read-only one, would hand the sandboxed code the tokens (read) or let it plant others
    (write): refused, naming the volume, when an upstream uses OAuth or tokens are stored."""
    store = os.path.realpath(state_dir() / "oauth")
    oauth = any(isinstance(u, HttpUpstream) and u.oauth is not None for u in config.upstreams)
    if not oauth and not os.path.lexists(store):
        return
    for volume in config.volumes:
        if volume.named or volume.claim:
            continue
        source = os.path.realpath(volume.resolved().source)
        if store == source or store.startswith(source.rstrip("/") + "/"):
            raise ValueError(
                f"the volume {volume.format()} contains the OAuth token store {store}: the"
                " sandbox could read or replace the tokens; mount a narrower directory"
            )


@attrs.frozen(kw_only=True)
class SandboxConfig:
    """Everything :func:`open_sandbox` needs; every field has a sensible default."""

    # The warden command (before its ``wrap`` subcommand); this package's own by default.
    warden: Sequence[str] = attrs.field(factory=_default_warden, converter=_strings)
    # ``host`` (the host's root file system, read-only), a root file system directory, or an image.
    image: str = "host"
    # Volumes: HOST:CONTAINER[:ro], or NAME:CONTAINER for a named volume (text or Volume).
    volumes: Sequence[Volume] = attrs.field(default=(), converter=_volumes)
    mode: SandboxMode = attrs.field(default=SandboxMode.PERSISTENT, converter=SandboxMode)
    # The command run in the sandbox; this package's tool server by default.
    command: Sequence[str] = attrs.field(factory=default_tool_server_command, converter=_strings)
    # Names of host environment variables passed into the sandbox (nothing else is).
    env_passthrough: Sequence[str] = attrs.field(default=(), converter=_strings)
    # Extra variables set in the sandbox.
    env: Mapping[str, str] = attrs.field(factory=dict)
    # The warden back end (auto, bwrap, podman, docker, process).
    backend: str = "auto"
    # ``UID[:GID]`` the tools run as; None: the owner of the first writable volume (as root),
    # or the user's own uid (as an ordinary user).
    user: str | None = attrs.field(default=None, validator=_valid_user)
    # Limits for the whole sandbox, given as the contract writes them ("2G", "1024", "1.5",
    # "unlimited") or as numbers (bytes, processes, CPUs), kept parsed (bytes, ..., UNLIMITED);
    # None: the warden's defaults, which protect a laptop (4 GiB or half the RAM, 1024
    # processes, half the CPUs, a 1 GiB /tmp).
    memory: int | Unlimited | None = attrs.field(default=None, converter=_memory)
    pids: int | Unlimited | None = attrs.field(default=None, converter=_pids)
    cpus: float | Unlimited | None = attrs.field(default=None, converter=_cpus)
    tmp_size: int | Unlimited | None = attrs.field(default=None, converter=_tmp_size)
    # ``none``: the sandbox's own loopback only; ``allow``: and the destinations listed in
    # ``allow_domains`` (not in ``deny_domains``), through the warden's egress proxy; ``host``:
    # the host's network, without any isolation of it.
    network: NetworkMode = attrs.field(default=NetworkMode.NONE, converter=_network_mode)
    allow_domains: Sequence[str] = attrs.field(default=(), converter=_strings)
    deny_domains: Sequence[str] = attrs.field(default=(), converter=_strings)
    # Secrets the rules find in what the sandbox sends become placeholders, restored only in
    # its own calls' arguments. False: the rules do not run on it; known secrets (secret_env,
    # generated passwords, values found before) are redacted whatever this says.
    redact: bool = True
    # Host variables passed into the sandbox whose values are always redacted (tokens).
    secret_env: Sequence[str] = attrs.field(default=(), converter=_strings)
    # Host variables that never enter the sandbox: NAME -> hosts (allow_domains entries, each
    # allowed implicitly). The sandbox sees NAME as a placeholder of the value's shape; the
    # egress proxy writes the real value in place of it into requests to those hosts only
    # (request line and headers, TLS intercepted with a CA made for each warden run). Needs
    # network = "allow"; every NAME must be set on the host when the sandbox starts.
    inject_secrets: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_inject_secrets
    )
    # When a tool result is large (lines, bytes after redaction), and how much is kept.
    output_limits: OutputLimits = attrs.field(factory=OutputLimits)
    # Other MCP servers the proxy puts beside the sandbox.
    upstreams: Sequence[UpstreamSpec] = attrs.field(default=(), converter=_upstreams)
    # The upstream name (and default tool prefix) of the sandbox itself.
    sandbox_name: str = "sandbox"
    # The prefix of the sandbox's tools; empty: its tools keep their own names.
    sandbox_prefix: str = ""
    health_interval: float = attrs.field(default=30.0, validator=_positive)
    health_timeout: float = attrs.field(default=10.0, validator=_positive)
    respawn_threshold: int = attrs.field(default=3, validator=_positive)
    max_respawn_attempts: int = attrs.field(default=5, validator=_positive)
    respawn_backoff: float = attrs.field(default=0.5, validator=_positive)
    respawn_backoff_max: float = attrs.field(default=30.0, validator=_positive)
    respawn_wait: float = attrs.field(default=30.0, validator=_positive)
    ca_timeout: float = attrs.field(default=60.0, validator=_positive)
    stop_grace: float = attrs.field(default=10.0, validator=_positive)
    ready_timeout: float = attrs.field(default=30.0, validator=_positive)
    # How long an ephemeral session's sandbox lives without a request.
    ephemeral_idle_timeout: float = attrs.field(default=600.0, validator=_positive)
    # Ephemeral mode: per-session sandboxes running at once (the shared one not counted). At
    # the bound the least recently used idle one is stopped for a new session's; a session
    # whose sandbox cannot be had gets a clear error instead while every one has calls running.
    max_sandboxes: int = attrs.field(default=8, validator=_positive)
    # Sandboxes started ahead and fully ready (tools listed): a respawn swaps one in, a new
    # ephemeral session gets one. Each costs a running sandbox; they count against
    # max_sandboxes; 0: none (a respawn or a new session starts a sandbox cold).
    warm_spares: int = attrs.field(default=1, validator=_not_negative)
    # See what the agent did (README "See what the agent did"). The audit log: a path, or "-"
    # for standard output; JSON Lines, 0600, rotated at audit_log_max_bytes keeping
    # audit_log_backups old files (0: never rotated, for logrotate's copytruncate).
    audit_log: str | None = None
    audit_log_max_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_not_negative)
    audit_log_backups: int = attrs.field(default=5, validator=_not_negative)
    # HOST:PORT where Prometheus scrapes /metrics (plain HTTP: keep it on loopback).
    metrics_listen: str | None = None
    # OpenTelemetry spans for calls and the sandbox's life, through the tracer provider the
    # program configured (the CLI's: OTLP over HTTP from the OTEL_* variables). Needs the
    # ``otel`` extra.
    traces: bool = False

    def __attrs_post_init__(self) -> None:
        _egress_entries(self)
        _inject_entries(self)
        _audit_log_outside_volumes(self)
        _token_store_outside_volumes(self)

    @property
    def observe_settings(self) -> ObserveSettings:
        """The audit log, the metrics and the traces asked for, as one value."""
        return ObserveSettings(
            audit_log=self.audit_log,
            audit_log_max_bytes=self.audit_log_max_bytes,
            audit_log_backups=self.audit_log_backups,
            metrics_listen=self.metrics_listen,
            traces=self.traces,
        )

    @property
    def limit_request(self) -> LimitRequest:
        """The limits asked for, as one value (its ``to_argv`` is the warden's options)."""
        return LimitRequest(
            memory=self.memory, pids=self.pids, cpus=self.cpus, tmp_size=self.tmp_size
        )
