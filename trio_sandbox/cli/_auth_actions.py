"""What ``trio-sandbox auth login|status|logout`` do (their options: ``_auth_command``).

The upstreams are the ones ``proxy`` and ``run`` read (``--config``: an mcpServers file, JSON or
TOML); their tokens are kept in the user's token store (``$XDG_STATE_HOME/trio-sandbox/oauth``),
which a running proxy reads at its next connection attempt. Nothing here prints a token, a code
or a client secret.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import trio

from ..mcp import McpConnectionError, McpError, open_mcp_client
from ..oauth import (
    AuthState,
    AuthStatus,
    FileTokenStore,
    LoginRequired,
    LoopbackUserAgent,
    OAuthClient,
    OAuthError,
    Tokens,
    revocation_endpoint,
)
from ..proxy import ConfigError, HttpUpstream, UpstreamSpec, auth_status_json, load_upstreams
from ._errors import UsageError
from ._signals import stop_on_signals

# A token that expires within this many seconds is reported as expired (it will be refreshed).
_EXPIRY_MARGIN = 30.0
_HTTP_TIMEOUT = 30.0


def say(message: str) -> None:
    print(f"trio-sandbox auth: {message}", file=sys.stderr, flush=True)


def _oauth_upstreams(config: str) -> list[HttpUpstream]:
    try:
        specs: Sequence[UpstreamSpec] = load_upstreams(config)
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    return [spec for spec in specs if isinstance(spec, HttpUpstream) and spec.oauth is not None]


def _upstream_named(config: str, name: str) -> HttpUpstream:
    upstreams = _oauth_upstreams(config)
    for spec in upstreams:
        if spec.name == name:
            return spec
    known = [spec.name for spec in upstreams]
    raise UsageError(
        f'NAME: {config} has no upstream {name!r} with "auth": "oauth"'
        f" (its OAuth upstreams: {', '.join(known) if known else 'none'})"
    )


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "no expiry given"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(message: str) -> int:
    print(f"trio-sandbox: error: {message}", file=sys.stderr, flush=True)
    return 1


# --- login --------------------------------------------------------------------------------------


def login_command(args: argparse.Namespace) -> int:
    spec = _upstream_named(args.config, args.name)
    if args.timeout <= 0:
        raise UsageError("--timeout: must be a positive number of seconds")
    try:
        tokens = trio.run(partial(stop_on_signals, partial(_login, spec, args), announce=say))
    except (OAuthError, LoginRequired) as exc:
        return _fail(str(exc))
    if tokens is None:
        return 130
    expires = (
        f"expires {_when(tokens.expires_at)}" if tokens.expires_at is not None else "no expiry"
    )
    scopes = _printable(tokens.scope or "none")
    print(f"logged in to {spec.name} (scopes {scopes}, {expires})", flush=True)
    return 0


async def _login(spec: HttpUpstream, args: argparse.Namespace) -> Tokens:
    assert spec.oauth is not None
    store = FileTokenStore()
    agent = LoopbackUserAgent(spec.name, port=spec.oauth_redirect_port, timeout=args.timeout)

    def device_prompt(uri: str, code: str) -> None:
        print(
            f"To authorize {spec.name}, open {uri} and enter the code {code}",
            file=sys.stderr,
            flush=True,
        )

    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT) as http:
        client = OAuthClient(spec.name, spec.url, spec.oauth, store, http, user_agent=agent)
        tokens = await client.login(device_prompt=device_prompt if args.device else None)
    store.save(spec.name, tokens)
    return tokens


# --- status -------------------------------------------------------------------------------------


def stored_status(
    tokens: Tokens | None, server_url: str, now: float, *, unattended: bool = False
) -> AuthStatus:
    """What the store alone says of one upstream's login (no network); ``unattended``: client
    credentials, which need no person (a token is fetched at the next use)."""
    if unattended and (tokens is None or tokens.server_url != server_url):
        return AuthStatus(AuthState.EXPIRED, "no token yet: client credentials, at the next use")
    if tokens is None:
        return AuthStatus(AuthState.NEEDS_LOGIN, "not logged in")
    if tokens.server_url != server_url:
        return AuthStatus(
            AuthState.NEEDS_LOGIN, f"the stored login is for another server ({tokens.server_url})"
        )
    if tokens.expires_at is not None and tokens.expires_at - _EXPIRY_MARGIN <= now:
        if tokens.refresh_token:
            return AuthStatus(
                AuthState.EXPIRED, "expired: refreshed at the next use", tokens.expires_at
            )
        return AuthStatus(AuthState.NEEDS_LOGIN, "expired, and no refresh token", tokens.expires_at)
    return AuthStatus(AuthState.LOGGED_IN, None, tokens.expires_at)


def status_command(args: argparse.Namespace) -> int:
    upstreams = (
        [_upstream_named(args.config, args.name)] if args.name else _oauth_upstreams(args.config)
    )
    if not upstreams:
        say(f'{args.config} has no upstream with "auth": "oauth"')
        return 0
    reports = trio.run(_statuses, upstreams, args.check)
    for report in reports:
        if args.json:
            print(json.dumps(report, sort_keys=True), flush=True)
            continue
        state = report["state"]
        details = [f"scopes {report['scope'] or 'none'}"] if report["scope"] is not None else []
        if report["expires_at"] is not None:
            details.append(f"expires {_when(report['expires_at'])}")
        if report["reason"]:
            details.append(report["reason"])
        suffix = f" ({', '.join(details)})" if details else ""
        print(_printable(f"{report['name']}: {state}{suffix}"), flush=True)
        if state == AuthState.NEEDS_LOGIN.value:
            print(f"  run: trio-sandbox auth login {report['name']}", flush=True)
    # 1 when a person must act (a login needed, or a token file that cannot be read): scripts
    # and health checks see it without parsing.
    return 1 if any(report["state"] == AuthState.NEEDS_LOGIN.value for report in reports) else 0


async def _statuses(upstreams: Sequence[HttpUpstream], check: bool) -> list[dict[str, Any]]:
    store = FileTokenStore()
    reports: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT) as http:
        for spec in upstreams:
            assert spec.oauth is not None
            try:
                tokens = store.load(spec.name)
            except OAuthError as exc:
                reports.append(_report(spec, AuthStatus(AuthState.NEEDS_LOGIN, str(exc)), None))
                continue
            unattended = spec.oauth.grant == "client_credentials"
            status = stored_status(tokens, spec.url, time.time(), unattended=unattended)
            if check and (tokens is not None or unattended):
                status = await _checked(spec, store, http)
                tokens = store.load(spec.name)
            reports.append(_report(spec, status, tokens))
    return reports


async def _checked(
    spec: HttpUpstream, store: FileTokenStore, http: httpx.AsyncClient
) -> AuthStatus:
    """Ask the server: connect with the stored tokens (refreshing them if they expired)."""
    assert spec.oauth is not None
    client = OAuthClient(spec.name, spec.url, spec.oauth, store, http, user_agent=None)
    try:
        with trio.fail_after(_HTTP_TIMEOUT):
            async with open_mcp_client(spec.url, ssl_context=spec.ssl_context, auth=client) as mcp:
                await mcp.ping()
    except LoginRequired as exc:
        return AuthStatus(AuthState.NEEDS_LOGIN, exc.reason)
    except (McpConnectionError, McpError, OAuthError, trio.TooSlowError) as exc:
        status = client.status()
        return AuthStatus(status.state, f"the check failed: {exc}", status.expires_at)
    except BaseExceptionGroup as group:
        login = group.subgroup(LoginRequired)
        if login is None:
            raise
        return AuthStatus(AuthState.NEEDS_LOGIN, "the server refused the stored login")
    return client.status()


def _report(spec: HttpUpstream, status: AuthStatus, tokens: Tokens | None) -> dict[str, Any]:
    return {
        "name": spec.name,
        "url": spec.url,
        **auth_status_json(status),
        "scope": tokens.scope if tokens is not None else None,
    }


# --- logout -------------------------------------------------------------------------------------


def logout_command(args: argparse.Namespace) -> int:
    spec = _upstream_named(args.config, args.name)
    store = FileTokenStore()
    try:
        tokens = store.load(spec.name)
    except OAuthError as exc:
        # Refused or unreadable: not touched here (it may not even be the user's to remove).
        return _fail(str(exc))
    if tokens is None:
        store.delete(spec.name)
        print(f"{spec.name}: not logged in", flush=True)
        return 0
    if tokens.server_url != spec.url:
        # Another configuration's login under the same name: not this one's to revoke.
        return _fail(
            f"the stored login of {spec.name} is for {tokens.server_url}, not {spec.url}:"
            f" left alone (neither revoked nor removed); remove {store.path_of(spec.name)}"
            " yourself if it is no longer wanted"
        )
    outcome = trio.run(_revoke, tokens)
    store.delete(spec.name)
    print(_printable(f"logged out of {spec.name} ({outcome})"), flush=True)
    return 0


async def _revoke(tokens: Tokens) -> str:
    """Revoke the refresh and access tokens (RFC 7009) where the server offers it: what came
    of it, in words (never a token)."""
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT, follow_redirects=False) as http:
        try:
            endpoint = await revocation_endpoint(http, tokens)
        except OAuthError as exc:
            return f"tokens forgotten, not revoked: {exc}"
        if endpoint is None:
            return "tokens forgotten; the server offers no revocation"
        failures: list[str] = []
        for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, None)):
            if not token:
                continue
            # The client names itself in the form whatever its method (RFC 6749 §3.2.1 allows
            # it; the official SDK's server wants it even with Basic).
            form = {
                "token": token,
                "client_id": tokens.client_id,
                **({"token_type_hint": hint} if hint else {}),
            }
            headers: dict[str, str] = {}
            if tokens.token_endpoint_auth_method == "client_secret_basic" and tokens.client_secret:
                # RFC 6749 §2.3.1: each part form-encoded before Basic.
                pair = f"{quote(tokens.client_id, safe='')}:{quote(tokens.client_secret, safe='')}"
                headers["Authorization"] = "Basic " + _b64(pair)
            elif tokens.token_endpoint_auth_method == "client_secret_post" and tokens.client_secret:
                form["client_secret"] = tokens.client_secret
            try:
                response = await http.post(endpoint, data=form, headers=headers)
            except httpx.HTTPError as exc:
                failures.append(_plain(exc))
                continue
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}")
        if failures:
            return f"tokens forgotten; revocation failed: {'; '.join(failures)}"
        return "tokens revoked at the server and forgotten"


def _printable(text: str) -> str:
    """``text`` for a terminal: every character that is not printable (controls, escapes)
    shown as its code instead, so that nothing a server sent can drive the terminal."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _plain(exc: BaseException) -> str:
    # httpx's messages carry URLs, never request bodies: no token in them.
    return f"{type(exc).__name__}: {exc}"
