"""The sandbox contract's CA block (DESIGN.md §2 step 3): printing it and reading it back.

The tool server prints, after its socket is bound::

    ---BEGIN STAKPAK SERVER CA---
    <server CA PEM>
    ---END STAKPAK SERVER CA---
    MCP server started at https://0.0.0.0:8080/mcp

Other lines may come before and after; every line is trimmed before it is looked at.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable

import attrs
from cryptography import x509

from ..contract import CA_BLOCK_BEGIN, CA_BLOCK_END, STARTED_LINE_PREFIX
from ._errors import CaBlockError

_PEM_CERTIFICATE_BEGIN = "-----BEGIN CERTIFICATE-----"


@attrs.frozen
class CaBlock:
    """The server CA read from a CA block, and the announced URL when it was waited for."""

    ca_pem: str
    server_url: str | None = None


def format_ca_block(ca_pem: str, url: str) -> str:
    """The exact text the tool server prints: the block, then the started line."""
    return f"{CA_BLOCK_BEGIN}\n{ca_pem.strip()}\n{CA_BLOCK_END}\n{STARTED_LINE_PREFIX}{url}\n"


def _validated_pem(pem_lines: list[str]) -> str:
    if not pem_lines:
        raise CaBlockError("the server CA block is empty: no certificate between the markers")
    for line in pem_lines:
        if line.startswith("-----BEGIN ") and line != _PEM_CERTIFICATE_BEGIN:
            raise CaBlockError(
                f"the server CA block holds something other than a certificate: {line}"
            )
    pem = "\n".join(pem_lines) + "\n"
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError as error:
        raise CaBlockError(
            f"the server CA block is not a PEM X.509 certificate ({error})"
        ) from None
    if not certificates:
        raise CaBlockError("the server CA block holds no certificate")
    return pem


class _State(enum.Enum):
    BEFORE_BLOCK = enum.auto()
    IN_BLOCK = enum.auto()
    AFTER_BLOCK = enum.auto()


class CaBlockParser:
    """Feed lines one at a time; ``feed_line`` returns the block when its END marker arrives.

    Lines before BEGIN are ignored, and so are lines after END, except that the first
    ``MCP server started at <url>`` line sets ``server_url``.
    """

    def __init__(self) -> None:
        self._state = _State.BEFORE_BLOCK
        self._pem_lines: list[str] = []
        self.server_url: str | None = None

    @property
    def in_block(self) -> bool:
        return self._state is _State.IN_BLOCK

    @property
    def block_seen(self) -> bool:
        return self._state is _State.AFTER_BLOCK

    def feed_line(self, line: str) -> CaBlock | None:
        line = line.strip()
        if self._state is _State.BEFORE_BLOCK:
            if line == CA_BLOCK_BEGIN:
                self._state = _State.IN_BLOCK
            return None
        if self._state is _State.IN_BLOCK:
            if line == CA_BLOCK_BEGIN:
                raise CaBlockError("a second BEGIN marker came inside the server CA block")
            if line == CA_BLOCK_END:
                pem = _validated_pem(self._pem_lines)
                self._state = _State.AFTER_BLOCK
                self._pem_lines = []
                return CaBlock(ca_pem=pem)
            if line:
                self._pem_lines.append(line)
            return None
        if self.server_url is None and line.startswith(STARTED_LINE_PREFIX):
            self.server_url = line.removeprefix(STARTED_LINE_PREFIX).strip() or None
        return None


async def read_ca_block(lines: AsyncIterable[str], *, wait_for_server_url: bool = False) -> CaBlock:
    """Read ``lines`` until the CA block ends (or, if asked, until the started line too).

    Pass an async iterator to keep reading the rest of the stream afterwards: this stops
    consuming right after the line that completed the block. Raises ``CaBlockError`` when
    the lines run out first.
    """
    parser = CaBlockParser()
    block: CaBlock | None = None
    async for line in lines:
        completed = parser.feed_line(line)
        if completed is not None:
            block = completed
            if not wait_for_server_url:
                return block
        elif block is not None and parser.server_url is not None:
            return attrs.evolve(block, server_url=parser.server_url)
    if block is not None:
        raise CaBlockError(
            "the output ended after the server CA block but before "
            f"the '{STARTED_LINE_PREFIX.strip()} <url>' line"
        )
    if parser.in_block:
        raise CaBlockError(f"the output ended inside the server CA block (no {CA_BLOCK_END})")
    raise CaBlockError(f"the output ended before the server CA block began (no {CA_BLOCK_BEGIN})")
