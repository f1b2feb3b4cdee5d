"""What the proxy fronts: upstream specifications, and reading them from ``mcpServers`` files.

The ``mcpServers`` JSON format is the one MCP hosts use (Claude Desktop, VS Code, Cursor); the
same keys are accepted in TOML (``[mcpServers.NAME]``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import ssl
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import attrs

from ..mcp import SUPPORTED_VERSIONS, McpServer
from ..redact import MIN_KNOWN_SECRET_LENGTH
from ._errors import ConfigError

if TYPE_CHECKING:
    # The oauth package (httpx, authlib) loads only for an entry that uses it.
    from ..oauth import OAuthSettings


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _prefix_field() -> Any:
    # None: the upstream's name is its prefix; "": its tools keep their own names.
    return attrs.field(default=None, kw_only=True)


def _redact_field() -> Any:
    # Secrets the rules find in what it sends become placeholders (restored in its own calls'
    # arguments only). False: the rules do not run on it; known secrets are still redacted.
    return attrs.field(default=True, kw_only=True)


def _version_field() -> Any:
    # None: probe the stateless era first, fall back to initialize; a version pins it.
    return attrs.field(default=None, kw_only=True)


@attrs.frozen
class HttpUpstream:
    """A Streamable HTTP(S) server; ``ssl_context`` carries the client identity for mTLS."""

    name: str
    url: str
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    prefix: str | None = _prefix_field()
    protocol_version: str | None = _version_field()
    redact: bool = _redact_field()
    # "auth": "oauth": the proxy authorizes its requests with an OAuth client (tokens from the
    # token store, refreshed unattended); None: static headers only.
    oauth: OAuthSettings | None = attrs.field(default=None, kw_only=True)
    # The loopback redirect port `auth login` listens on (0: any free port); for a client
    # registered with a fixed redirect URI.
    oauth_redirect_port: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class WebSocketUpstream:
    """An MCP server on a WebSocket (subprotocol ``mcp``), ws:// or wss:// with mTLS."""

    name: str
    url: str
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    prefix: str | None = _prefix_field()
    protocol_version: str | None = _version_field()
    redact: bool = _redact_field()


