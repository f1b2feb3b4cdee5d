"""The file tools: ``view``, ``create``, ``str_replace`` and ``remove``.

The blocking work runs in worker threads; each piece is a plain function, bounded by
:class:`ToolLimits`, so a huge directory or file costs at most a capped amount of work.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..mcp import McpServer, RequestContext, Tool, ToolError
from ._limits import ToolLimits
from ._schema import object_schema, path_property

T = TypeVar("T")

# Directories whose contents are noise for a model and can be huge; listed, never descended into.
_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
_BINARY_SNIFF_BYTES = 8_192


def resolve_path(workdir: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else workdir / path


def split_lines(text: str) -> list[str]:
    """Lines as a model counts them: split on "\\n" only, a final newline ends the last line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _os_error(action: str, path: Path, exc: OSError) -> ToolError:
    return ToolError(f"cannot {action} {path}: {exc.strerror or exc}")


def _missing(path: Path) -> ToolError:
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
        raise _missing(path) from None
    except IsADirectoryError:
        raise ToolError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise _os_error("read", path, exc) from None
    if b"\0" in data[:_BINARY_SNIFF_BYTES]:
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


def _numbered(number: int, line: str, limits: ToolLimits) -> str:
    if len(line) > limits.view_max_line_chars:
        extra = len(line) - limits.view_max_line_chars
        line = f"{line[: limits.view_max_line_chars]}… [{extra} more characters]"
    return f"{number:6}\t{line}"


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid grep regex {pattern!r}: {exc}") from None


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
        regex = _compile(grep)
        numbered = [(n, line) for n in range(start, end + 1) if regex.search(line := lines[n - 1])]
        shown = numbered[: limits.grep_max_matches]
        body = [_numbered(n, line, limits) for n, line in shown]
        head = f"{path}: {len(numbered)} of lines {start}-{end} match /{grep}/"
        if len(shown) < len(numbered):
            notes.append(
                f"[showing the first {len(shown)} matches; narrow the regex or view_range]"
            )
        return "\n".join([head, *body, *notes])
    shown_end = min(end, start + limits.view_max_lines - 1)
    body = [_numbered(n, lines[n - 1], limits) for n in range(start, shown_end + 1)]
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
        dirnames[:] = sorted(name for name in dirnames if name not in _SKIPPED_DIRS)
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
            if entry.is_dir(follow_symlinks=False) and entry.name not in _SKIPPED_DIRS:
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
        return _grep_directory(root, _compile(grep), matcher, limits)
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
        raise _os_error("list", root, exc) from None
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
        if b"\0" in data[:_BINARY_SNIFF_BYTES]:
            continue
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(split_lines(text), start=1):
            if regex.search(line):
                hits.append(f"{relative}:{_numbered(number, line, limits).lstrip()}")
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
        raise _missing(path)
    if path.is_dir():
        if view_range is not None:
            raise ToolError(f"{path} is a directory; view_range applies to files only")
        return view_directory(path, grep=grep, glob=glob, tree=tree, limits=limits)
    if not path.exists():
        raise ToolError(f"{path} is a broken symbolic link (to {os.readlink(path)})")
    if not path.is_file():
        raise ToolError(f"{path} is neither a regular file nor a directory")
    return view_file(path, view_range=view_range, grep=grep, limits=limits)


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
        raise _os_error("create", path, exc) from None
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
        raise _missing(path)
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
        raise _os_error("write", path, exc) from None
    if replace_all:
        return f"Replaced {count} occurrence{'s' if count != 1 else ''} of old_str in {path}"
    # Show the edited region with line numbers so the model can check its edit without a view.
    first_line = text.count("\n", 0, first)
    last_line = first_line + new.count("\n")
    lines = split_lines(updated)
    window = range(max(0, first_line - 3), min(len(lines), last_line + 4))
    snippet = [_numbered(n + 1, lines[n], limits) for n in window]
    return "\n".join([f"Replaced 1 occurrence of old_str in {path}; the edited region:", *snippet])


def remove_path(path: Path, *, recursive: bool, workdir: Path) -> str:
    if not os.path.lexists(path):
        raise _missing(path)
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
        raise _os_error("remove", path, exc) from None
    return f"Removed directory {path} and everything in it"


# --- tools ------------------------------------------------------------------------------------


