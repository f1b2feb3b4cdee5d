"""inject_secrets on the contract: ``NAME=HOST[,HOST...]`` written back parses to the same
request, every malformed entry gives a typed error naming the option; the injection descriptor
round-trips, and whatever bytes it holds give a payload or an InjectionDataError that quotes
neither a value, a placeholder, the CA key nor the document."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trio_sandbox.contract import (
    INJECT_FD_MAX_BYTES,
    INJECT_FD_OPTION,
    INJECT_SECRET_OPTION,
    ContractValueError,
    InjectedValue,
    InjectionDataError,
    InjectionPayload,
    InjectRequest,
    InjectRequestError,
    SandboxError,
    decode_injection,
    encode_injection,
    is_inject_name,
)

CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,56}", fullmatch=True)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
ports = st.integers(1, 65535)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "wildcard", "ipv4", "ipv6"]))
    if kind in ("name", "wildcard"):
        host = ".".join(draw(st.lists(labels, min_size=2, max_size=4)))
        host = f"*.{host}" if kind == "wildcard" else host
    elif kind == "ipv4":
        host = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    else:
        host = "[" + ":".join(f"{draw(st.integers(0, 0xFFFF)):x}" for _ in range(8)) + "]"
    if draw(st.booleans()):
        host = f"{host}:{draw(ports)}"
    return host


requests = st.builds(
    InjectRequest,
    names,
    st.lists(hosts(), min_size=1, max_size=5, unique_by=str.lower).map(tuple),
)


@given(requests)
def test_request_round_trip(request: InjectRequest) -> None:
    text = request.format()
    assert InjectRequest.parse(text) == request
    assert InjectRequest.parse(text).format() == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("GITHUB_TOKEN", "expected NAME=HOST"),
        ("=api.github.com", "NAME is a variable name"),
        ("1TOKEN=api.github.com", "NAME is a variable name"),
        ("TOK-EN=api.github.com", "NAME is a variable name"),
        ("T" * 58 + "=api.github.com", "57 characters at most"),
        ("TOKEN=", "names no host"),
        ("TOKEN=api.github.com,", "an empty host"),
        ("TOKEN=,api.github.com", "an empty host"),
        ("TOKEN=https://api.github.com", "not a host"),
        ("TOKEN=api.github.com/repos", "not a host"),
        ("TOKEN=user@api.github.com", "not a host"),
        ("TOKEN=api.github.com=x", "not a host"),
        ("TOKEN=api .github.com", "visible ASCII"),
        ("TOKEN=ápi.github.com", "visible ASCII"),
        ("TOKEN=api.github.com,API.github.com", "twice"),
    ],
)
def test_request_refused(text: str, reason: str) -> None:
    with pytest.raises(InjectRequestError) as caught:
        InjectRequest.parse(text)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{INJECT_SECRET_OPTION} {text!r}: ")
    assert isinstance(caught.value, ContractValueError)
    assert isinstance(caught.value, SandboxError)
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args


@given(st.text(max_size=80))
def test_any_request_text_parses_or_is_refused(text: str) -> None:
    try:
        request = InjectRequest.parse(text, "inject_secrets")
    except InjectRequestError as error:
        where = error.where
    else:
        where = "inject_secrets"
        assert is_inject_name(request.name)
        assert InjectRequest.parse(request.format()) == request
    assert where == "inject_secrets"


def test_request_construction_checks_the_grammar() -> None:
    with pytest.raises(InjectRequestError):
        InjectRequest("TOKEN", ())
    with pytest.raises(InjectRequestError):
        InjectRequest("TOKEN", ("a,b",))


# --- the descriptor ---------------------------------------------------------------------------

visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)


@st.composite
def payloads(draw: st.DrawFn) -> InjectionPayload:
    chosen = draw(st.lists(names, max_size=4, unique=True))
    texts = draw(st.lists(visible, min_size=2 * len(chosen), max_size=2 * len(chosen), unique=True))
    secrets: list[InjectedValue] = []
    for index, name in enumerate(chosen):
        value = texts[2 * index]
        # A placeholder of the value's length, unlike every other text drawn.
        placeholder = (texts[2 * index + 1] * len(value))[: len(value)]
        assume(
            placeholder not in texts[0::2]
            and all(placeholder != secret.placeholder for secret in secrets)
        )
        secrets.append(InjectedValue(name, placeholder, value))
    return InjectionPayload(CERTIFICATE, KEY, tuple(secrets))


@given(payloads())
def test_payload_round_trip(payload: InjectionPayload) -> None:
    assert decode_injection(encode_injection(payload)) == payload


def test_repr_holds_no_value_nor_key() -> None:
    payload = InjectionPayload(CERTIFICATE, KEY, (InjectedValue("T", "pppppppp", "vvvvvvvv"),))
    assert "vvvvvvvv" not in repr(payload)
    assert "SECRETKEYMATERIAL" not in repr(payload)
    assert "pppppppp" in repr(payload)


def _document(**secrets: Any) -> dict[str, Any]:
    return {"version": 1, "ca": {"certificate": CERTIFICATE, "key": KEY}, "secrets": secrets}


VALUE = "real-value-0123456789"
PLACEHOLDER = "fake-value-9876543210"


def _encoded(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        (b"\xff" + VALUE.encode(), "", "not UTF-8"),
        (VALUE.encode(), "", "not JSON"),
        (b'{"secrets": {"T": {"value": "' + VALUE.encode(), "", "not JSON"),
        (b"[" * 100000, "", "not JSON"),
        (_encoded([VALUE]), "", "not an object"),
        (_encoded({**_document(), "extra": VALUE}), "", "exactly the keys"),
        (_encoded({**_document(), "version": 2}), "version", "expected 1"),
        (_encoded({**_document(), "version": True}), "version", "expected 1"),
        (_encoded({**_document(), "ca": {"certificate": VALUE}}), "ca", "exactly the keys"),
        (
            _encoded({**_document(), "ca": {"certificate": CERTIFICATE, "key": VALUE}}),
            "ca.key",
            "not a PEM private key",
        ),
        (
            _encoded({**_document(), "ca": {"certificate": VALUE, "key": KEY}}),
            "ca.certificate",
            "not a PEM certificate",
        ),
        (_encoded({**_document(), "secrets": [VALUE]}), "secrets", "not an object"),
        (
            _encoded(_document(**{"1T": {"value": VALUE, "placeholder": PLACEHOLDER}})),
            "secrets",
            "not a variable name",
        ),
        (_encoded(_document(T={"value": VALUE})), "secrets.T", "exactly the keys"),
        (
            _encoded(_document(T={"value": [VALUE], "placeholder": PLACEHOLDER})),
            "secrets.T.value",
            "not a string",
        ),
        (
            _encoded(_document(T={"value": VALUE, "placeholder": 3})),
            "secrets.T.placeholder",
            "not a string",
        ),
        (
            _encoded(_document(T={"value": VALUE + " x", "placeholder": PLACEHOLDER + " x"})),
            "secrets.T.value",
            "visible ASCII",
        ),
        (
            _encoded(_document(T={"value": VALUE + "\n", "placeholder": PLACEHOLDER + "x"})),
            "secrets.T.value",
            "visible ASCII",
        ),
        (
            _encoded(_document(T={"value": VALUE, "placeholder": PLACEHOLDER + "x"})),
            "secrets.T.placeholder",
            "22 characters for a value of 21",
        ),
        (
            _encoded(_document(T={"value": VALUE, "placeholder": VALUE})),
            "secrets.T.placeholder",
            "a real value",
        ),
        (
            _encoded(
                _document(
                    T={"value": VALUE, "placeholder": PLACEHOLDER},
                    U={"value": PLACEHOLDER.upper(), "placeholder": PLACEHOLDER},
                )
            ),
            "secrets.U.placeholder",
            "another secret's too",
        ),
        (
            b'{"version":1,"ca":{"certificate":"x","key":"y"},"secrets":{"T":{"value":"'
            + VALUE.encode()
            + b'","placeholder":"x"},"T":{}}}',
            "T",
            "a key given twice",
        ),
        (b" " * (INJECT_FD_MAX_BYTES + 1), "", "more than"),
    ],
)
def test_descriptor_refused_without_quoting(data: bytes, key: str, reason: str) -> None:
    with pytest.raises(InjectionDataError) as caught:
        decode_injection(data, f"{INJECT_FD_OPTION} 7")
    message = str(caught.value)
    assert caught.value.where == f"{INJECT_FD_OPTION} 7"
    assert caught.value.text == key
    assert reason in message
    for secret in (VALUE, PLACEHOLDER, "SECRETKEYMATERIAL", "real-value", "fake-value"):
        assert secret not in message
    assert message == f"{INJECT_FD_OPTION} 7{' ' + key if key else ''}: {caught.value.reason}"
    # No chained exception carries the document either.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@given(payloads(), st.data())
def test_any_damage_gives_a_payload_or_a_clear_error(
    payload: InjectionPayload, data: st.DataObject
) -> None:
    encoded = bytearray(encode_injection(payload))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            encoded[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del encoded[position:]
            if not encoded:
                break
        else:
            encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode_injection(bytes(encoded))
    except InjectionDataError as error:
        message = str(error)
        for secret in payload.secrets:
            # Long enough that a name or key can't match it by chance.
            if len(secret.value) >= 12:
                assert secret.value not in message
        assert "SECRETKEYMATERIAL" not in message


def test_encode_refuses_what_decode_would() -> None:
    bad = InjectionPayload(CERTIFICATE, KEY, (InjectedValue("T", "short", VALUE),))
    with pytest.raises(InjectionDataError) as caught:
        encode_injection(bad)
    assert VALUE not in str(caught.value)
