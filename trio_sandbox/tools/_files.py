"""The file tools: ``view``, ``create``, ``str_replace`` and ``remove``.

The blocking work runs in worker threads; each piece is a plain function, bounded by
:class:`ToolLimits`, so a huge directory or file costs at most a capped amount of work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..mcp import McpServer, RequestContext, Tool
from ._file_common import resolve_path
from ._file_edit import create_file, remove_path, str_replace
from ._file_view import view_path
from ._limits import ToolLimits
from ._schema import object_schema, path_property

T = TypeVar("T")


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
