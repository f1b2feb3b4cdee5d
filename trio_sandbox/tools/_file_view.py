"""The ``view`` tool's work: numbered lines of a file, listings, trees, globs and grep."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..mcp import ToolError
from ._file_common import (
    BINARY_SNIFF_BYTES,
    SKIPPED_DIRS,
    compile_pattern,
    missing_path,
    numbered_line,
    os_error,
    read_text,
    split_lines,
)
from ._limits import ToolLimits

# --- view: files ------------------------------------------------------------------------------


def view_file(
    path: Path, *, view_range: list[int] | None, grep: str | None, limits: ToolLimits
) -> str:
    lines = split_lines(read_text(path, limits))
    total = len(lines)
    start, end = 1, total
    notes: list[str] = []
    if view_range is not None:
        start, end = view_range
        if start > total:
            raise ToolError(
                f"view_range start {start} is past the end of {path}, which has {total} lines"
            )
        if end == -1:
            end = total
        elif end < start:
            raise ToolError(
                f"view_range end {end} is before its start {start};"
                " use -1 as end to read to the end"
            )
        elif end > total:
            notes.append(f"[the file has only {total} lines; showing up to line {total}]")
            end = total
    if total == 0:
        return f"{path}: empty file (0 lines)"
    if grep is not None:
        regex = compile_pattern(grep)
        numbered = [(n, line) for n in range(start, end + 1) if regex.search(line := lines[n - 1])]
        shown = numbered[: limits.grep_max_matches]
        body = [numbered_line(n, line, limits) for n, line in shown]
        head = f"{path}: {len(numbered)} of lines {start}-{end} match /{grep}/"
        if len(shown) < len(numbered):
            notes.append(
                f"[showing the first {len(shown)} matches; narrow the regex or view_range]"
            )
        return "\n".join([head, *body, *notes])
    shown_end = min(end, start + limits.view_max_lines - 1)
    body = [numbered_line(n, lines[n - 1], limits) for n in range(start, shown_end + 1)]
    if shown_end < end:
        notes.append(
            f"[showing {limits.view_max_lines} lines; ask for view_range"
            f" [{shown_end + 1}, {end}] to see the rest]"
        )
    head = f"{path}: lines {start}-{shown_end} of {total}"
    return "\n".join([head, *body, *notes])


# --- view: directories ------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over relative POSIX paths: ``*`` and ``?`` stay within one component, ``**``
    spans any number of them, ``[...]`` is a character class. A pattern without ``/`` matches
    the file name at any depth (``*.py``), like .gitignore."""
    if "/" not in pattern:
        pattern = "**/" + pattern
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (close := pattern.find("]", i + 2)) != -1:
            inner = pattern[i + 1 : close]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ToolError(f"invalid glob {pattern!r}: {exc}") from None


def _walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every file under root, sorted, not following symlinked
    directories nor entering version-control directories."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_DIRS)
        base = Path(directory)
        for name in sorted(filenames):
            full = base / name
            yield full.relative_to(root).as_posix(), full


def _entry_label(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        try:
            return f"{entry.name}@ -> {os.readlink(entry.path)}"
        except OSError:
            return f"{entry.name}@"
    return entry.name + "/" if entry.is_dir() else entry.name


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as scan:
        return sorted(scan, key=lambda entry: entry.name)


def _tree(root: Path, limits: ToolLimits) -> str:
    lines = [f"{root}/"]
    truncated = False

    def visit(directory: Path, prefix: str) -> None:
        nonlocal truncated
        try:
            entries = _sorted_entries(directory)
        except OSError as exc:
            lines.append(f"{prefix}└── [unreadable: {exc.strerror}]")
            return
        for index, entry in enumerate(entries):
            if len(lines) > limits.listing_max_entries:
                truncated = True
                return
            last = index == len(entries) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_entry_label(entry)}")
            if entry.is_dir(follow_symlinks=False) and entry.name not in SKIPPED_DIRS:
                visit(Path(entry.path), prefix + ("    " if last else "│   "))

    visit(root, "")
    if truncated:
        lines.append(
            f"[tree stopped after {limits.listing_max_entries} entries; view a subdirectory]"
        )
    return "\n".join(lines)


def view_directory(
    root: Path, *, grep: str | None, glob: str | None, tree: bool, limits: ToolLimits
) -> str:
    matcher = glob_regex(glob) if glob is not None else None
    if grep is not None:
        return _grep_directory(root, compile_pattern(grep), matcher, limits)
    if matcher is not None:
        found: list[str] = []
        for relative, _ in _walk_files(root):
            if matcher.fullmatch(relative):
                found.append(relative)
                if len(found) >= limits.listing_max_entries:
                    found.append(
                        f"[stopped after {limits.listing_max_entries} files; narrow the glob]"
                    )
                    break
        head = (
            f"{root}/: {len(found)} files match {glob!r}"
            if found
            else f"{root}/: no files match {glob!r}"
        )
        return "\n".join([head, *found])
    if tree:
        return _tree(root, limits)
    try:
        entries = _sorted_entries(root)
    except OSError as exc:
        raise os_error("list", root, exc) from None
    labels = [_entry_label(entry) for entry in entries[: limits.listing_max_entries]]
    if len(entries) > len(labels):
        labels.append(f"[{len(entries) - len(labels)} more entries not shown; use glob to filter]")
    head = f"{root}/: {len(entries)} entries" if entries else f"{root}/: empty directory"
    return "\n".join([head, *labels])


def _grep_directory(
    root: Path, regex: re.Pattern[str], matcher: re.Pattern[str] | None, limits: ToolLimits
) -> str:
    hits: list[str] = []
    for relative, full in _walk_files(root):
        if matcher is not None and not matcher.fullmatch(relative):
            continue
        try:
            if full.is_symlink() or full.stat().st_size > limits.grep_max_file_bytes:
                continue
            data = full.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            continue
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(split_lines(text), start=1):
            if regex.search(line):
                hits.append(f"{relative}:{numbered_line(number, line, limits).lstrip()}")
                if len(hits) >= limits.grep_max_matches:
                    hits.append(
                        f"[stopped after {limits.grep_max_matches} matches; narrow the search]"
                    )
                    return "\n".join([f"{root}/: matches for /{regex.pattern}/", *hits])
    if not hits:
        return f"{root}/: no lines match /{regex.pattern}/"
    return "\n".join([f"{root}/: {len(hits)} matching lines for /{regex.pattern}/", *hits])


def view_path(
    path: Path,
    *,
    view_range: list[int] | None,
    grep: str | None,
    glob: str | None,
    tree: bool,
    limits: ToolLimits,
) -> str:
    if not os.path.lexists(path):
        raise missing_path(path)
    if path.is_dir():
        if view_range is not None:
            raise ToolError(f"{path} is a directory; view_range applies to files only")
        return view_directory(path, grep=grep, glob=glob, tree=tree, limits=limits)
    if not path.exists():
        raise ToolError(f"{path} is a broken symbolic link (to {os.readlink(path)})")
    if not path.is_file():
        raise ToolError(f"{path} is neither a regular file nor a directory")
    return view_file(path, view_range=view_range, grep=grep, limits=limits)
