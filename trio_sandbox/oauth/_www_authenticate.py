"""The ``WWW-Authenticate`` header of a 401/403 (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1):
the Bearer challenge's ``error``, ``scope`` and ``resource_metadata``.

Tolerant by design: the header comes from the server being authorized to, and a garbled one
must cost only what it garbles (no exception, no half-parsed value taken for another).
"""

from __future__ import annotations

import re
from typing import Final

import attrs

_MAX_HEADER: Final = 16384
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPACE: Final = re.compile(r"[ \t]*")


@attrs.frozen
class BearerChallenge:
    """The Bearer challenge's parameters that this client uses (None when absent)."""

    error: str | None = None
    error_description: str | None = None
    scope: str | None = None
    resource_metadata: str | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.scope.split()) if self.scope else ()


def parse_www_authenticate(header: str | None) -> BearerChallenge:
    """The first Bearer challenge of ``header``; an empty one when there is none."""
    if not header or len(header) > _MAX_HEADER:
        return BearerChallenge()
    for scheme, params in _challenges(header):
        if scheme.lower() == "bearer":
            return BearerChallenge(
                error=params.get("error"),
                error_description=params.get("error_description"),
                scope=params.get("scope"),
                resource_metadata=params.get("resource_metadata"),
            )
    return BearerChallenge()


def _challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """Every challenge as (scheme, params); a parameter repeated keeps its first value, and
    parsing stops at the first thing that is not the grammar."""
    found: list[tuple[str, dict[str, str]]] = []
    position = 0
    length = len(header)
    params: dict[str, str] = {}
    while position < length:
        position = _skip(header, position, " \t,")
        match = _TOKEN.match(header, position)
        if match is None:
            break
        name = match.group()
        after = _SPACE.match(header, match.end())
        assert after is not None
        next_position = after.end()
        if found and next_position < length and header[next_position] == "=":
            # name = value: a parameter of the current challenge (unless it is a token68).
            value_start = _SPACE.match(header, next_position + 1)
            assert value_start is not None
            parsed = _value(header, value_start.end())
            if parsed is None:
                break
            value, position = parsed
            params.setdefault(name.lower(), value)
            continue
        # A new challenge: its scheme.
        params = {}
        found.append((name, params))
        position = next_position
        token68 = _TOKEN68.match(header, position)
        if token68 is not None:
            end = _SPACE.match(header, token68.end())
            assert end is not None
            if end.end() >= length or header[end.end()] == ",":
                position = end.end()  # a token68 credential-like value: nothing we use
    return found


def _skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position


def _value(text: str, position: int) -> tuple[str, int] | None:
    if position < len(text) and text[position] == '"':
        chars: list[str] = []
        position += 1
        while position < len(text):
            char = text[position]
            if char == "\\" and position + 1 < len(text):
                chars.append(text[position + 1])
                position += 2
                continue
            if char == '"':
                return "".join(chars), position + 1
            chars.append(char)
            position += 1
        return None  # an unterminated quoted string
    match = _TOKEN.match(text, position)
    if match is None:
        return None
    return match.group(), match.end()
