"""Bounded capture of command output: the tail is kept, and the dropped head is counted."""

from __future__ import annotations

import re

import attrs

# Terminal control sequences (CSI, e.g. colours and cursor moves; OSC, e.g. window titles and
# hyperlinks; other two-byte escapes): dropped, as a terminal would not show them either.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Every other control character but tab and newline (a lone CR too: it would hide what came
# before it on a terminal), and the bidirectional overrides that reorder what a reader sees.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(data: bytes) -> str:
    """Command output as text a reader (or a terminal showing it) can trust: invalid UTF-8
    becomes U+FFFD, escape sequences are dropped, other control characters (NUL included) are
    shown as ``\\xNN``."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return _CONTROL.sub(_escape, _ESCAPE_SEQUENCE.sub("", text))


@attrs.define(eq=False)
class TailBuffer:
    """The last ``limit`` bytes fed to it, and how many bytes before them were dropped."""

    limit: int
    _data: bytearray = attrs.field(factory=bytearray)
    dropped_bytes: int = 0

    def feed(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess > 0:
            # Deleting from the front of a bytearray is cheap in CPython (it keeps an offset).
            del self._data[:excess]
            self.dropped_bytes += excess

    @property
    def total_bytes(self) -> int:
        return self.dropped_bytes + len(self._data)

    @property
    def kept(self) -> bytes:
        return bytes(self._data)

    def render(self) -> str:
        """The kept output as text, preceded by a note when the head was dropped."""
        text = clean_text(bytes(self._data))
        if self.dropped_bytes == 0:
            return text
        return (
            f"[output truncated: the first {self.dropped_bytes} bytes were dropped;"
            f" showing the last {len(self._data)} of {self.total_bytes} bytes]\n{text}"
        )
