"""OAuthClient: one upstream's OAuth client, the MCP HTTP transport's ``HttpAuth``.

Everything that changes the tokens (a login, a refresh, a client credentials grant, a step-up)
runs under one lock, in the task of the caller that needed it: concurrent callers wait for that
one operation and then use its outcome (the serial number of the tokens tells them it changed)
instead of starting their own. No task outlives the call that started it.
"""

from __future__ import annotations

import contextvars
import hmac
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs
import httpx
import trio
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ..mcp import AuthChallenge
from ..redact import MIN_KNOWN_SECRET_LENGTH
from ._errors import LoginRequired, OAuthError
from ._grants import (
    DEVICE_CODE_GRANT,
    Client,
    Grant,
    TokenEndpointError,
    client_auth,
    client_secrets,
    describe_refusal,
    token_request,
)
from ._http import is_loopback, request_json, require_secure_url, shown
from ._metadata import (
    ResourceMetadata,
    ServerMetadata,
    canonical_resource,
    fetch_resource_metadata,
    fetch_server_metadata,
    legacy_server_metadata,
    pick_scopes,
)
from ._registration import metadata_document, pre_registered, register
from ._settings import OAuthSettings
from ._status import AuthState, AuthStatus
from ._tokens import Tokens, TokenStore
from ._user_agent import UserAgent
from ._www_authenticate import BearerChallenge, parse_www_authenticate

# The device authorization grant's prompt: given the verification URI and the user code.
DevicePrompt = Callable[[str, str], None]

# An access token this close to its expiry is renewed before it is sent (at most half the
# lifetime of the last one obtained: a server's 30 s tokens are not renewed at every request).
EXPIRY_LEEWAY: Final = 60.0
# Step-ups (re-authorizations for more scope) one client makes before it lets a 403 stand,
# until the next explicit login: a server that never grants what it asks for cannot loop us.
MAX_STEP_UPS: Final = 3
# A failed refresh (the server unreachable, a 5xx) is retried after 5 s, doubling up to 5 min;
# so is a refresh after the MCP server refused a token that a refresh had just obtained.
FIRST_RETRY: Final = 5.0
MAX_RETRY: Final = 300.0
_OFFLINE_ACCESS: Final = "offline_access"
_DEVICE_DEFAULT_INTERVAL: Final = 5.0
_DEVICE_MAX_WAIT: Final = 1800.0
_USER_CODE: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?")


# (client, serial of the tokens) the current task's last request was sent with.
_SENT_SERIAL: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "trio_sandbox_oauth_sent_serial", default=None
)
# (client, serial of the tokens) a refresh obtained for a 401 of the current task's request:
# a 401 to those too means the server refuses what a refresh brings, so no second refresh.
_REFRESHED_FOR_401: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "trio_sandbox_oauth_refreshed_for_401", default=None
)


def _ignore_secret(value: str) -> None:
    pass


@attrs.frozen
class _Discovered:
    resource: str  # the resource parameter to send (RFC 8707)
    metadata: ServerMetadata
    resource_metadata: ResourceMetadata | None


