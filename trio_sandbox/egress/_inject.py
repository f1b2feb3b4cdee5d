"""Secrets injected at the egress proxy: the values the sandbox only ever sees as placeholders.

The sandbox holds a placeholder of the same length and shape as each real value; the proxy
replaces it in requests to the hosts the secret is scoped to (TLS terminated there with a
per-sandbox CA whose contexts the warden supplies: this package does not import
:mod:`trio_sandbox.tls`), and refuses it everywhere else.

:class:`InjectedSecret` holds the value outside of its ``repr``; nothing here puts a value in a
message: errors give names and lengths only.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from typing import Final

import attrs

from ..contract import (
    INJECT_VALUE_MIN_LENGTH,
    is_header_text,
    is_inject_name,
    is_injectable_value,
    is_placeholder_special,
)
from ._errors import InjectionError, PolicyError
from ._http_head import RequestHead
from ._policy import Destination, DestinationRule, RuleKind
from ._suffixes import private_suffixes

INJECT_SETTING: Final = "inject_secrets"
# Ports an entry without ``:PORT`` is intercepted on (it is allowed on 80 too, never injected).
INTERCEPTED_PORTS: Final = frozenset({443})

ContextFactory = Callable[[Destination], Awaitable[ssl.SSLContext]]
UpstreamContextFactory = Callable[[], Awaitable[ssl.SSLContext]]


def _check_name(name: str) -> None:
    if not is_inject_name(name):
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
            rules = tuple(DestinationRule.parse(host, setting) for host in self.hosts)
        except PolicyError as error:
            raise InjectionError(self.name, str(error)) from None
        for rule in rules:
            suffix = (
                private_suffixes().at_or_under(rule.host)
                if rule.kind is RuleKind.WILDCARD and isinstance(rule.host, str)
                else None
            )
            if suffix is not None:
                raise InjectionError(
                    self.name,
                    f"{rule.entry} is a wildcard under {suffix}, where anyone can have a"
                    " host (Public Suffix List, private section): name the hosts exactly",
                )
        return rules

    def __attrs_post_init__(self) -> None:
        value, placeholder = self.value, self.placeholder
        if not is_injectable_value(value):
            raise InjectionError(
                self.name,
                f"the value ({len(value)} characters) must be at least {INJECT_VALUE_MIN_LENGTH}"
                " visible ASCII characters (it goes into header lines)",
            )
        if len(placeholder) != len(value) or not is_header_text(placeholder):
            raise InjectionError(
                self.name, "the placeholder must be as long as the value, in visible ASCII"
            )
        if placeholder == value:
            raise InjectionError(self.name, "the placeholder is the value")
        for index, (shown, real) in enumerate(zip(placeholder, value, strict=True)):
            if (is_placeholder_special(shown) or is_placeholder_special(real)) and shown != real:
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


@attrs.frozen
class PlaceholderFound:
    """A placeholder seen where it must not go: ``secret`` is whose, ``where`` says in what (a
    request target, a header's name, Basic credentials, a host name)."""

    secret: InjectedSecret
    where: str

    def reason(self, *, cleartext: bool = False) -> str:
        """Why the request was refused, as the sandbox reads it (the name, never the value);
        ``cleartext``: a plain ``http://`` request, where no placeholder is ever replaced."""
        where = (
            f"in https:// requests to {self.secret.scope_text()} (never in cleartext)"
            if cleartext
            else f"for {self.secret.scope_text()}"
        )
        return (
            f"{self.where} carries the placeholder of {INJECT_SETTING} {self.secret.name},"
            f" which is replaced only {where}; nothing was sent"
        )


_BASIC: Final = re.compile(r"(?i)(basic[ \t]+)([A-Za-z0-9+/]+=*)([ \t]*)")
_CREDENTIAL_FIELDS: Final = frozenset({"authorization", "proxy-authorization"})


def _special_pattern(character: str, *, capture: bool) -> str:
    """``character`` as itself or %-encoded (hex digits in either case)."""
    code = "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{ord(character):02X}")
    inner = f"{re.escape(character)}|%{code}"
    return f"({inner})" if capture else f"(?:{inner})"


