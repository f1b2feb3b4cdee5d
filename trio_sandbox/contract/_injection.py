"""inject_secrets as the contract carries it: names and hosts on the warden's command line, the
real values in a sealed memfd.

``NAME=HOST[,HOST...]`` (``--inject-secret``, repeatable): NAME is a variable name of at most 57
characters (so the redactor's rule ``inject:NAME`` stays within its 64), each HOST an entry in
the ``allow_domains`` syntax (a name, ``*.domain``, an IP literal, each with an optional
``:PORT``). This module checks the grammar only: the egress layer parses each HOST as the
destination rule it is, and says what is wrong with it.

``--inject-fd N``: JSON, ``{"version": 1, "ca": {"certificate": PEM, "key": PEM}, "secrets":
{NAME: {"value": .., "placeholder": ..}}}``, with the interception CA the host made for this
warden run. Nothing here ever puts a value (nor a key, nor the document) in an error or a repr:
errors name the descriptor and the key that is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Final

from ._errors import InjectionDataError, InjectRequestError
from ._names import INJECT_FD_MAX_BYTES, INJECT_FD_OPTION, INJECT_SECRET_OPTION

INJECT_NAME_PATTERN: Final = r"[A-Za-z_][A-Za-z0-9_]{0,56}"
_NAME = re.compile(INJECT_NAME_PATTERN, re.ASCII)
# A host entry as far as this grammar goes: visible ASCII without the separators.
_HOST = re.compile(r"[\x21-\x7e]+", re.ASCII)
_HOST_FORBIDDEN = ",=/?#@"
_HOST_MAX_CHARS: Final = 300
INJECTION_VERSION: Final = 1
# A value goes into request heads: one visible ASCII character after another, and long enough
# to be told from ordinary text.
_VISIBLE = re.compile(r"[\x21-\x7e]+", re.ASCII)
INJECT_VALUE_MIN_LENGTH: Final = 8
_PEM_BEGIN = "-----BEGIN "


def is_inject_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def is_placeholder_special(character: str) -> bool:
    """Whether a placeholder keeps ``character`` of its value in place: anything but an ASCII
    letter or digit (the host makes placeholders so, the egress proxy checks and matches them
    so)."""
    return not (character.isascii() and character.isalnum())


def is_header_text(text: str) -> bool:
    """Whether ``text`` can stand in a request head as it is: visible ASCII, not empty."""
    return _VISIBLE.fullmatch(text) is not None


def is_injectable_value(text: str) -> bool:
    """Whether ``text`` can be an injected value: header text of at least
    ``INJECT_VALUE_MIN_LENGTH`` characters."""
    return len(text) >= INJECT_VALUE_MIN_LENGTH and is_header_text(text)


@dataclass(frozen=True)
class InjectRequest:
    """One secret to inject: the host variable ``name``, replaced for ``hosts`` only."""

    name: str
    hosts: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_request(self.name, self.hosts, INJECT_SECRET_OPTION, self._text())

    @classmethod
    def parse(cls, text: str, where: str = INJECT_SECRET_OPTION) -> InjectRequest:
        """The request ``text`` says; InjectRequestError naming ``where`` and the text."""
        name, equals, hosts_text = text.partition("=")
        if not equals:
            raise InjectRequestError(where, text, "expected NAME=HOST[,HOST...]")
        hosts = tuple(hosts_text.split(",")) if hosts_text else ()
        _check_request(name, hosts, where, text)
        return cls(name, hosts)

    def format(self) -> str:
        """The canonical text, which :meth:`parse` reads back as the same request."""
        return self._text()

    def _text(self) -> str:
        return f"{self.name}={','.join(self.hosts)}"


def _check_request(name: str, hosts: tuple[str, ...], where: str, text: str) -> None:
    if not is_inject_name(name):
        raise InjectRequestError(
            where,
            text,
            "NAME is a variable name: a letter or '_', then letters, digits or '_'"
            " (57 characters at most)",
        )
    if not hosts:
        raise InjectRequestError(where, text, f"{name} names no host (NAME=HOST[,HOST...])")
    seen: set[str] = set()
    for host in hosts:
        if not host:
            raise InjectRequestError(where, text, "an empty host")
        if len(host) > _HOST_MAX_CHARS or not _HOST.fullmatch(host):
            raise InjectRequestError(
                where, text, "a host is visible ASCII: a name, *.domain or an IP, with :PORT"
            )
        if "://" in host or any(mark in host for mark in _HOST_FORBIDDEN):
            raise InjectRequestError(
                where,
                text,
                f"{host!r} is not a host: write the host as in allow_domains (no scheme, path,"
                " user or ',' / '=')",
            )
        if host.lower() in seen:
            raise InjectRequestError(where, text, f"lists {host!r} twice")
        seen.add(host.lower())


@dataclass(frozen=True)
class InjectedValue:
    """One secret's material: its real value (never in a repr) and the placeholder the
    sandbox sees instead (same length, different)."""

    name: str
    placeholder: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class InjectionPayload:
    """What the injection descriptor holds: the interception CA (certificate and key, PEM) and
    every secret's material, in the order given."""

    ca_certificate: str
    ca_key: str = field(repr=False)
    secrets: tuple[InjectedValue, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(secret.name for secret in self.secrets)


def encode_injection(payload: InjectionPayload) -> bytes:
    """The descriptor's bytes; InjectionDataError (naming keys only) if ``payload`` is one the
    warden would refuse."""
    _check_payload(payload, "encode_injection")
    document = {
        "version": INJECTION_VERSION,
        "ca": {"certificate": payload.ca_certificate, "key": payload.ca_key},
        "secrets": {
            secret.name: {"value": secret.value, "placeholder": secret.placeholder}
            for secret in payload.secrets
        },
    }
    data = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(data) > INJECT_FD_MAX_BYTES:
        raise InjectionDataError(
            "encode_injection", "secrets", f"more than {INJECT_FD_MAX_BYTES} bytes"
        )
    return data


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, item in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = item
    return result


def decode_injection(data: bytes, where: str = INJECT_FD_OPTION) -> InjectionPayload:
    """The payload ``data`` holds; InjectionDataError naming ``where`` and the wrong key (the
    document is never quoted: a parse error would carry a piece of a value)."""
    if len(data) > INJECT_FD_MAX_BYTES:
        raise InjectionDataError(where, "", f"more than {INJECT_FD_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InjectionDataError(where, "", "not UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_object)
    except _Duplicate as duplicate:
        key = duplicate.key if is_inject_name(duplicate.key) else "?"
        raise InjectionDataError(where, key, "a key given twice") from None
    except (ValueError, RecursionError):
        raise InjectionDataError(where, "", "not JSON") from None
    top = _object(document, where, "", ("version", "ca", "secrets"))
    version = top["version"]
    if type(version) is not int or version != INJECTION_VERSION:
        raise InjectionDataError(where, "version", f"expected {INJECTION_VERSION}")
    ca = _object(top["ca"], where, "ca", ("certificate", "key"))
    secrets_object = top["secrets"]
    if not isinstance(secrets_object, dict):
        raise InjectionDataError(where, "secrets", "not an object")
    secrets: list[InjectedValue] = []
    for name, entry in secrets_object.items():
        if not is_inject_name(name):
            raise InjectionDataError(where, "secrets", "a name that is not a variable name")
        fields = _object(entry, where, f"secrets.{name}", ("value", "placeholder"))
        value, placeholder = fields["value"], fields["placeholder"]
        if not isinstance(value, str):
            raise InjectionDataError(where, f"secrets.{name}.value", "not a string")
        if not isinstance(placeholder, str):
            raise InjectionDataError(where, f"secrets.{name}.placeholder", "not a string")
        secrets.append(InjectedValue(name, placeholder, value))
    ca_certificate, ca_key = ca["certificate"], ca["key"]
    if not isinstance(ca_certificate, str):
        raise InjectionDataError(where, "ca.certificate", "not a string")
    if not isinstance(ca_key, str):
        raise InjectionDataError(where, "ca.key", "not a string")
    payload = InjectionPayload(ca_certificate, ca_key, tuple(secrets))
    _check_payload(payload, where)
    return payload


def _object(item: object, where: str, key: str, keys: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(item, dict):
        raise InjectionDataError(where, key, "not an object")
    if set(item) != set(keys):
        raise InjectionDataError(where, key, f"expected exactly the keys {', '.join(keys)}")
    return item


def _check_payload(payload: InjectionPayload, where: str) -> None:
    if not payload.ca_certificate.startswith(_PEM_BEGIN + "CERTIFICATE-----"):
        raise InjectionDataError(where, "ca.certificate", "not a PEM certificate")
    if not (payload.ca_key.startswith(_PEM_BEGIN) and "PRIVATE KEY-----" in payload.ca_key):
        raise InjectionDataError(where, "ca.key", "not a PEM private key")
    names: set[str] = set()
    placeholders: set[str] = set()
    values = {secret.value for secret in payload.secrets}
    for secret in payload.secrets:
        key = f"secrets.{secret.name}"
        if not is_inject_name(secret.name):
            raise InjectionDataError(where, "secrets", "a name that is not a variable name")
        if secret.name in names:
            raise InjectionDataError(where, key, "a name given twice")
        names.add(secret.name)
        for part, text in (("value", secret.value), ("placeholder", secret.placeholder)):
            if not is_header_text(text):
                raise InjectionDataError(
                    where,
                    f"{key}.{part}",
                    f"empty or not visible ASCII only ({len(text)} characters)",
                )
        if len(secret.placeholder) != len(secret.value):
            raise InjectionDataError(
                where,
                f"{key}.placeholder",
                f"{len(secret.placeholder)} characters for a value of {len(secret.value)}",
            )
        if secret.placeholder in values:
            raise InjectionDataError(where, f"{key}.placeholder", "a real value")
        if secret.placeholder in placeholders:
            raise InjectionDataError(where, f"{key}.placeholder", "another secret's too")
        placeholders.add(secret.placeholder)


# What precedes the interception CA in the sandbox's trust bundle.
TRUST_BUNDLE_COMMENT: Final = b"# trio-sandbox egress interception CA (inject_secrets)\n"


def combined_bundle(system_pem: bytes, ca_pem: str | bytes) -> bytes:
    """The sandbox's trust bundle: its system bundle as it is, then the interception CA."""
    ca = ca_pem.encode("ascii") if isinstance(ca_pem, str) else ca_pem
    separator = b"" if not system_pem or system_pem.endswith(b"\n") else b"\n"
    return b"".join([system_pem, separator, TRUST_BUNDLE_COMMENT, ca])
