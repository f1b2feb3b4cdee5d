"""What the file tools share: resolving paths, reading text within limits, and their errors."""

from __future__ import annotations

import re
from pathlib import Path

from ..mcp import ToolError
from ._limits import ToolLimits

# Directories whose contents are noise for a model and can be huge; listed, never descended into.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
BINARY_SNIFF_BYTES = 8_192


def resolve_path(workdir: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else workdir / path


def split_lines(text: str) -> list[str]:
    """Lines as a model counts them: split on "\\n" only, a final newline ends the last line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def os_error(action: str, path: Path, exc: OSError) -> ToolError:
    return ToolError(f"cannot {action} {path}: {exc.strerror or exc}")


def missing_path(path: Path) -> ToolError:
    return ToolError(f"{path} does not exist")


def read_text(path: Path, limits: ToolLimits) -> str:
    """A file's exact text (no newline translation), or a ToolError a model can act on."""
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise ToolError(
                f"{path} is {size} bytes, more than the {limits.max_file_bytes}-byte limit;"
                " use run_command with head, tail, sed -n or grep to read parts of it"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise missing_path(path) from None
    except IsADirectoryError:
        raise ToolError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise os_error("read", path, exc) from None
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise ToolError(
            f"{path} is a binary file ({size} bytes); inspect it with run_command (file, xxd)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); treat it as binary"
            " and inspect it with run_command (file, iconv, xxd)"
        ) from None


def numbered_line(number: int, line: str, limits: ToolLimits) -> str:
    if len(line) > limits.view_max_line_chars:
        extra = len(line) - limits.view_max_line_chars
        line = f"{line[: limits.view_max_line_chars]}… [{extra} more characters]"
    return f"{number:6}\t{line}"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid grep regex {pattern!r}: {exc}") from None