@attrs.define(eq=False)
class OAuthClient:
    """One upstream's OAuth client; lives as long as the proxy (reconnects and failed health
    probes keep it, so they keep its tokens).

    ``http`` is for the authorization server (the caller owns it). ``user_agent`` None means
    unattended: whatever needs a person raises :class:`LoginRequired`. ``on_secret`` is called
    with every access token, refresh token and client secret obtained, before it is used or
    stored (the proxy registers each with redaction). ``now`` is the wall clock of expiries.
    """

    name: str
    server_url: str
    settings: OAuthSettings
    store: TokenStore
    http: httpx.AsyncClient
    user_agent: UserAgent | None = None
    on_secret: Callable[[str], None] = _ignore_secret
    now: Callable[[], float] = time.time
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _serial: int = attrs.field(default=0, init=False)
    _lifetime: float | None = attrs.field(default=None, init=False)  # of the last token obtained
    _requested_scopes: tuple[str, ...] = attrs.field(default=(), init=False)
    _step_ups: int = attrs.field(default=0, init=False)
    _needs_login: str | None = attrs.field(default=None, init=False)
    # What the store held when a login was found needed (it stays needed while it holds that).
    _refused: Tokens | None = attrs.field(default=None, init=False, repr=False)
    _refresh_error: str | None = attrs.field(default=None, init=False)
    _refresh_failures: int = attrs.field(default=0, init=False)
    _retry_deadline: float = attrs.field(default=-math.inf, init=False)  # trio time
    _retry_at: float | None = attrs.field(default=None, init=False)  # wall clock
    # Fresh tokens the MCP server refused in a row, and the pause before the next 401 refresh.
    _rejections: int = attrs.field(default=0, init=False)
    _rejected_until: float = attrs.field(default=-math.inf, init=False)  # trio time
    _rejected_until_at: float = attrs.field(default=-math.inf, init=False)  # wall clock
    _rejected: Tokens | None = attrs.field(default=None, init=False, repr=False)

    # --- the transport's hook -------------------------------------------------------------

    async def authorization(self) -> str | None:
        # Which tokens this request carries: its 401 then asks for a refresh only if no other
        # caller renewed them since (set in the caller's task, where challenged() runs too).
        _SENT_SERIAL.set((id(self), self._serial))
        tokens = self._tokens()
        if tokens is None and self.settings.grant == "client_credentials":
            tokens = await self._renew(None)
        if tokens is not None and self._expired(tokens):
            if tokens.refresh_token is None and self.settings.grant != "client_credentials":
                return None  # the server's 401 decides: a login, or LoginRequired
            tokens = await self._renew(tokens)
        if tokens is not None:
            _SENT_SERIAL.set((id(self), self._serial))
        return None if tokens is None else f"Bearer {tokens.access_token}"

    async def challenged(self, challenge: AuthChallenge) -> bool:
        parsed = parse_www_authenticate(challenge.www_authenticate)
        sent = _SENT_SERIAL.get()
        serial = sent[1] if sent is not None and sent[0] == id(self) else self._serial
        if challenge.status == 403:
            if parsed.error != "insufficient_scope":
                return False
            async with self._lock:
                if self._serial != serial:
                    return True  # another caller re-authorized meanwhile: try its token
                return await self._step_up(parsed)
        async with self._lock:
            if self._serial != serial:
                return True
            if _REFRESHED_FOR_401.get() == (id(self), serial):
                # The token a refresh just got for this request is refused too: another
                # refresh would get the same answer. The status stands; later ones pause.
                _REFRESHED_FOR_401.set(None)
                self._rejections += 1
                delay = min(MAX_RETRY, FIRST_RETRY * 2 ** (self._rejections - 1))
                self._rejected_until = trio.current_time() + delay
                self._rejected_until_at = self.now() + delay
                self._rejected = self.store.load(self.name)
                return False
            if self._pausing():
                return False
            tokens = self._tokens()
            if (
                tokens is not None
                and tokens.refresh_token is not None
                and await self._same_server(tokens, parsed)
            ):
                try:
                    await self._refresh(tokens)
                    _REFRESHED_FOR_401.set((id(self), self._serial))
                    return True
                except LoginRequired as exc:
                    reason = exc.reason  # the refresh token was refused: log in again
            elif tokens is None:
                reason = "no tokens"
            elif self._expired(tokens) and tokens.refresh_token is None:
                reason = "the access token expired and there is no refresh token"
            else:
                reason = "the server refused the access token"
            await self._new_grant(parsed, reason, tokens)
            return True

    # --- for people and the CLI ----------------------------------------------------------

    async def login(self, *, device_prompt: DevicePrompt | None = None) -> Tokens:
        """Run the whole flow now (discovery from an unauthenticated request to the server);
        with ``device_prompt``, the device authorization grant where the server offers it.
        Scope a server asked for more of (kept in the store) is asked for with what was
        granted."""
        async with self._lock:
            self._step_ups = 0
            stored = self._tokens()
            scopes = None
            if stored is not None and stored.wanted_scope:
                scopes = _union(
                    self.settings.scopes,
                    (stored.scope or "").split(),
                    stored.wanted_scope.split(),
                )
            await self._login(None, scopes, device_prompt, "a login was asked for", stored)
            tokens = self._tokens()
            assert tokens is not None
            return tokens

    def status(self) -> AuthStatus:
        tokens = self._tokens()
        if self._needs_login is not None:
            return AuthStatus(AuthState.NEEDS_LOGIN, self._needs_login)
        if self._rejected_until_at > self.now() and tokens == self._rejected:
            return AuthStatus(
                AuthState.REFRESH_FAILING,
                f"the MCP server refused freshly refreshed tokens ({self._rejections} in a row)",
                None if tokens is None else tokens.expires_at,
                self._rejected_until_at,
            )
        if self._refresh_error is not None:
            return AuthStatus(
                AuthState.REFRESH_FAILING,
                self._refresh_error,
                None if tokens is None else tokens.expires_at,
                self._retry_at,
            )
        if tokens is None:
            if self.settings.grant == "client_credentials":
                return AuthStatus(AuthState.EXPIRED, "no token yet (client credentials)")
            return AuthStatus(AuthState.NEEDS_LOGIN, "no tokens")
        if self._expired(tokens):
            if tokens.refresh_token is None and self.settings.grant != "client_credentials":
                return AuthStatus(
                    AuthState.NEEDS_LOGIN,
                    "the access token expired and there is no refresh token",
                    tokens.expires_at,
                )
            return AuthStatus(AuthState.EXPIRED, None, tokens.expires_at)
        wanted = None
        if tokens.wanted_scope:
            wanted = (
                f"some requests need more scope ({shown(tokens.wanted_scope)}): a login asks for it"
            )
        return AuthStatus(AuthState.LOGGED_IN, wanted, tokens.expires_at)

    # --- tokens ---------------------------------------------------------------------------

    def _tokens(self) -> Tokens | None:
        # Read each time: `trio-sandbox auth login` in another process writes the store.
        tokens = self.store.load(self.name)
        if tokens is not None and tokens.server_url != self.server_url:
            tokens = None
        if self._needs_login is not None and tokens != self._refused:
            self._needs_login = None  # a login elsewhere replaced the tokens that were refused
        return tokens

    @property
    def _local(self) -> bool:
        """The MCP server is on this machine: loopback (and plain http) URLs are fine."""
        return is_loopback(self.server_url)

    def _login_needed(self, reason: str, tried: Tokens | None) -> None:
        """Only a person can go on; until the store holds other tokens than ``tried`` (the
        ones found wanting: not the store's now, which a login elsewhere may have written)."""
        self._needs_login = reason
        self._refused = tried

    def _expired(self, tokens: Tokens) -> bool:
        leeway = EXPIRY_LEEWAY if self._lifetime is None else min(EXPIRY_LEEWAY, self._lifetime / 2)
        return tokens.expires_at is not None and tokens.expires_at - leeway <= self.now()

    def _keep(
        self,
        discovered_issuer: str,
        token_endpoint: str,
        client: Client,
        grant: Grant,
        requested: Sequence[str],
        previous_refresh: str | None = None,
        wanted_scope: str | None = None,
        *,
        refreshed: Tokens | None = None,
    ) -> Tokens:
        for what, secret in (
            ("client secret", client.client_secret),
            ("access token", grant.access_token),
            ("refresh token", grant.refresh_token),
        ):
            if secret is not None and len(secret) < MIN_KNOWN_SECRET_LENGTH:
                # Too short to find in text without hiding ordinary words: it could not be kept
                # out of what the proxy shows, so it is not used at all.
                raise OAuthError(
                    f"the authorization server of {self.name!r} issued a {what} of"
                    f" {len(secret)} characters: too short to be kept secret (at least"
                    f" {MIN_KNOWN_SECRET_LENGTH})"
                )
        for secret in (client.client_secret, grant.access_token, grant.refresh_token):
            if secret:
                self.on_secret(secret)
        tokens = Tokens(
            server_url=self.server_url,
            issuer=discovered_issuer,
            token_endpoint=token_endpoint,
            client_id=client.client_id,
            client_secret=client.client_secret,
            token_endpoint_auth_method=client.auth_method,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token or previous_refresh,
            expires_at=None if grant.expires_in is None else self.now() + grant.expires_in,
            scope=grant.scope if grant.scope is not None else (" ".join(requested) or None),
            wanted_scope=wanted_scope,
        )
        if refreshed is None:
            self.store.save(self.name, tokens)
        else:
            # Only over the very tokens this refresh started from: a login stored meanwhile
            # (another process) is the newer intent and stays; it is used from now on.
            kept = self.store.replace(self.name, tokens, refreshed)
            if kept is not None and kept != tokens and kept.server_url == self.server_url:
                tokens = kept
        self._serial += 1
        self._lifetime = grant.expires_in
        if previous_refresh is None:  # a login or a client credentials grant: a new start
            self._rejections = 0
            self._rejected_until = self._rejected_until_at = -math.inf
        self._needs_login = None
        self._refresh_error = None
        self._refresh_failures = 0
        self._retry_deadline = -math.inf
        self._retry_at = None
        return tokens

    async def _renew(self, tokens: Tokens | None) -> Tokens:
        """A fresh access token without a person: refresh, or client credentials again."""
        serial = self._serial
        async with self._lock:
            current = self._tokens()
            if self._serial != serial and current is not None:
                # Renewed by the caller we waited for: its token, however short its life.
                return current
            if current is not None and current != tokens and not self._expired(current):
                # A login elsewhere stored fresh tokens meanwhile: they need no refresh.
                return current
            if current is not None and current.refresh_token is not None:
                return await self._refresh(current)
            await self._new_grant(None, "no tokens", current)
            renewed = self._tokens()
            assert renewed is not None
            return renewed

    async def _refresh(self, tokens: Tokens) -> Tokens:
        """One refresh (the lock held); backoff after a failure, LoginRequired on a refusal."""
        assert tokens.refresh_token is not None
        if self._needs_login is not None:
            # Still the refused tokens (the caller's load would have cleared it otherwise):
            # the same refresh token would get the same answer.
            raise LoginRequired(self.name, self._needs_login)
        self._check_backoff()
        client = Client(tokens.client_id, tokens.client_secret, tokens.token_endpoint_auth_method)
        # Shielded: the server may rotate the refresh token as soon as it reads the request, so
        # once it is sent its answer is kept even if the caller is cancelled meanwhile (else
        # the new refresh token is lost and the old one refused). Bounded by request_json.
        with trio.CancelScope(shield=True):
            try:
                grant = await token_request(
                    self.http,
                    tokens.token_endpoint,
                    client,
                    "refresh_token",
                    f"refreshing the token of {self.name!r} at {tokens.token_endpoint}",
                    refresh_token=tokens.refresh_token,
                    resource=canonical_resource(self.server_url),
                )
            except TokenEndpointError as exc:
                if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                    reason = f"the authorization server refused the refresh ({exc.error})"
                    self._login_needed(reason, tokens)
                    raise LoginRequired(self.name, reason) from None
                self._refresh_failed(str(exc))
                raise
            except OAuthError as exc:
                self._refresh_failed(str(exc))
                raise
            requested = tuple(tokens.scope.split()) if tokens.scope else ()
            renewed = self._keep(
                tokens.issuer,
                tokens.token_endpoint,
                client,
                grant,
                requested,
                tokens.refresh_token,
                tokens.wanted_scope,  # still wanted: a refresh grants no more
                refreshed=tokens,
            )
        return renewed

    async def _new_grant(
        self, challenge: BearerChallenge | None, reason: str, tried: Tokens | None
    ) -> None:
        """A login; for client credentials (no person needed) with the backoff of a refresh,
        so that a failing token endpoint is asked once per retry, not once per caller."""
        if self.settings.grant != "client_credentials":
            await self._login(challenge, None, None, reason, tried)
            return
        self._check_backoff()
        try:
            await self._login(challenge, None, None, reason, tried)
        except OAuthError as exc:
            self._refresh_failed(str(exc))
            raise

    def _pausing(self) -> bool:
        """Within the pause after refused fresh tokens, and they are still the store's (a
        login elsewhere ends it)."""
        return (
            trio.current_time() < self._rejected_until
            and self.store.load(self.name) == self._rejected
        )

    def _check_backoff(self) -> None:
        now = trio.current_time()
        if now < self._retry_deadline:
            raise OAuthError(
                f"upstream {self.name!r}: renewing its token failed ({self._refresh_error});"
                f" next retry in {math.ceil(self._retry_deadline - now)} s"
            )

    def _refresh_failed(self, reason: str) -> None:
        self._refresh_failures += 1
        delay = min(MAX_RETRY, FIRST_RETRY * 2 ** (self._refresh_failures - 1))
        self._refresh_error = reason
        self._retry_deadline = trio.current_time() + delay
        self._retry_at = self.now() + delay

    async def _same_server(self, tokens: Tokens, challenge: BearerChallenge) -> bool:
        """Whether the resource still names the authorization server the tokens are from (a
        server that moved to another one needs a new registration and login, not a refresh)."""
        if challenge.resource_metadata is None:
            return True
        try:
            metadata = await fetch_resource_metadata(
                self.http, self.server_url, challenge.resource_metadata, local=self._local
            )
        except OAuthError:
            return True  # the refresh will tell
        return metadata is None or tokens.issuer in metadata.authorization_servers

    # --- discovery and the grants (the lock held) ----------------------------------------

    async def _probe(self) -> BearerChallenge:
        """An unauthenticated request to the MCP server, for its 401's WWW-Authenticate."""
        ping = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
        answer = await request_json(
            self.http,
            "POST",
            self.server_url,
            what=f"the MCP server {self.server_url}",
            headers=[("Accept", "application/json, text/event-stream")],
            json_body=ping,
        )
        if answer.status in (401, 403):
            return parse_www_authenticate(answer.headers.get("www-authenticate"))
        return BearerChallenge()

    async def _discover(self, challenge: BearerChallenge) -> _Discovered:
        resource_metadata = await fetch_resource_metadata(
            self.http, self.server_url, challenge.resource_metadata, local=self._local
        )
        if resource_metadata is None:
            # No protected resource metadata: the 2025-03-26 spec's way, the MCP server's
            # origin is the authorization server (its metadata, else the default endpoints).
            parts = urlsplit(self.server_url)
            origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
            try:
                metadata = await fetch_server_metadata(self.http, origin, local=self._local)
            except OAuthError as exc:
                if not str(exc).startswith("no authorization server metadata"):
                    raise
                metadata = legacy_server_metadata(self.server_url)
            return _Discovered(canonical_resource(self.server_url), metadata, None)
        issuer = resource_metadata.authorization_servers[0]
        metadata = await fetch_server_metadata(self.http, issuer, local=self._local)
        return _Discovered(canonical_resource(self.server_url), metadata, resource_metadata)

    async def _login(
        self,
        challenge: BearerChallenge | None,
        scopes: Sequence[str] | None,
        device_prompt: DevicePrompt | None,
        reason: str,
        tried: Tokens | None,
    ) -> None:
        grant_type = self.settings.grant
        if grant_type == "authorization_code" and self.user_agent is None and not device_prompt:
            self._login_needed(reason, tried)
            raise LoginRequired(self.name, reason)
        if challenge is None:
            challenge = await self._probe()
        discovered = await self._discover(challenge)
        metadata = discovered.metadata
        if scopes is None:
            scopes = pick_scopes(
                self.settings.scopes, challenge.scopes, discovered.resource_metadata
            )
        scopes = tuple(scopes)
        if grant_type == "client_credentials":
            await self._client_credentials(discovered, scopes)
        elif device_prompt is not None and metadata.device_authorization_endpoint is not None:
            await self._device(discovered, self._with_offline(scopes, metadata), device_prompt)
        else:
            if self.user_agent is None:
                self._login_needed(reason, tried)
                raise LoginRequired(self.name, f"{reason}; no device flow at this server")
            await self._authorization_code(discovered, self._with_offline(scopes, metadata))
        self._requested_scopes = scopes

    def _with_offline(self, scopes: tuple[str, ...], metadata: ServerMetadata) -> tuple[str, ...]:
        # Ask for a refresh token where the server lists offline_access (SEP-2207): a proxy that
        # lives for days should not need a person each time an access token expires.
        supported = metadata.scopes_supported or ()
        if scopes and _OFFLINE_ACCESS in supported and _OFFLINE_ACCESS not in scopes:
            return (*scopes, _OFFLINE_ACCESS)
        return scopes

    async def _step_up(self, challenge: BearerChallenge) -> bool:
        tokens = self._tokens()
        granted = tokens.scope.split() if tokens is not None and tokens.scope else []
        have = {*self._requested_scopes, *granted}
        if not challenge.scopes or set(challenge.scopes) <= have:
            return False  # asked for what we have: another try would get the same answer
        # What was granted stays asked for (a restarted client asked for nothing itself yet).
        wanted = _union(granted, self._requested_scopes, challenge.scopes)
        if self.settings.grant == "authorization_code" and self.user_agent is None:
            # Only a person can grant more. The tokens stay good for everything else (no
            # login is marked needed: refreshes go on); the next login asks for this too.
            if tokens is not None and tokens.wanted_scope != " ".join(wanted):
                wanting = attrs.evolve(tokens, wanted_scope=" ".join(wanted))
                self.store.replace(self.name, wanting, tokens)  # not over a login meanwhile
            missing = " ".join(scope for scope in challenge.scopes if scope not in have)
            raise LoginRequired(self.name, f"the server asks for more scope: {shown(missing)}")
        if self._step_ups >= MAX_STEP_UPS:
            return False
        self._step_ups += 1
        await self._login(challenge, wanted, None, "the server asked for more scope", tokens)
        return True

    async def _client(
        self,
        metadata: ServerMetadata,
        *,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        scopes: Sequence[str],
    ) -> Client:
        """Pre-registered, else a client ID metadata document, else dynamic registration (a
        new one per login: registrations are bound to their server and redirect URI)."""
        expected = self.settings.issuer
        if expected is not None and metadata.issuer != expected:
            # Before the configured client (and its secret) meets this server at all.
            raise OAuthError(
                f"the authorization server of {self.name!r} is {shown(metadata.issuer)}, not the"
                f" configured issuer {expected!r}: the configured client is not used there"
            )
        client = pre_registered(self.settings, metadata)
        stored = self._tokens()
        if (
            client is not None
            and stored is not None
            and stored.client_id == client.client_id
            and stored.issuer != metadata.issuer
        ):
            # A pre-registered client belongs to the server that registered it (the spec's
            # authorization server binding): say so rather than present it elsewhere.
            raise OAuthError(
                f"the authorization server of {self.name!r} changed from {stored.issuer} to"
                f" {metadata.issuer}; the configured client_id was registered with the former:"
                " register with the new one and configure its client_id"
            )
        client = client or metadata_document(self.settings, metadata)
        if client is None:
            client = await register(
                self.http,
                metadata,
                redirect_uris=redirect_uris,
                grant_types=grant_types,
                scopes=scopes,
            )
        if client.client_secret:
            self.on_secret(client.client_secret)
        return client

    async def _authorization_code(self, discovered: _Discovered, scopes: Sequence[str]) -> None:
        metadata = discovered.metadata
        if metadata.authorization_endpoint is None:
            raise OAuthError(
                f"the authorization server {metadata.issuer} has no authorization_endpoint"
            )
        methods = metadata.code_challenge_methods_supported
        if methods is None or "S256" not in methods:
            # The spec: without S256 PKCE advertised, a client must not proceed.
            raise OAuthError(
                f"the authorization server {metadata.issuer} does not advertise PKCE with S256"
            )
        assert self.user_agent is not None
        async with self.user_agent.redirect() as redirect:
            client = await self._client(
                metadata,
                redirect_uris=[redirect.uri],
                grant_types=["authorization_code", "refresh_token"],
                scopes=scopes,
            )
            verifier = generate_token(64)
            state = generate_token(32)
            url = prepare_grant_uri(
                metadata.authorization_endpoint,
                client.client_id,
                "code",
                redirect.uri,
                " ".join(scopes) or None,
                state,
                code_challenge=create_s256_code_challenge(verifier),
                code_challenge_method="S256",
                resource=discovered.resource,
            )
            params = dict(await redirect.authorize(url))
        code = self._check_redirect(params, state, metadata)
        grant = await token_request(
            self.http,
            metadata.token_endpoint,
            client,
            "authorization_code",
            f"the token request at {metadata.token_endpoint}",
            code=code,
            redirect_uri=redirect.uri,
            code_verifier=verifier,
            resource=discovered.resource,
        )
        self._keep(metadata.issuer, metadata.token_endpoint, client, grant, scopes)

    def _check_redirect(self, params: dict[str, str], state: str, metadata: ServerMetadata) -> str:
        got_state = params.get("state")
        if got_state is None or not hmac.compare_digest(got_state.encode(), state.encode()):
            raise OAuthError("the authorization response's state does not match the request's")
        iss = params.get("iss")
        if iss is not None:
            # RFC 9207: compared as strings (no normalization), whether advertised or not.
            if iss != metadata.issuer:
                raise OAuthError(
                    "the authorization response comes from another issuer than"
                    f" {metadata.issuer} (a mix-up attack, or a misconfigured server)"
                )
        elif metadata.iss_parameter_supported:
            raise OAuthError(
                "the authorization response has no iss although"
                f" {metadata.issuer} says it sends one"
            )
        if "error" in params:
            _, text = describe_refusal(dict(params), ())
            raise OAuthError(f"the authorization was refused: {text}")
        code = params.get("code")
        if not code:
            raise OAuthError("the authorization response has no code")
        return code

    async def _client_credentials(self, discovered: _Discovered, scopes: Sequence[str]) -> None:
        metadata = discovered.metadata
        client = await self._client(
            metadata, redirect_uris=[], grant_types=["client_credentials"], scopes=scopes
        )
        grant = await token_request(
            self.http,
            metadata.token_endpoint,
            client,
            "client_credentials",
            f"the client credentials grant at {metadata.token_endpoint}",
            scope=" ".join(scopes) or None,
            resource=discovered.resource,
        )
        self._keep(metadata.issuer, metadata.token_endpoint, client, grant, scopes)

    async def _device(
        self, discovered: _Discovered, scopes: Sequence[str], prompt: DevicePrompt
    ) -> None:
        """RFC 8628: show the person a code to enter elsewhere, poll the token endpoint."""
        metadata = discovered.metadata
        endpoint = metadata.device_authorization_endpoint
        assert endpoint is not None
        client = await self._client(
            metadata,
            redirect_uris=[],
            grant_types=[DEVICE_CODE_GRANT, "refresh_token"],
            scopes=scopes,
        )
        what = f"the device authorization request at {endpoint}"
        form = {"scope": " ".join(scopes), "resource": discovered.resource}
        headers, body = client_auth(
            client, endpoint, urlencode([(name, value) for name, value in form.items() if value])
        )
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = await request_json(
            self.http, "POST", endpoint, what=what, headers=headers.items(), content=body.encode()
        )
        if answer.status != 200 or not isinstance(answer.body, dict):
            _, text = describe_refusal(answer.body, client_secrets(client))
            raise OAuthError(f"{what}: refused (HTTP {answer.status}, {text})")
        data = answer.body
        device_code = data.get("device_code")
        user_code = data.get("user_code")
        uri = data.get("verification_uri", data.get("verification_url"))
        if not all(isinstance(value, str) and value for value in (device_code, user_code, uri)):
            raise OAuthError(f"{what}: the answer lacks device_code, user_code or verification_uri")
        assert isinstance(device_code, str)
        assert isinstance(user_code, str)
        # Shown to a person (a terminal): a URL they may open, a code they type; nothing that
        # is a script, another scheme, or a terminal escape.
        uri = require_secure_url(uri, f"{what}: the verification_uri", local=self._local)
        complete = data.get("verification_uri_complete")
        if complete is not None:
            require_secure_url(
                complete, f"{what}: the verification_uri_complete", local=self._local
            )
        if not _USER_CODE.fullmatch(user_code):
            raise OAuthError(f"{what}: the user_code is not a short line of printable ASCII")
        # RFC 8628 §3.5: 5 s unless the server says; never faster than once a second.
        interval = max(_seconds(data.get("interval"), _DEVICE_DEFAULT_INTERVAL), 1.0)
        expires_in = min(_seconds(data.get("expires_in"), _DEVICE_MAX_WAIT), _DEVICE_MAX_WAIT)
        prompt(uri, user_code)
        with trio.move_on_after(expires_in):
            while True:
                await trio.sleep(interval)
                try:
                    grant = await token_request(
                        self.http,
                        metadata.token_endpoint,
                        client,
                        DEVICE_CODE_GRANT,
                        f"the device token request at {metadata.token_endpoint}",
                        device_code=device_code,
                        resource=discovered.resource,
                    )
                except TokenEndpointError as exc:
                    if exc.error == "authorization_pending":
                        continue
                    if exc.error == "slow_down":
                        interval += 5  # RFC 8628 §3.5
                        continue
                    raise
                self._keep(metadata.issuer, metadata.token_endpoint, client, grant, scopes)
                return
        raise OAuthError(f"the device code expired before the login at {uri} was completed")


def _union(*groups: Sequence[str]) -> tuple[str, ...]:
    """The scopes of every group, each once, in first-seen order."""
    return tuple(dict.fromkeys(scope for group in groups for scope in group))


def _seconds(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 10**6:
        return default
    return float(value)
