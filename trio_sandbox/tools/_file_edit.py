"""The editing tools' work: ``create``, ``str_replace`` and ``remove``, each all or nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..mcp import ToolError
from ._file_common import missing_path, numbered_line, os_error, read_text, split_lines
from ._limits import ToolLimits

# --- create, str_replace, remove --------------------------------------------------------------


def create_file(path: Path, text: str) -> str:
    if os.path.lexists(path):
        kind = "directory" if path.is_dir() else "file"
        raise ToolError(
            f"{path} already exists (a {kind}); edit it with str_replace or remove it first"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8", newline="") as file:
            file.write(text)
    except FileExistsError:
        raise ToolError(
            f"{path} already exists; edit it with str_replace or remove it first"
        ) from None
    except OSError as exc:
        raise os_error("create", path, exc) from None
    size = len(text.encode("utf-8"))
    return f"Created {path} ({size} bytes, {len(split_lines(text))} lines)"


def count_occurrences(text: str, needle: str) -> int:
    """Occurrences of needle in text, overlapping ones included: "aa" occurs twice in "aaa",
    which makes an edit of it ambiguous."""
    count = 0
    index = text.find(needle)
    while index != -1:
        count += 1
        index = text.find(needle, index + 1)
    return count


def write_text_atomically(path: Path, text: str) -> None:
    """Replace a file's content in one step (a crash leaves old or new, never half), keeping its
    mode and owner; a symbolic link keeps pointing to the edited file."""
    target = Path(os.path.realpath(path))
    info = target.stat()
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.chmod(temporary, stat.S_IMODE(info.st_mode))
        with contextlib.suppress(PermissionError):
            os.chown(temporary, info.st_uid, info.st_gid)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def str_replace(path: Path, old: str, new: str, *, replace_all: bool, limits: ToolLimits) -> str:
    if not os.path.lexists(path):
        raise missing_path(path)
    if path.is_dir():
        raise ToolError(f"{path} is a directory, not a file")
    text = read_text(path, limits)
    hint = (
        " (it must match exactly, including whitespace, indentation and line endings;"
        " view the file first)"
    )
    if replace_all:
        count = text.count(old)
        if count == 0:
            raise ToolError(f"old_str was not found in {path}{hint}")
        updated = text.replace(old, new)
    else:
        first = text.find(old)
        if first == -1:
            raise ToolError(f"old_str was not found in {path}{hint}")
        count = count_occurrences(text, old)
        if count > 1:
            raise ToolError(
                f"old_str matches {count} times in {path}; it must match exactly once."
                " Include more surrounding lines to make it unique, or set replace_all to true"
            )
        updated = text[:first] + new + text[first + len(old) :]
    try:
        write_text_atomically(path, updated)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    if replace_all:
        return f"Replaced {count} occurrence{'s' if count != 1 else ''} of old_str in {path}"
    # Show the edited region with line numbers so the model can check its edit without a view.
    first_line = text.count("\n", 0, first)
    last_line = first_line + new.count("\n")
    lines = split_lines(updated)
    window = range(max(0, first_line - 3), min(len(lines), last_line + 4))
    snippet = [numbered_line(n + 1, lines[n], limits) for n in window]
    return "\n".join([f"Replaced 1 occurrence of old_str in {path}; the edited region:", *snippet])


def remove_path(path: Path, *, recursive: bool, workdir: Path) -> str:
    if not os.path.lexists(path):
        raise missing_path(path)
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return f"Removed {path}"
        real = Path(os.path.realpath(path))
        if real == Path("/") or real == Path(os.path.realpath(workdir)):
            raise ToolError(
                f"refusing to remove {path}: it is the root or the server's working directory"
            )
        entries = os.listdir(path)
        if not entries:
            path.rmdir()
            return f"Removed empty directory {path}"
        if not recursive:
            raise ToolError(
                f"{path} is a directory with {len(entries)} entries; set recursive to true to"
                " remove it and everything in it"
            )
        shutil.rmtree(path)
    except OSError as exc:
        raise os_error("remove", path, exc) from None
    return f"Removed directory {path} and everything in it"