def _placeholder_pattern(placeholder: str, *, capture: bool) -> str:
    return "".join(
        _special_pattern(c, capture=capture) if is_placeholder_special(c) else re.escape(c)
        for c in placeholder
    )


@attrs.define(eq=False)
class _Walker:
    """Rewrites one matched placeholder (in whatever form the client wrote its special
    characters) as the value: alphanumeric characters are the value's, the specials stay as the
    client wrote them (placeholder and value share them in place)."""

    secret: InjectedSecret
    pattern: re.Pattern[str]

    def replace(self, matched: str) -> str:
        walked = self.pattern.fullmatch(matched)
        if walked is None:  # the alternation matched it: cannot happen
            raise AssertionError(f"a placeholder of {self.secret.name} did not walk")
        specials = iter(walked.groups())
        return "".join(
            next(specials) if is_placeholder_special(shown) else real
            for shown, real in zip(self.secret.placeholder, self.secret.value, strict=True)
        )


def _longest_first(secrets: Iterable[InjectedSecret]) -> tuple[InjectedSecret, ...]:
    """So that no shorter placeholder wins where a longer one starts."""
    ordered = tuple(sorted(secrets, key=lambda secret: -len(secret.placeholder)))
    _check_distinct(ordered)
    return ordered


@attrs.define(eq=False)
class PlaceholderMatcher:
    """Finds and replaces the placeholders of ``secrets``: as written, with special characters
    %-encoded (either hex case), and inside ``Basic`` credentials. Whole placeholders only: a
    prefix or a truncated placeholder is left as it is."""

    secrets: tuple[InjectedSecret, ...] = attrs.field(converter=_longest_first)
    _pattern: re.Pattern[str] = attrs.field(init=False)
    _folded: re.Pattern[str] = attrs.field(init=False)
    _walkers: dict[str, _Walker] = attrs.field(init=False)

    @_pattern.default
    def _compile(self) -> re.Pattern[str]:
        return re.compile(self._alternation())

    @_folded.default
    def _compile_folded(self) -> re.Pattern[str]:
        return re.compile(self._alternation(), re.IGNORECASE)

    @_walkers.default
    def _compile_walkers(self) -> dict[str, _Walker]:
        return {
            f"s{index}": _Walker(
                secret, re.compile(_placeholder_pattern(secret.placeholder, capture=True))
            )
            for index, secret in enumerate(self.secrets)
        }

    def _alternation(self) -> str:
        # A pattern that never matches when there is nothing to find.
        return (
            "|".join(
                f"(?P<s{index}>{_placeholder_pattern(secret.placeholder, capture=False)})"
                for index, secret in enumerate(self.secrets)
            )
            or r"(?!)"
        )

    def _secret_of(self, matched: re.Match[str]) -> InjectedSecret:
        group = matched.lastgroup
        if group is None:
            raise AssertionError("a placeholder match without its group")
        return self._walkers[group].secret

    def find(
        self,
        text: str,
        *,
        ignore_case: bool = False,
        excluding: Collection[InjectedSecret] = (),
    ) -> InjectedSecret | None:
        """The secret whose placeholder ``text`` holds first (raw or %-encoded), if any, not
        counting those in ``excluding``; ``ignore_case`` for host names, which clients
        lower-case."""
        pattern = self._folded if ignore_case else self._pattern
        position = 0
        # Overlapping matches too: a skipped placeholder must not hide another one.
        while (matched := pattern.search(text, position)) is not None:
            secret = self._secret_of(matched)
            if secret not in excluding:
                return secret
            position = matched.start() + 1
        return None

    def find_bytes(self, data: bytes, *, ignore_case: bool = False) -> InjectedSecret | None:
        return self.find(data.decode("latin-1"), ignore_case=ignore_case)

    def find_in_field(
        self, name: str, value: str, *, excluding: Collection[InjectedSecret] = ()
    ) -> PlaceholderFound | None:
        """A placeholder in a header field (its name, its value, Basic credentials in it)."""
        if (found := self.find(name, excluding=excluding)) is not None:
            return PlaceholderFound(found, f"the name of header field {name}")
        if (found := self.find(value, excluding=excluding)) is not None:
            return PlaceholderFound(found, f"header {name}")
        if name.lower() in _CREDENTIAL_FIELDS:
            decoded = _basic_credentials(value)
            if decoded is not None and (found := self.find(decoded, excluding=excluding)):
                return PlaceholderFound(found, f"the Basic credentials of header {name}")
        return None

    def find_in_head(
        self,
        target: str,
        fields: Iterable[tuple[str, str]],
        *,
        excluding: Collection[InjectedSecret] = (),
    ) -> PlaceholderFound | None:
        """The first placeholder (of a secret not in ``excluding``) in a request target or in
        header fields."""
        if (found := self.find(target, excluding=excluding)) is not None:
            return PlaceholderFound(found, "the request target")
        for name, value in fields:
            if (in_field := self.find_in_field(name, value, excluding=excluding)) is not None:
                return in_field
        return None

    def substitute(self, text: str, only: Collection[InjectedSecret] | None = None) -> str:
        """``text`` with every placeholder (of the secrets in ``only``, if given) replaced by
        its value."""

        def replaced(matched: re.Match[str]) -> str:
            walker = self._walkers[matched.lastgroup or ""]
            if only is not None and walker.secret not in only:
                return matched[0]
            return walker.replace(matched[0])

        return self._pattern.sub(replaced, text)

    def substitute_field(
        self, name: str, value: str, only: Collection[InjectedSecret] | None = None
    ) -> str:
        """A header value with its placeholders replaced, Basic credentials decoded for it."""
        if name.lower() in _CREDENTIAL_FIELDS:
            matched = _BASIC.fullmatch(value)
            decoded = _basic_credentials(value)
            if matched is not None and decoded is not None:
                encoded = base64.b64encode(self.substitute(decoded, only).encode("latin-1"))
                return matched[1] + encoded.decode("ascii") + matched[3]
        return self.substitute(value, only)

    def substitute_head(
        self, head: RequestHead, scoped: Collection[InjectedSecret]
    ) -> RequestHead | PlaceholderFound:
        """``head`` with the placeholders of ``scoped`` replaced in its target and its header
        values; what was found instead if it carries the placeholder of another secret (then
        nothing is replaced)."""
        found = self.find_in_head(head.target, head.fields, excluding=scoped)
        if found is not None:
            return found
        return attrs.evolve(
            head,
            target=self.substitute(head.target, scoped),
            fields=tuple(
                (name, self.substitute_field(name, value, scoped)) for name, value in head.fields
            ),
        )


