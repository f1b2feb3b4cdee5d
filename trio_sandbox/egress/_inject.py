"""Secrets injected at the egress proxy: the values the sandbox only ever sees as placeholders.

The sandbox holds a placeholder of the same length and shape as each real value; the proxy
replaces it in requests to the hosts the secret is scoped to (TLS terminated there with a
per-sandbox CA whose contexts the warden supplies: this package does not import
:mod:`trio_sandbox.tls`), and refuses it everywhere else.

:class:`InjectedSecret` holds the value outside of its ``repr``; nothing here puts a value in a
message: errors give names and lengths only.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import attrs

from ._errors import InjectionError, PolicyError
from ._policy import Destination, DestinationRule

INJECT_SETTING: Final = "inject_secrets"
# Ports an entry without ``:PORT`` is intercepted on (it is allowed on 80 too, never injected).
INTERCEPTED_PORTS: Final = frozenset({443})
# ``inject:NAME`` must fit a redaction rule's name (64 characters).
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,56}")
# A value goes into header lines: visible ASCII only, and long enough to be told from text.
MIN_VALUE_LENGTH: Final = 8
_VISIBLE: Final = re.compile(r"[\x21-\x7e]+")

ContextFactory = Callable[[Destination], Awaitable[ssl.SSLContext]]
UpstreamContextFactory = Callable[[], Awaitable[ssl.SSLContext]]


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InjectionError(name, "a name is a letter or '_' then up to 56 letters, digits or '_'")


def _host_tuple(hosts: Iterable[str]) -> tuple[str, ...]:
    if isinstance(hosts, str):
        raise TypeError("hosts is a sequence of allow_domains entries, not one string")
    return tuple(hosts)


def _secret_tuple(secrets: Iterable[InjectedSecret]) -> tuple[InjectedSecret, ...]:
    return tuple(secrets)


@attrs.frozen
class InjectedSecret:
    """One secret: ``value`` is written only into requests to ``hosts`` (``allow_domains``
    entries: a name, ``*.domain`` or an IP literal, ``:PORT`` optional), where the sandbox
    sends ``placeholder``. Placeholder and value have the same length and the same characters
    outside ``[A-Za-z0-9]`` at the same positions, so a placeholder %-encoded or inside Basic
    credentials is replaced with the lengths and the encoding kept."""

    name: str
    value: str = attrs.field(repr=False)
    placeholder: str
    hosts: tuple[str, ...] = attrs.field(converter=_host_tuple)
    scope: tuple[DestinationRule, ...] = attrs.field(init=False, repr=False, eq=False)

    @scope.default
    def _scope(self) -> tuple[DestinationRule, ...]:
        _check_name(self.name)
        if not self.hosts:
            raise InjectionError(self.name, "scoped to no host")
        setting = f"{INJECT_SETTING} {self.name}"
        try:
            return tuple(DestinationRule.parse(host, setting) for host in self.hosts)
        except PolicyError as error:
            raise InjectionError(self.name, str(error)) from None

    def __attrs_post_init__(self) -> None:
        value, placeholder = self.value, self.placeholder
        if len(value) < MIN_VALUE_LENGTH or not _VISIBLE.fullmatch(value):
            raise InjectionError(
                self.name,
                f"the value ({len(value)} characters) must be at least {MIN_VALUE_LENGTH}"
                " visible ASCII characters (it goes into header lines)",
            )
        if len(placeholder) != len(value) or not _VISIBLE.fullmatch(placeholder):
            raise InjectionError(
                self.name, "the placeholder must be as long as the value, in visible ASCII"
            )
        if placeholder == value:
            raise InjectionError(self.name, "the placeholder is the value")
        for index, (shown, real) in enumerate(zip(placeholder, value, strict=True)):
            if (_is_special(shown) or _is_special(real)) and shown != real:
                raise InjectionError(
                    self.name,
                    f"placeholder and value differ at position {index}, where one has a"
                    " character outside [A-Za-z0-9] (they must share those in place)",
                )

    def covers(self, destination: Destination) -> bool:
        """Whether requests to ``destination`` get this secret's value (and are intercepted)."""
        return any(
            rule.covers_host(destination.host)
            and rule.covers_port(destination.port, portless=INTERCEPTED_PORTS)
            for rule in self.scope
        )

    def scope_text(self) -> str:
        """The hosts, as a refusal names them."""
        return ", ".join(self.hosts)


def _is_special(character: str) -> bool:
    return not (character.isascii() and character.isalnum())


@attrs.frozen
class Injection:
    """What the proxy needs to inject: the secrets, and two factories the warden supplies (this
    package does not import :mod:`trio_sandbox.tls`): ``server_context(destination)`` gives the
    server-side context presenting a leaf for ``destination`` signed by the sandbox's CA;
    ``upstream_context()`` the client-side context that verifies origins against the host's
    trust store (ALPN ``http/1.1``)."""

    secrets: tuple[InjectedSecret, ...] = attrs.field(converter=_secret_tuple)
    server_context: ContextFactory = attrs.field(eq=False, repr=False)
    upstream_context: UpstreamContextFactory = attrs.field(eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_distinct(self.secrets)

    def scoped(self, destination: Destination) -> tuple[InjectedSecret, ...]:
        """The secrets replaced in requests to ``destination`` (none: a plain tunnel)."""
        return tuple(secret for secret in self.secrets if secret.covers(destination))


def _check_distinct(secrets: Iterable[InjectedSecret]) -> None:
    names: set[str] = set()
    placeholders: list[tuple[str, str]] = []
    for secret in secrets:
        if secret.name in names:
            raise InjectionError(secret.name, "given twice")
        names.add(secret.name)
        for other_name, other in placeholders:
            if secret.placeholder in other or other in secret.placeholder:
                raise InjectionError(
                    secret.name, f"its placeholder and that of {other_name} contain one another"
                )
        placeholders.append((secret.name, secret.placeholder))
