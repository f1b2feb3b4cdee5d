"""Responses from an intercepted host, attacked: a real HTTPS origin on 127.0.0.1 whose
``/reflect`` echoes the request as it arrived (the value in it, as an origin's error page or
debug endpoint would) in the encodings and framings a sandbox can make it choose. The client
must read placeholders only: never the value, in any spelling (compressed, %-encoded in a mix
of forms, JSON-escaped, as the Basic blob, in a chunk extension or a trailer).
"""

from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

import pytest

from tests.egress.intercept_harness import (
    MIXED_PLACEHOLDER,
    MIXED_VALUE,
    PLACEHOLDER,
    VALUE,
    Setup,
    exchange,
    intercepting,
    tls_through,
)
from trio_sandbox.egress import RefusalKind, Verdict


def spellings(value: str) -> list[bytes]:
    """``value`` as a response could carry it: raw, each special %-encoded or \\u-escaped."""
    special = [c for c in value if not c.isalnum()]
    forms = [value]
    for character in special:
        code = ord(character)
        forms += [
            form.replace(character, spelled)
            for form in list(forms)
            for spelled in (f"%{code:02X}", f"%{code:02x}", f"\\u{code:04x}", f"\\u{code:04X}")
        ]
    return [form.encode() for form in forms]


def assert_no_value(setup: Setup, answer: bytes) -> None:
    """No spelling of either value in ``answer`` (nor in it gunzipped), the log or events."""
    texts = [answer, repr(setup.proxy.lines()).encode(), repr(setup.proxy.log_lines).encode()]
    if (start := answer.find(b"\x1f\x8b")) >= 0:
        texts.append(gzip.decompress(answer[start:]))
    for value in (VALUE, MIXED_VALUE):
        blob = base64.b64encode(f"x:{value}".encode())
        for text in texts:
            assert blob not in text
            for form in spellings(value):
                assert form not in text, form


async def reflect(setup: Setup, options: str, *fields: str, target: str = "") -> bytes:
    tls = await tls_through(setup)
    head = "".join(f"{field}\r\n" for field in fields)
    return await exchange(
        tls,
        f"GET /reflect{target}?{options} HTTP/1.1\r\nHost: {setup.host}\r\n{head}"
        "Connection: close\r\n\r\n",
    )


async def test_a_client_asking_for_gzip_gets_the_echo_uncompressed_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        answer = await reflect(
            setup, "gzip", "Accept-Encoding: gzip, br", f"Authorization: Bearer {PLACEHOLDER}"
        )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Encoding" not in answer
    assert f"Authorization: Bearer {PLACEHOLDER}\n".encode() in answer
    assert b"Accept-Encoding: identity\n" in answer  # what the origin was asked
    assert_no_value(setup, answer)


@pytest.mark.parametrize("option", ["force-gzip", "te-gzip"])
async def test_an_origin_that_compresses_anyway_is_a_502_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    async with intercepting(tmp_path, monkeypatch) as setup:
        answer = await reflect(setup, option, f"Authorization: Bearer {PLACEHOLDER}")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"in coding gzip although the proxy asked for identity" in answer
    event = setup.proxy.events[-1]
    assert event.refusal is not None
    assert event.refusal.kind is RefusalKind.INTERCEPT_ORIGIN_ENCODED
    assert event.verdict is Verdict.FAILED
    assert_no_value(setup, answer)


@pytest.mark.parametrize(
    ("written", "options"),
    [
        *(
            (written, options)
            for written in (
                MIXED_PLACEHOLDER.replace("-", "%2d"),  # "-" encoded, "_" raw
                MIXED_PLACEHOLDER.replace("_", "%5F"),
                MIXED_PLACEHOLDER.replace("-", "%2D").replace("_", "%5f"),
            )
            for options in ("plain", "extension", "trailer")
        ),
        # The origin JSON-escapes what it echoes (as \u002d, \u005f).
        (MIXED_PLACEHOLDER, "escape"),
    ],
)
async def test_the_value_echoed_in_the_form_the_client_chose_comes_back_as_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, options: str
) -> None:
    async with intercepting(tmp_path, monkeypatch, mixed=True) as setup:
        answer = await reflect(setup, options, f"X-Api-Key: {written}", target=f"/{written}")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    if options != "escape":
        assert f"GET /reflect/{written}?{options} HTTP/1.1\n".encode() in answer
        assert f"X-Api-Key: {written}\n".encode() in answer
    else:
        escaped = re.sub(r"[^A-Za-z0-9]", lambda m: f"\\u{ord(m[0]):04x}", written)
        assert escaped.encode() in answer
    assert b"X-Echo" not in answer  # trailers are dropped
    assert_no_value(setup, answer)


async def test_basic_credentials_echoed_come_back_as_the_clients_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = base64.b64encode(f"x:{PLACEHOLDER}".encode()).decode()
    async with intercepting(tmp_path, monkeypatch) as setup:
        answer = await reflect(setup, "plain", f"Authorization: Basic {blob}")
    assert f"Authorization: Basic {blob}\n".encode() in answer
    assert_no_value(setup, answer)