def basic_blob(value: str) -> str | None:
    """The base64 blob of a ``Basic`` header value, None if it is not one."""
    matched = _BASIC.fullmatch(value)
    return matched[2] if matched is not None else None


def _basic_credentials(value: str) -> str | None:
    """The decoded ``user:password`` of a ``Basic`` header value, None if it is not one."""
    matched = _BASIC.fullmatch(value)
    if matched is None:
        return None
    try:
        return base64.b64decode(matched[2], validate=True).decode("latin-1")
    except binascii.Error:
        return None


def _response_special(character: str) -> bytes:
    """A special character of a value as a response may spell it (captured): as itself,
    %-encoded, JSON ``\\u00XX``-escaped (hex digits in either case), ``\\/`` for ``/``."""
    hexed = "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{ord(character):02X}")
    forms = [re.escape(character), f"%{hexed}", rf"\\u00{hexed}"]
    if character == "/":
        forms.append(r"\\/")
    return f"({'|'.join(forms)})".encode("ascii")


def _value_pattern(value: str) -> bytes:
    return b"".join(
        _response_special(c) if is_placeholder_special(c) else re.escape(c).encode("ascii")
        for c in value
    )


def _longest_form(value: str) -> int:
    """The length of the longest spelling :func:`_value_pattern` matches."""
    return sum(6 if is_placeholder_special(c) else 1 for c in value)


