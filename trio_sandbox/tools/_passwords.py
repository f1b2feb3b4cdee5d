"""The ``generate_password`` tool."""

from __future__ import annotations

import secrets
import string
from typing import Any

from ..mcp import McpServer, RequestContext, Tool
from ..redact import MIN_KNOWN_SECRET_LENGTH
from ._limits import ToolLimits
from ._schema import object_schema

DEFAULT_LENGTH = 15  # the original tool server's default
# The proxy redacts a generated password wherever it appears, which it can do only for values
# this long (a shorter one would hide ordinary text): shorter passwords are refused, not made.
MIN_LENGTH = MIN_KNOWN_SECRET_LENGTH
# Symbols that need no quoting in most shells, URLs' userinfo aside, and config formats.
SYMBOLS = "!@#$%^&*()-_=+[]{}:,.?~"


def generate_password(length: int = DEFAULT_LENGTH, *, no_symbols: bool = False) -> str:
    """A password from ``secrets``, with at least one character of each class."""
    if length < MIN_LENGTH:
        raise ValueError(
            f"length {length} is below the minimum of {MIN_LENGTH}: a shorter password could"
            " not be kept from the model"
        )
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    if not no_symbols:
        classes.append(SYMBOLS)
    alphabet = "".join(classes)
    while True:
        password = _uniform_choices(alphabet, length)
        if all(any(c in cls for c in password) for cls in classes):
            return password


def _uniform_choices(alphabet: str, count: int) -> str:
    """``count`` characters of ``alphabet`` (at most 256), each uniformly at random: what
    ``secrets.choice`` gives, from one read of the system's generator instead of one each.
    A byte at or above the largest multiple of the alphabet's size is drawn again (a plain
    modulo would favour the first characters)."""
    size = len(alphabet)
    accepted_below = 256 - 256 % size
    chosen: list[str] = []
    while len(chosen) < count:
        for byte in secrets.token_bytes(count - len(chosen) + 8):
            if byte < accepted_below:
                chosen.append(alphabet[byte % size])
                if len(chosen) == count:
                    break
    return "".join(chosen)


def password_tool(limits: ToolLimits) -> Tool:
    return Tool(
        name="generate_password",
        description=(
            "Generate a random password with a cryptographic generator: letters, digits and"
            f" (unless no_symbols) the symbols {SYMBOLS}, at least one of each kind."
        ),
        input_schema=object_schema(
            {
                "length": {
                    "type": "integer",
                    "minimum": MIN_LENGTH,
                    "maximum": limits.max_password_length,
                    "description": (
                        f"Number of characters (default {DEFAULT_LENGTH}, at least {MIN_LENGTH}:"
                        " shorter passwords could not be redacted)."
                    ),
                },
                "no_symbols": {
                    "type": "boolean",
                    "description": "Only letters and digits (default false).",
                },
            }
        ),
        annotations={"readOnlyHint": True, "idempotentHint": False},
    )


def register_password_tool(server: McpServer, *, limits: ToolLimits) -> None:
    async def handler(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return generate_password(
            arguments.get("length", DEFAULT_LENGTH), no_symbols=arguments.get("no_symbols", False)
        )

    server.add_tool(password_tool(limits), handler)
