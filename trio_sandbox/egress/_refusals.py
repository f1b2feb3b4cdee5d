"""What the sandbox may ask its proxy: the refusals since a moment, so a result can name them.

The tool server asks after each command (``GET /.well-known/trio-sandbox/egress-refusals?since=T``
in origin form, which a proxy otherwise refuses), and ends the command's result with one
``[network] refused: ...`` line per refusal: an agent that only sees "curl: (56) CONNECT tunnel
failed, response 403" learns which setting would allow the destination. The endpoint is served on
the proxy's own port inside the sandbox and reveals nothing but that sandbox's own refusals.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Sequence
from typing import Final

import trio

from ._errors import RefusalQueryError
from ._http_head import write_head

REFUSALS_PATH: Final = "/.well-known/trio-sandbox/egress-refusals"
_MAX_ANSWER_BYTES: Final = 1 << 16


def refusals_target(since: float) -> str:
    """The request target that asks for the refusals at or after ``since``."""
    return f"{REFUSALS_PATH}?{urllib.parse.urlencode({'since': repr(since)})}"


def parse_refusals_query(target: str) -> float:
    """The ``since`` of ``REFUSALS_PATH?since=T``."""
    _path, _, query = target.partition("?")
    values = urllib.parse.parse_qs(query).get("since", [])
    try:
        since = float(values[0]) if len(values) == 1 else math.nan
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        raise RefusalQueryError("expected ?since=<seconds since the epoch>")
    return since


def refusals_answer(lines: Sequence[str]) -> bytes:
    body = "".join(f"{line}\n" for line in lines).encode("utf-8", "backslashreplace")
    fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return write_head("HTTP/1.1 200 OK", fields) + body


async def ask_refusals(host: str, port: int, since: float) -> list[str]:
    """The proxy's refusal lines since ``since`` (``time.time()``); raises OSError when the
    proxy cannot be asked (the caller bounds the time)."""
    request = (
        f"GET {refusals_target(since)} HTTP/1.1\r\nHost: egress-proxy\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    answer = b""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        while len(answer) <= _MAX_ANSWER_BYTES and (chunk := await stream.receive_some()):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 200 "):
        raise OSError(f"the egress proxy answered {status_line[:80]!r}")
    return body.decode("utf-8", "replace").splitlines()