@attrs.define(eq=False)
class ResponseMask:
    """What responses from an intercepted host have turned back into placeholders, for one
    connection: each value of ``secrets`` with its special characters in any of the forms a
    response may spell them (raw, %-encoded in either case, JSON ``\\u00XX`` or ``\\/``,
    mixed), its placeholder written in the same forms; and every string :meth:`record` was told
    was sent for a placeholder (each Basic credential blob). Every replacement is as long as
    what it replaces. Best effort: a value the origin transforms otherwise (base64 of a part,
    hashed, compressed) is not recognised."""

    secrets: tuple[InjectedSecret, ...] = attrs.field(converter=_longest_first, repr=False)
    _sent: dict[bytes, bytes] = attrs.field(factory=dict, repr=False)
    _pattern: re.Pattern[bytes] = attrs.field(init=False, repr=False)
    _longest: int = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        exact = [re.escape(sent) for sent in sorted(self._sent, key=len, reverse=True)]
        values = [_value_pattern(secret.value) for secret in self.secrets]
        self._pattern = re.compile(
            b"|".join(
                [
                    *(b"(?P<x%d>%s)" % (index, pattern) for index, pattern in enumerate(exact)),
                    *(b"(?P<v%d>%s)" % (index, pattern) for index, pattern in enumerate(values)),
                ]
            )
            or rb"(?!)"
        )
        self._longest = max(
            [len(sent) for sent in self._sent]
            + [_longest_form(secret.value) for secret in self.secrets]
            + [1]
        )

    def record(self, sent: str, replaced: str) -> None:
        """``sent`` went to the origin where the client wrote ``replaced``."""
        key, original = sent.encode("latin-1"), replaced.encode("latin-1")
        if len(key) != len(original):
            raise ValueError("a recorded replacement must be as long as what it replaced")
        if key != original and key not in self._sent:
            self._sent[key] = original
            self._compile()

    @property
    def longest(self) -> int:
        """The length of the longest string masked."""
        return self._longest

    def replacement(self, matched: re.Match[bytes]) -> bytes:
        group = matched.lastgroup or ""
        if group.startswith("x"):
            return self._sent[matched[0]]
        secret = self.secrets[int(group[1:])]
        inner = re.fullmatch(_value_pattern(secret.value), matched[0])
        if inner is None:  # the alternation matched it: cannot happen
            raise AssertionError(f"a value of {secret.name} did not walk")
        specials = iter(inner.groups())
        return b"".join(
            next(specials) if is_placeholder_special(shown) else shown.encode("ascii")
            for shown in secret.placeholder
        )

    def apply(self, data: bytes) -> bytes:
        """``data`` (a whole head, or the end of a body) masked."""
        return self._pattern.sub(self.replacement, data)

    def finditer(self, data: bytes) -> Iterator[re.Match[bytes]]:
        return self._pattern.finditer(data)


@attrs.define(eq=False)
class StreamingReplacer:
    """:class:`ResponseMask` run over a stream of bytes fed in pieces: what :meth:`feed`
    returns is final, the same as masking the whole stream at once. The last
    ``mask.longest - 1`` bytes are always held back (fewer only after a masked string that
    ends there), whatever they are: a tail held only when it may become a value would tell the
    client, by where records end, whether its guess was a prefix of the value. :meth:`flush`
    gives them at the end of a body (or when the body pauses, on a timer)."""

    mask: ResponseMask = attrs.field(repr=False)
    _held: bytes = attrs.field(default=b"", repr=False)

    def feed(self, data: bytes) -> bytes:
        text = self._held + data
        cut = len(text) - (self.mask.longest - 1)
        if cut <= 0:
            self._held = text
            return b""
        out: list[bytes] = []
        position = 0
        # A match that starts before the cut has every byte it could span in ``text``: it is
        # the one a mask over the whole stream finds there.
        for matched in self.mask.finditer(text):
            if matched.start() >= cut:
                break
            out += (text[position : matched.start()], self.mask.replacement(matched))
            position = matched.end()
        end = max(cut, position)
        out.append(text[position:end])
        self._held = text[end:]
        return b"".join(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return self.mask.apply(held)

    @property
    def holding(self) -> int:
        return len(self._held)
