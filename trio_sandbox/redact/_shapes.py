"""Placeholders shaped like the secrets they stand for (inject_secrets).

A program inside the sandbox sees a placeholder where the host has the real value; the egress
proxy swaps one for the other in requests to the secret's hosts. Clients check a token's shape
(a ``ghp_`` prefix, a length, a JWT they decode for its expiry), so the placeholder keeps it:
the same length, every character outside ``[A-Za-z0-9]`` in place (the proxy replaces
%-encoded and Basic forms by matching them), a known vendor prefix, and at every other position
a character of the same class (lower, upper, digit): a letter a-f (A-F) where the replaced
part is hex, a digit 2-7 where it is base32 (AWS key ids). Fixed markers inside some formats
(OpenAI's ``T3BlbkFJ``, the ``AA`` ending Anthropic keys) stay. A JWT keeps its header and
payload (public, and clients read ``exp``); its signature is replaced. Checksums inside some
formats (``ghp_``'s CRC) are not reproduced.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Collection
from typing import Final

from ..contract import is_placeholder_special
from ._errors import PlaceholderError

# Longest first, so that ``github_pat_`` wins over ``gh``-anything and ``sk-proj-`` over ``sk-``.
VENDOR_PREFIXES: Final = tuple(
    sorted(
        (
            "github_pat_",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "glpat-",
            "sk-proj-",
            "sk-svcacct-",
            "sk-admin-",
            "sk-ant-api03-",
            "sk-ant-admin01-",
            "sk-ant-",
            "sk-",
            "xoxb-",
            "xoxp-",
            "xapp-",
            "hf_",
            "npm_",
            "pypi-",
            "AKIA",
            "ASIA",
            "AIza",
            "dop_v1_",
            "shpat_",
        ),
        key=len,
        reverse=True,
    )
)
# Otherwise a leading word ended by '_' or '-' is taken as a prefix ("sl_live_" keeps "sl_").
_LEADING_WORD = re.compile(r"[A-Za-z]{1,12}[_-]")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_LOWER_HEX = frozenset("0123456789abcdef")
_UPPER_HEX = frozenset("0123456789ABCDEF")
# RFC 4648 base32 (AWS key ids): its digits are 2-7 only.
_BASE32 = frozenset(string.ascii_uppercase + "234567")
_DRAWS: Final = 64
# Fixed pieces inside or at the end of some formats, kept where they are: OpenAI's marker
# (base64 of "OpenAI") and the "AA" Anthropic keys end with.
_KEPT_INFIXES = ("T3BlbkFJ",)
_KEPT_SUFFIXES = (("sk-ant-", "AA"),)


def _kept_prefix(value: str) -> int:
    """How many leading characters stay as they are: a JWT's header and payload, a vendor
    prefix, or a short leading word."""
    if _JWT.fullmatch(value):
        return value.rindex(".") + 1
    for prefix in VENDOR_PREFIXES:
        if value.startswith(prefix):
            return len(prefix)
    leading = _LEADING_WORD.match(value)
    return leading.end() if leading else 0


def _alphabets(value: str, start: int, *, keep_fixed: bool = True) -> list[str | None]:
    """Per position, the characters a replacement is drawn from (None: kept as it is): its
    class (digit, lower, upper); letters a-f (A-F) where the replaced part is hex, digits 2-7
    where it is base32 (AWS key ids)."""
    replaced = set(c for c in value[start:] if not is_placeholder_special(c))
    lower, upper, digits = string.ascii_lowercase, string.ascii_uppercase, string.digits
    if replaced <= _LOWER_HEX:
        lower = "abcdef"
    elif replaced <= _UPPER_HEX:
        upper = "ABCDEF"
    if replaced <= _BASE32:
        digits = "234567"
    kept = _kept_positions(value) if keep_fixed else set()
    alphabets: list[str | None] = []
    for index, character in enumerate(value):
        if index < start or index in kept or is_placeholder_special(character):
            alphabets.append(None)
        elif character.isdigit():
            alphabets.append(digits)
        elif character.islower():
            alphabets.append(lower)
        else:
            alphabets.append(upper)
    return alphabets


def _kept_positions(value: str) -> set[int]:
    kept: set[int] = set()
    for infix in _KEPT_INFIXES:
        at = value.find(infix)
        while at != -1:
            kept.update(range(at, at + len(infix)))
            at = value.find(infix, at + 1)
    for prefix, suffix in _KEPT_SUFFIXES:
        if value.startswith(prefix) and value.endswith(suffix):
            kept.update(range(len(value) - len(suffix), len(value)))
    return kept


def _draw(value: str, alphabets: list[str | None], rng: random.Random) -> str:
    return "".join(
        character if alphabet is None else rng.choice(alphabet)
        for character, alphabet in zip(value, alphabets, strict=True)
    )


def shaped_placeholder(value: str, rng: random.Random, *, avoid: Collection[str] = ()) -> str:
    """A placeholder for ``value``: as long, its characters outside ``[A-Za-z0-9]`` in place, a
    known prefix (or a JWT's header and payload) kept, each other character drawn from its class
    by ``rng``; never ``value`` and never one of ``avoid`` (other secrets' placeholders).

    PlaceholderError (never naming the value) when no such placeholder exists: a value with no
    letter or digit to replace.
    """
    # Then, when what is kept leaves nothing to replace (a value that is only a prefix or an
    # infix), nothing is kept but the specials.
    for start, keep_fixed in ((_kept_prefix(value), True), (0, False)):
        alphabets = _alphabets(value, start, keep_fixed=keep_fixed)
        if all(alphabet is None for alphabet in alphabets):
            continue
        for _ in range(_DRAWS):
            candidate = _draw(value, alphabets, rng)
            if candidate != value and candidate not in avoid:
                return candidate
    raise PlaceholderError(
        f"no placeholder of the same shape differs from this value ({len(value)} characters):"
        " it needs letters or digits to replace"
    )
