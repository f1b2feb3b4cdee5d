"""The contract's CA block: exact output, and the incremental parser the host uses."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.tls import (
    CaBlock,
    CaBlockError,
    CaBlockParser,
    CertificateChain,
    MtlsIdentity,
    format_ca_block,
    read_ca_block,
)

CA_PEM = MtlsIdentity.generate_server().ca_cert_pem()
OTHER_PEM = CertificateChain.generate().ca_cert_pem()
URL = "https://0.0.0.0:8080/mcp"

# Characters that str.splitlines() treats as line ends: a noise line must not contain them.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
MARKERS = ("---BEGIN STAKPAK SERVER CA---", "---END STAKPAK SERVER CA---")

noise_lines = st.lists(
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters=LINE_BREAKS), max_size=40
    ).filter(lambda line: not any(marker in line for marker in MARKERS)),
    max_size=8,
)
padding = st.text(" \t", max_size=3)
urls = st.builds(
    "https://{}:{}/mcp".format,
    st.sampled_from(["0.0.0.0", "127.0.0.1", "localhost", "[::1]"]),
    st.integers(1, 65535),
)


def _feed_all(parser: CaBlockParser, lines: list[str]) -> list[CaBlock]:
    return [block for line in lines if (block := parser.feed_line(line)) is not None]


def test_format_matches_the_contract_byte_for_byte() -> None:
    pem_body = CA_PEM.rstrip("\n")
    expected = (
        "---BEGIN STAKPAK SERVER CA---\n"
        f"{pem_body}\n"
        "---END STAKPAK SERVER CA---\n"
        "MCP server started at https://0.0.0.0:8080/mcp\n"
    )
    assert format_ca_block(CA_PEM, URL) == expected
    # A PEM without its final newline formats the same way: no blank line, no missing one.
    assert format_ca_block(pem_body, URL) == expected


def test_parser_returns_the_block_at_the_end_marker_then_picks_up_the_url() -> None:
    parser = CaBlockParser()
    lines = format_ca_block(CA_PEM, URL).splitlines()
    assert [parser.feed_line(line) for line in lines[:-2]] == [None] * (len(lines) - 2)
    assert parser.in_block
    assert parser.feed_line(lines[-2]) == CaBlock(ca_pem=CA_PEM)
    assert parser.block_seen
    assert parser.server_url is None
    assert parser.feed_line(lines[-1]) is None
    assert parser.server_url == URL
    # Only the first started line counts.
    parser.feed_line("MCP server started at https://elsewhere:1/mcp")
    assert parser.server_url == URL


@given(
    before=noise_lines,
    after=noise_lines,
    left=padding,
    right=padding,
    line_end=st.sampled_from(["\n", "\r\n"]),
    url=urls,
    pem=st.sampled_from([CA_PEM, OTHER_PEM]),
)
def test_round_trip_through_noise_whitespace_and_line_endings(
    before: list[str],
    after: list[str],
    left: str,
    right: str,
    line_end: str,
    url: str,
    pem: str,
) -> None:
    block_lines = [left + line + right for line in format_ca_block(pem, url).splitlines()]
    text = line_end.join([*before, *block_lines, *after]) + line_end
    parser = CaBlockParser()
    blocks = _feed_all(parser, text.splitlines(keepends=True))
    assert blocks == [CaBlock(ca_pem=pem)]
    assert parser.server_url == url


def test_blank_lines_inside_the_block_are_ignored() -> None:
    body = CA_PEM.splitlines()
    lines = [MARKERS[0], "", body[0], "   ", *body[1:], "", MARKERS[1]]
    assert _feed_all(CaBlockParser(), lines) == [CaBlock(ca_pem=CA_PEM)]


@pytest.mark.parametrize(
    ("inside", "message"),
    [
        ([], "empty"),
        (["", "  "], "empty"),
        (["not a certificate"], "not a PEM X.509 certificate"),
        (
            ["-----BEGIN CERTIFICATE-----", "bm90IGEgY2VydA==", "-----END CERTIFICATE-----"],
            "not a PEM X.509 certificate",
        ),
        (["-----BEGIN PRIVATE KEY-----", "AAAA", "-----END PRIVATE KEY-----"], "other than"),
        ([MARKERS[0]], "second BEGIN"),
    ],
    ids=["empty", "blank", "garbage", "bad-base64-der", "private-key", "nested-begin"],
)
def test_bad_blocks_raise_a_clear_error(inside: list[str], message: str) -> None:
    parser = CaBlockParser()
    with pytest.raises(CaBlockError, match=message):
        _feed_all(parser, ["noise", MARKERS[0], *inside, MARKERS[1], "MCP server started at x"])


def test_an_end_marker_before_any_begin_is_noise() -> None:
    parser = CaBlockParser()
    assert _feed_all(parser, [MARKERS[1], *format_ca_block(CA_PEM, URL).splitlines()]) == [
        CaBlock(ca_pem=CA_PEM)
    ]


async def _lines(*lines: str) -> AsyncGenerator[str]:
    for line in lines:
        await trio.lowlevel.checkpoint()
        yield line


async def test_read_ca_block_from_a_channel_leaves_the_rest_unread() -> None:
    send, receive = trio.open_memory_channel[str](100)
    for line in ["booting", *format_ca_block(CA_PEM, URL).splitlines(), "tool log 1"]:
        send.send_nowait(line + "\n")
    send.close()
    async with receive:
        assert await read_ca_block(receive) == CaBlock(ca_pem=CA_PEM)
        # The caller keeps draining the same stream (the contract requires it).
        assert [line async for line in receive] == [
            f"MCP server started at {URL}\n",
            "tool log 1\n",
        ]


async def test_read_ca_block_can_wait_for_the_server_url() -> None:
    async with aclosing(_lines("x", *format_ca_block(CA_PEM, URL).splitlines(), "more")) as lines:
        block = await read_ca_block(lines, wait_for_server_url=True)
        assert [line async for line in lines] == ["more"]
    assert block == CaBlock(ca_pem=CA_PEM, server_url=URL)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "before the server CA block began"),
        (["starting", "still starting"], "before the server CA block began"),
        ([MARKERS[0], *CA_PEM.splitlines()[:3]], "inside the server CA block"),
        ([MARKERS[0], *CA_PEM.splitlines()], "inside the server CA block"),
    ],
    ids=["nothing", "noise-only", "truncated-pem", "no-end-marker"],
)
async def test_read_ca_block_raises_on_eof(lines: list[str], message: str) -> None:
    with pytest.raises(CaBlockError, match=message):
        await read_ca_block(_lines(*lines))


async def test_read_ca_block_waiting_for_the_url_raises_on_eof_after_the_block() -> None:
    lines = format_ca_block(CA_PEM, URL).splitlines()[:-1]
    with pytest.raises(CaBlockError, match="after the server CA block"):
        await read_ca_block(_lines(*lines), wait_for_server_url=True)
