"""Public suffixes, so that a wildcard rule cannot cover everything registered under one.

The ICANN section of the Public Suffix List is read from the system copy that Debian's
``publicsuffix`` package installs (the one libpsl and curl use) when it is there; otherwise a
short built-in list of the common two-label suffixes stands in. The private section (``github.io``,
``githubusercontent.com``, ...) is not used for allow rules: wildcards under those name one
company's hosts and are legitimate rules. It is for inject_secrets (:func:`private_suffixes`):
anyone can register a host under ``*.github.io`` or ``*.vercel.app``, and a secret scoped to
such a wildcard would go to all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs

SYSTEM_LIST: Final = Path("/usr/share/publicsuffix/public_suffix_list.dat")
_BEGIN_ICANN: Final = "// ===BEGIN ICANN DOMAINS==="
_END_ICANN: Final = "// ===END ICANN DOMAINS==="
_BEGIN_PRIVATE: Final = "// ===BEGIN PRIVATE DOMAINS==="
_END_PRIVATE: Final = "// ===END PRIVATE DOMAINS==="
# Used only without the system list: common suffixes of the private section (hosting where
# anyone registers a name; facts from the Public Suffix List, MPL 2.0).
FALLBACK_PRIVATE: Final = frozenset(
    {
        "github.io", "githubusercontent.com", "gitlab.io", "vercel.app", "netlify.app",
        "herokuapp.com", "pages.dev", "workers.dev", "appspot.com", "web.app",
        "firebaseapp.com", "azurewebsites.net", "cloudfront.net", "blogspot.com",
        "onrender.com", "fly.dev", "ngrok.io", "ngrok-free.app", "s3.amazonaws.com",
    }
)  # fmt: skip
# Used only without the system list: the two-label public suffixes that rules most often
# meet (facts from the Public Suffix List, https://publicsuffix.org/, MPL 2.0).
FALLBACK_SUFFIXES: Final = frozenset(
    f"{second}.{top}"
    for top, seconds in {
        "uk": "co org me ltd plc net ac gov sch nhs police",
        "au": "com net org edu gov asn id",
        "nz": "co org net ac govt geek school",
        "jp": "co ne or ac go ad ed gr lg",
        "kr": "co or ne re pe go ac",
        "cn": "com net org gov edu ac",
        "br": "com net org gov edu art blog",
        "in": "co net org firm gen ind ac edu gov res",
        "za": "co org net gov ac edu web",
        "hk": "com net org gov edu idv",
        "tw": "com net org gov edu idv",
        "sg": "com net org gov edu per",
        "il": "co org net ac gov muni",
        "mx": "com net org gob edu",
        "ar": "com net org gob edu",
        "tr": "com net org gov edu gen biz",
        "ua": "com net org gov edu in",
        "ru": "com net org msk spb",
        "my": "com net org gov edu name",
        "id": "co or ac go web my",
        "th": "co or ac go in net",
        "vn": "com net org gov edu",
        "eg": "com net org gov edu",
        "pk": "com net org gov edu",
    }.items()
    for second in seconds.split()
)


@attrs.frozen
class SuffixList:
    """Public suffix rules in A-label form: plain, ``*.`` wildcards, and ``!`` exceptions."""

    plain: frozenset[str]
    wildcard_parents: frozenset[str] = frozenset()
    exceptions: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, lines: Iterable[str], *, private: bool = False) -> SuffixList:
        """The ICANN section of the list (``private``: the private section)."""
        begin, end = (_BEGIN_PRIVATE, _END_PRIVATE) if private else (_BEGIN_ICANN, _END_ICANN)
        plain: set[str] = set()
        wildcard_parents: set[str] = set()
        exceptions: set[str] = set()
        in_section = False
        for raw in lines:
            line = raw.strip()
            if line.startswith(begin):
                in_section = True
            elif line.startswith(end):
                in_section = False
            if not in_section or not line or line.startswith("//"):
                continue
            rule = _a_label_form(line.split()[0])
            if rule is None:
                continue
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wildcard_parents.add(rule[2:])
            else:
                plain.add(rule)
        return cls(frozenset(plain), frozenset(wildcard_parents), frozenset(exceptions))

    def is_public_suffix(self, name: str) -> bool:
        if name in self.plain:
            return True
        parent = name.partition(".")[2]
        return parent in self.wildcard_parents and name not in self.exceptions

    def at_or_under(self, name: str) -> str | None:
        """The suffix of the list that ``name`` is or is under, if any."""
        labels = name.split(".")
        for index in range(len(labels)):
            if self.is_public_suffix(suffix := ".".join(labels[index:])):
                return suffix
        return None


def _a_label_form(rule: str) -> str | None:
    prefix = ""
    for marker in ("!", "*."):
        if rule.startswith(marker):
            prefix, rule = marker, rule[len(marker) :]
    try:
        return prefix + rule.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None  # a rule the stdlib IDNA codec cannot encode: no host can match it either


@functools.cache
def public_suffixes() -> SuffixList:
    """The list in force: the system's ICANN section if readable, else the built-in one."""
    try:
        with SYSTEM_LIST.open(encoding="utf-8") as lines:
            parsed = SuffixList.parse(lines)
    except OSError:
        return SuffixList(FALLBACK_SUFFIXES)
    return parsed if parsed.plain else SuffixList(FALLBACK_SUFFIXES)


@functools.cache
def private_suffixes() -> SuffixList:
    """The private section in force: the system list's if readable, else the built-in one."""
    try:
        with SYSTEM_LIST.open(encoding="utf-8") as lines:
            parsed = SuffixList.parse(lines, private=True)
    except OSError:
        return SuffixList(FALLBACK_PRIVATE)
    return parsed if parsed.plain else SuffixList(FALLBACK_PRIVATE)