@attrs.frozen
class StdioUpstream:
    """A child process speaking MCP on stdin/stdout, run in the proxy's nursery."""

    name: str
    command: str
    args: Sequence[str] = attrs.field(default=(), converter=_strings)
    env: Mapping[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    prefix: str | None = _prefix_field()
    protocol_version: str | None = _version_field()
    redact: bool = _redact_field()


@attrs.frozen
class InProcessUpstream:
    """An :class:`McpServer` in this process, reached through memory rather than a socket."""

    name: str
    server: McpServer = attrs.field(eq=False)
    prefix: str | None = _prefix_field()
    protocol_version: str | None = _version_field()
    redact: bool = _redact_field()


UpstreamSpec: TypeAlias = HttpUpstream | WebSocketUpstream | StdioUpstream | InProcessUpstream


def effective_prefix(spec: UpstreamSpec) -> str:
    return spec.name if spec.prefix is None else spec.prefix


def client_ssl_context(
    ca_file: str | None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (or the system store) and presenting a certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    elif key_file is not None:
        raise ConfigError("a client key was given without its certificate (upstream-cert)")
    return context


def _expect(value: object, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__}")
    return value


def upstream_from_entry(name: str, entry: Mapping[str, Any], base_dir: Path) -> UpstreamSpec:
    """One ``mcpServers`` entry: ``command``/``args``/``env``/``cwd``, or ``url``/``headers``."""
    where = f"mcpServers.{name}"
    known = {
        "command",
        "args",
        "env",
        "cwd",
        "url",
        "headers",
        "type",
        "transport",
        "prefix",
        "protocolVersion",
        "tls",
        "redact",
        "auth",
        "oauth",
    }
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
    prefix = entry.get("prefix")
    if prefix is not None:
        _expect(prefix, str, f"{where}.prefix", "a string")
    redact = _expect(entry.get("redact", True), bool, f"{where}.redact", "true or false")
    version = entry.get("protocolVersion")
    if version is not None and version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"{where}.protocolVersion: {version!r} is not one of {list(SUPPORTED_VERSIONS)}"
        )
    oauth, redirect_port = _oauth_from_entry(entry, where)
    if "command" in entry:
        if oauth is not None:
            raise ConfigError(f"{where}.auth: OAuth is for HTTP servers ('url'), not 'command'")
        if "url" in entry:
            raise ConfigError(f"{where}: give either 'command' or 'url', not both")
        args = _expect(entry.get("args", []), list, f"{where}.args", "a list of strings")
        env = _expect(entry.get("env", {}), dict, f"{where}.env", "a table of strings")
        return StdioUpstream(
            name=name,
            command=_expect(entry["command"], str, f"{where}.command", "a string"),
            args=tuple(str(_expect(a, str, f"{where}.args", "strings")) for a in args),
            env={
                str(k): str(_expect(v, str, f"{where}.env.{k}", "a string")) for k, v in env.items()
            },
            cwd=entry.get("cwd"),
            prefix=prefix,
            protocol_version=version,
            redact=redact,
        )
    if "url" not in entry:
        raise ConfigError(f"{where}: needs 'command' (a stdio server) or 'url' (an HTTP server)")
    url = _expect(entry["url"], str, f"{where}.url", "a string")
    kind = entry.get("type", entry.get("transport"))
    context = _tls_from_entry(entry.get("tls"), f"{where}.tls", base_dir)
    if kind in ("ws", "websocket") or url.startswith(("ws://", "wss://")):
        if oauth is not None:
            raise ConfigError(f"{where}.auth: OAuth is for HTTP servers, not WebSocket ones")
        return WebSocketUpstream(
            name=name,
            url=url,
            ssl_context=context,
            prefix=prefix,
            protocol_version=version,
            redact=redact,
        )
    if kind not in (None, "http", "streamable-http", "streamableHttp"):
        raise ConfigError(f"{where}.type: {kind!r} is not supported; use http or ws")
    headers = _expect(entry.get("headers", {}), dict, f"{where}.headers", "a table of strings")
    if oauth is not None and any(str(key).lower() == "authorization" for key in headers):
        raise ConfigError(
            f'{where}.headers: an Authorization header and "auth": "oauth" exclude each'
            " other (OAuth sends its own); remove one"
        )
    if oauth is not None and not _safe_for_tokens(url):
        raise ConfigError(
            f"{where}.url: OAuth tokens are sent over https only (or to a loopback"
            f" address), not to {url!r}"
        )
    return HttpUpstream(
        name=name,
        url=url,
        ssl_context=context,
        headers={str(k): _expand_env(str(v)) for k, v in headers.items()},
        prefix=prefix,
        protocol_version=version,
        redact=redact,
        oauth=oauth,
        oauth_redirect_port=redirect_port,
    )


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address: a listener or a server on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_for_tokens(url: str) -> bool:
    """https, or plain http to this machine (the spec's exception for loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


_OAUTH_KEYS = frozenset(
    {"clientId", "clientSecret", "clientMetadataUrl", "scopes", "grant", "redirectPort", "issuer"}
)
_GRANTS = ("authorization_code", "client_credentials")
# What os.path.expandvars leaves of a reference to an unset variable: $NAME or ${NAME}.
_UNEXPANDED = re.compile(r"\$(\{|[A-Za-z_])")


def _oauth_from_entry(entry: Mapping[str, Any], where: str) -> tuple[OAuthSettings | None, int]:
    """``"auth": "oauth"`` and its optional ``"oauth"`` table."""
    auth = entry.get("auth")
    raw = entry.get("oauth")
    if auth is None:
        if raw is not None:
            raise ConfigError(f'{where}.oauth: given without "auth": "oauth"')
        return None, 0
    if auth != "oauth":
        raise ConfigError(f"{where}.auth: {auth!r} is not supported; the one value is 'oauth'")
    table = _expect(raw if raw is not None else {}, dict, f"{where}.oauth", "a table")
    unknown = sorted(set(table) - _OAUTH_KEYS)
    if unknown:
        raise ConfigError(f"{where}.oauth: unknown keys {unknown}; allowed: {sorted(_OAUTH_KEYS)}")

    def text(key: str) -> str | None:
        value = table.get(key)
        return None if value is None else _expect(value, str, f"{where}.oauth.{key}", "a string")

    client_id = text("clientId")
    secret = text("clientSecret")
    if secret is not None:
        # Written as ${VAR}, so that the secret stays out of the file.
        secret = _expand_env(secret)
        if not secret or _UNEXPANDED.search(secret):
            raise ConfigError(
                f"{where}.oauth.clientSecret: empty, or names an environment variable that is"
                " not set"
            )
        if len(secret) < MIN_KNOWN_SECRET_LENGTH:
            # Too short to redact: it would show wherever the authorization server echoes it.
            raise ConfigError(
                f"{where}.oauth.clientSecret: {len(secret)} characters: too short to be kept"
                f" out of output (at least {MIN_KNOWN_SECRET_LENGTH})"
            )
        if client_id is None:
            raise ConfigError(f"{where}.oauth.clientSecret: given without clientId")
    metadata_url = text("clientMetadataUrl")
    if metadata_url is not None:
        if client_id is not None:
            raise ConfigError(
                f"{where}.oauth: clientMetadataUrl is a client ID of its own; not with clientId"
            )
        if not metadata_url.startswith("https://") or "/" not in metadata_url[8:]:
            raise ConfigError(
                f"{where}.oauth.clientMetadataUrl: must be an https URL with a path"
                f" (the client ID metadata document), not {metadata_url!r}"
            )
    grant = table.get("grant", "authorization_code")
    if grant not in _GRANTS:
        raise ConfigError(f"{where}.oauth.grant: {grant!r} is not one of {list(_GRANTS)}")
    scopes = _expect(table.get("scopes", []), list, f"{where}.oauth.scopes", "a list of strings")
    for scope in scopes:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise ConfigError(
                f"{where}.oauth.scopes: each scope is a non-empty string without spaces"
            )
    port = table.get("redirectPort", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}.oauth.redirectPort: expected a port number (0: any)")
    issuer = text("issuer")
    if issuer is not None and not _safe_for_tokens(issuer):
        raise ConfigError(
            f"{where}.oauth.issuer: an authorization server is https (or on loopback), not"
            f" {issuer!r}"
        )
    if secret is not None and issuer is None:
        # The MCP server's metadata names the authorization server: without the issuer the
        # secret was registered with, a hostile MCP server could have it sent elsewhere.
        raise ConfigError(
            f"{where}.oauth.issuer: needed with clientSecret: the authorization server the"
            " client is registered with (its secret is sent there only)"
        )
    from ..oauth import OAuthSettings

    try:
        settings = OAuthSettings(
            grant=grant,
            client_id=client_id,
            client_secret=secret,
            client_metadata_url=metadata_url,
            scopes=tuple(scopes),
            issuer=issuer,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}.oauth: {exc}") from None
    return settings, port


def _expand_env(value: str) -> str:
    # Hosts write secrets as ${VAR}; expanding keeps tokens out of the file.
    return os.path.expandvars(value)


def _tls_from_entry(raw: object, where: str, base_dir: Path) -> ssl.SSLContext | None:
    if raw is None:
        return None
    table = _expect(raw, dict, where, "a table with ca, cert, key")
    unknown = sorted(set(table) - {"ca", "cert", "key"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: ['ca', 'cert', 'key']")

    def path(key: str) -> str | None:
        value = table.get(key)
        return (
            None
            if value is None
            else str(base_dir / _expect(value, str, f"{where}.{key}", "a path"))
        )

    try:
        return client_ssl_context(path("ca"), path("cert"), path("key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_upstreams(path: str | os.PathLike[str]) -> list[UpstreamSpec]:
    """Read ``mcpServers`` from a JSON or TOML file (by its suffix)."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{file}: not valid {'TOML' if file.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None
    return upstreams_from_mapping(data, file.parent, str(file))


def upstreams_from_mapping(data: object, base_dir: Path, source: str) -> list[UpstreamSpec]:
    table = _expect(data, dict, source, "a table")
    servers = _expect(table.get("mcpServers", {}), dict, f"{source}: mcpServers", "a table")
    return [
        upstream_from_entry(name, _expect(entry, dict, f"mcpServers.{name}", "a table"), base_dir)
        for name, entry in servers.items()
    ]
