"""Sizes in bytes, as the contract writes them: ``512M``, ``2G``, ``1.5GiB``, ``1048576``.

Binary units (K, M, G, T are powers of 1024), case-insensitive, an optional ``B`` or ``iB``,
space around the number allowed; ASCII digits only. :func:`format_size` writes the one
canonical form of a size (the largest unit that divides it, else bytes), which parses back to
the same number.
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import LimitError

_SIZE = re.compile(r"\s*(\d+)(?:\.(\d{1,30}))?\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE | re.ASCII)
_UNITS: Final = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
# The largest size any kernel interface here takes (a signed 64-bit count of bytes).
MAX_SIZE: Final = 2**63 - 1
_TOO_LARGE: Final = f"must be at most {MAX_SIZE} bytes (8 EiB)"


def parse_size(text: str, where: str) -> int:
    """The number of bytes ``text`` says (at least 1); LimitError naming ``where`` otherwise.
    A fraction of a byte is dropped (``1.5K`` is 1536, ``0.5`` is refused as 0)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise LimitError(where, text, "expected a size such as 512M or 2G")
    whole, fraction, unit = match[1].lstrip("0") or "0", match[2] or "", match[3].lower()
    if len(whole) > 19:  # int() of a long text is slow (and refused past 4300 digits)
        raise LimitError(where, text, f"must be at most {MAX_SIZE} bytes (8 EiB)")
    # Exact: the decimal number as a whole number of 10**-digits units, times the unit.
    size: int = int(whole + fraction) * _UNITS[unit] // 10 ** len(fraction)
    if size <= 0:
        raise LimitError(where, text, "must be more than 0")
    if size > MAX_SIZE:
        raise LimitError(where, text, _TOO_LARGE)
    return size


def format_size(size: int) -> str:
    """The canonical text of ``size`` bytes: ``2G``, ``1536M``, ``4097``."""
    for unit, factor in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