def file_tools(limits: ToolLimits) -> dict[str, Tool]:
    return {
        "view": Tool(
            name="view",
            description=(
                "Show a text file with line numbers, or list a directory. For files: view_range"
                " [start, end] (1-based, inclusive, end -1 = to the end) and grep (a Python"
                " regex) select lines. For directories: a listing of entries (directories end"
                " with /), tree for a nested tree, glob to list matching files recursively"
                " ('*.py', 'src/**/*.ts'), grep to search the text files recursively (with glob"
                f" to filter them). At most {limits.view_max_lines} lines,"
                f" {limits.grep_max_matches} matches or {limits.listing_max_entries}"
                " entries per call."
            ),
            input_schema=object_schema(
                {
                    "path": path_property("The file or directory to view."),
                    "view_range": {
                        "type": "array",
                        "description": (
                            "[start_line, end_line], 1-based and inclusive;"
                            " end_line -1 reads to the end."
                        ),
                        "prefixItems": [
                            {"type": "integer", "minimum": 1},
                            {"type": "integer", "minimum": -1},
                        ],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "grep": {
                        "type": "string",
                        "minLength": 1,
                        "description": "A regular expression (Python syntax): only matching lines.",
                    },
                    "glob": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Directories: list or search only the files matching this.",
                    },
                    "tree": {
                        "type": "boolean",
                        "description": "For directories: show a nested tree (default false).",
                    },
                },
                required=("path",),
            ),
            annotations={"readOnlyHint": True},
        ),
        "create": Tool(
            name="create",
            description=(
                "Create a new text file with the given content, creating missing parent"
                " directories. Fails if the path already exists: edit existing files with"
                " str_replace."
            ),
            input_schema=object_schema(
                {
                    "path": path_property("The file to create."),
                    "file_text": {
                        "type": "string",
                        "description": "The complete content of the file.",
                    },
                },
                required=("path", "file_text"),
            ),
            annotations={"destructiveHint": False},
        ),
        "str_replace": Tool(
            name="str_replace",
            description=(
                "Replace text in a file. old_str must match the file exactly (whitespace,"
                " indentation and line endings included) and, unless replace_all is true,"
                " exactly once; otherwise nothing changes and the number of matches is"
                " reported. Returns the edited region with line numbers."
            ),
            input_schema=object_schema(
                {
                    "path": path_property("The file to edit."),
                    "old_str": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The exact text to replace.",
                    },
                    "new_str": {"type": "string", "description": "The text to put in its place."},
                    "replace_all": {
                        "type": "boolean",
                        "description": "Replace every occurrence, not exactly one (default false).",
                    },
                },
                required=("path", "old_str", "new_str"),
            ),
            annotations={"destructiveHint": True, "idempotentHint": False},
        ),
        "remove": Tool(
            name="remove",
            description=(
                "Remove a file, a symbolic link or an empty directory. A non-empty directory"
                " needs recursive: true. Refuses the root and the working directory."
            ),
            input_schema=object_schema(
                {
                    "path": path_property("The file or directory to remove."),
                    "recursive": {
                        "type": "boolean",
                        "description": "Remove a non-empty directory too (default false).",
                    },
                },
                required=("path",),
            ),
            annotations={"destructiveHint": True},
        ),
    }


async def _in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await trio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


def register_file_tools(server: McpServer, *, workdir: Path, limits: ToolLimits) -> None:
    tools = file_tools(limits)

    async def view(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return await _in_thread(
            view_path,
            resolve_path(workdir, arguments["path"]),
            view_range=arguments.get("view_range"),
            grep=arguments.get("grep"),
            glob=arguments.get("glob"),
            tree=arguments.get("tree", False),
            limits=limits,
        )

    async def create(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return await _in_thread(
            create_file, resolve_path(workdir, arguments["path"]), arguments["file_text"]
        )

    async def replace(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return await _in_thread(
            str_replace,
            resolve_path(workdir, arguments["path"]),
            arguments["old_str"],
            arguments["new_str"],
            replace_all=arguments.get("replace_all", False),
            limits=limits,
        )

    async def remove(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return await _in_thread(
            remove_path,
            resolve_path(workdir, arguments["path"]),
            recursive=arguments.get("recursive", False),
            workdir=workdir,
        )

    server.add_tool(tools["view"], view)
    server.add_tool(tools["create"], create)
    server.add_tool(tools["str_replace"], replace)
    server.add_tool(tools["remove"], remove)
