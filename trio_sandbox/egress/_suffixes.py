"""Public suffixes, so that a wildcard rule cannot cover everything registered under one.

The ICANN section of the Public Suffix List is read from the system copy that Debian's
``publicsuffix`` package installs (the one libpsl and curl use) when it is there; otherwise a
short built-in list of the common two-label suffixes stands in. The private section (``github.io``,
``githubusercontent.com``, ...) is not used: wildcards under those name one company's hosts and
are legitimate rules.
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
    def parse(cls, lines: Iterable[str]) -> SuffixList:
        plain: set[str] = set()
        wildcard_parents: set[str] = set()
        exceptions: set[str] = set()
        in_icann = False
        for raw in lines:
            line = raw.strip()
            if line.startswith(_BEGIN_ICANN):
                in_icann = True
            elif line.startswith(_END_ICANN):
                in_icann = False
            if not in_icann or not line or line.startswith("//"):
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
