"""view, create, str_replace and remove, with hypothesis for exact matching and line ranges."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tools.tools_harness import ToolClient
from trio_sandbox.mcp import CallToolResult
from trio_sandbox.tools import glob_regex, open_tool_server, split_lines


def call_once(
    files: dict[str, str], name: str, arguments: dict[str, Any]
) -> tuple[CallToolResult, str]:
    """Write files into a fresh directory, make one call on a fresh server; return the result
    and the content of f.txt afterwards."""
    with tempfile.TemporaryDirectory(prefix="tools-hyp-") as name_of_directory:
        directory = Path(name_of_directory)
        for relative, text in files.items():
            (directory / relative).write_bytes(text.encode("utf-8"))

        async def main() -> CallToolResult:
            async with open_tool_server(workdir=directory) as server:
                return await ToolClient(server, server.open_session()).call(name, arguments)

        result = trio.run(main)
        return result, (directory / "f.txt").read_bytes().decode("utf-8")


# --- str_replace ------------------------------------------------------------------------------

# Text files hold no NUL (a NUL makes a file binary, which str_replace refuses to edit).
any_text = st.characters(codec="utf-8", exclude_characters="\0")
texts = st.one_of(st.text(alphabet="ab\n", max_size=30), st.text(any_text, max_size=30))
needles = st.one_of(
    st.text(alphabet="ab\n", min_size=1, max_size=4), st.text(any_text, min_size=1, max_size=4)
)


def overlapping_count(text: str, needle: str) -> int:
    return sum(1 for i in range(len(text)) if text.startswith(needle, i))


@settings(max_examples=150, deadline=None)
@given(text=texts, old=needles, new=st.text(any_text, max_size=6))
def test_str_replace_succeeds_iff_old_str_occurs_exactly_once(
    text: str, old: str, new: str
) -> None:
    result, after = call_once(
        {"f.txt": text}, "str_replace", {"path": "f.txt", "old_str": old, "new_str": new}
    )
    count = overlapping_count(text, old)
    if count == 1:
        assert not result.is_error, result.text_content
        assert after == text.replace(old, new, 1)
    else:
        assert result.is_error
        assert after == text
        if count == 0:
            assert result.text_content.startswith("old_str was not found in")
        else:
            assert f"old_str matches {count} times in" in result.text_content


@settings(max_examples=100, deadline=None)
@given(text=texts, old=needles, new=st.text(any_text, max_size=6))
def test_str_replace_all_replaces_every_occurrence(text: str, old: str, new: str) -> None:
    arguments = {"path": "f.txt", "old_str": old, "new_str": new, "replace_all": True}
    result, after = call_once({"f.txt": text}, "str_replace", arguments)
    assert result.is_error == (old not in text)
    assert after == text.replace(old, new)


async def test_str_replace_keeps_the_file_mode_and_shows_the_edit(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o750)
    text = await tool_client.text(
        "str_replace", {"path": "run.sh", "old_str": "old", "new_str": "new"}
    )
    assert text.endswith("     1\t#!/bin/sh\n     2\techo new")
    assert script.read_text() == "#!/bin/sh\necho new\n"
    assert script.stat().st_mode & 0o777 == 0o750
    assert sorted(os.listdir(tmp_path)) == ["run.sh"]  # no temporary file left behind


async def test_str_replace_errors(tool_client: ToolClient, tmp_path: Path) -> None:
    assert (
        await tool_client.error("str_replace", {"path": "x", "old_str": "a", "new_str": ""})
    ) == (f"{tmp_path / 'x'} does not exist")
    message = await tool_client.error("str_replace", {"path": "x", "old_str": "", "new_str": "b"})
    assert "at 'old_str'" in message
    (tmp_path / "bin").write_bytes(b"\x00\x01abc")
    message = await tool_client.error(
        "str_replace", {"path": "bin", "old_str": "a", "new_str": "b"}
    )
    assert "is a binary file" in message


# --- view -------------------------------------------------------------------------------------

lines_strategy = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\0"), max_size=8),
    max_size=12,
)


def parse_numbered(text: str) -> list[tuple[int, str]]:
    """The (number, line) pairs of a view result, skipping its header line."""
    rows = text.split("\n")[1:]
    parsed = []
    for row in rows:
        number, _, line = row.partition("\t")
        parsed.append((int(number), line))
    return parsed


@settings(max_examples=150, deadline=None)
@given(
    lines=lines_strategy,
    final_newline=st.booleans(),
    start=st.integers(min_value=1, max_value=15),
    end=st.integers(min_value=-1, max_value=15),
)
def test_view_range_returns_exactly_the_file_slice(
    lines: list[str], final_newline: bool, start: int, end: int
) -> None:
    # A last empty line exists only as a final newline.
    text = "\n".join(lines) + ("\n" if lines and (final_newline or lines[-1] == "") else "")
    assert split_lines(text) == lines
    result, _ = call_once({"f.txt": text}, "view", {"path": "f.txt", "view_range": [start, end]})
    total = len(lines)
    if start > total:
        assert result.is_error
        assert f"view_range start {start} is past the end" in result.text_content
    elif end != -1 and end < start:
        assert result.is_error
        assert f"view_range end {end} is before its start {start}" in result.text_content
    else:
        assert not result.is_error, result.text_content
        last = total if end == -1 else min(end, total)
        expected = [(n, lines[n - 1]) for n in range(start, last + 1)]
        body = result.text_content
        if end > total:
            body = body.rpartition("\n")[0]  # the "only N lines" note
        assert parse_numbered(body) == expected


async def test_view_whole_file_empty_file_and_grep(tool_client: ToolClient, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import os\n\ndef main():\n    os.exit(0)\n")
    text = await tool_client.text("view", {"path": "a.py"})
    assert text == (
        f"{tmp_path / 'a.py'}: lines 1-4 of 4\n"
        "     1\timport os\n     2\t\n     3\tdef main():\n     4\t    os.exit(0)"
    )
    grepped = await tool_client.text("view", {"path": str(tmp_path / "a.py"), "grep": r"os\."})
    assert grepped.split("\n")[1:] == ["     4\t    os.exit(0)"]
    (tmp_path / "empty").write_text("")
    assert (await tool_client.text("view", {"path": "empty"})).endswith("empty file (0 lines)")


async def test_view_caps_lines_and_long_lines(tmp_path: Path) -> None:
    from tests.tools.tools_harness import fast_limits

    (tmp_path / "big").write_text("".join(f"{n}\n" for n in range(1, 101)) + "x" * 50 + "\n")
    limits = fast_limits(view_max_lines=10, view_max_line_chars=20)
    async with open_tool_server(workdir=tmp_path, limits=limits) as server:
        client = ToolClient(server, server.open_session())
        text = await client.text("view", {"path": "big", "view_range": [91, -1]})
    rows = text.split("\n")
    assert rows[0].endswith("lines 91-100 of 101")
    assert rows[-1] == "[showing 10 lines; ask for view_range [101, 101] to see the rest]"
    async with open_tool_server(workdir=tmp_path, limits=limits) as server:
        client = ToolClient(server, server.open_session())
        text = await client.text("view", {"path": "big", "view_range": [101, 101]})
    assert text.split("\n")[1] == "   101\t" + "x" * 20 + "… [30 more characters]"


async def test_view_errors_are_clear(tool_client: ToolClient, tmp_path: Path) -> None:
    assert (
        await tool_client.error("view", {"path": "nope"})
    ) == f"{tmp_path / 'nope'} does not exist"
    (tmp_path / "blob").write_bytes(b"\x7fELF\x00\x00")
    assert "is a binary file (6 bytes)" in await tool_client.error("view", {"path": "blob"})
    (tmp_path / "latin").write_bytes("caf\xe9".encode("latin-1"))
    assert "is not UTF-8 text" in await tool_client.error("view", {"path": "latin"})
    (tmp_path / "f").write_text("x\n")
    message = await tool_client.error("view", {"path": "f", "view_range": [0, 1]})
    assert "at 'view_range/0'" in message
    assert "at 'view_range'" in await tool_client.error("view", {"path": "f", "view_range": [1]})
    assert "invalid grep regex '('" in await tool_client.error("view", {"path": "f", "grep": "("})
    message = await tool_client.error("view", {"path": ".", "view_range": [1, 2]})
    assert "is a directory; view_range applies to files only" in message


async def test_view_directories(tool_client: ToolClient, tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\nneedle = 2\n")
    (tmp_path / "src" / "main.ts").write_text("let needle = 3\n")
    (tmp_path / "README").write_text("needle\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("needle\n")
    (tmp_path / "link").symlink_to("README")

    listing = await tool_client.text("view", {"path": "."})
    assert listing.split("\n")[1:] == [".git/", "README", "link@ -> README", "src/"]
    tree = await tool_client.text("view", {"path": ".", "tree": True})
    assert tree.split("\n")[1:] == [
        "├── .git/",
        "├── README",
        "├── link@ -> README",
        "└── src/",
        "    ├── main.ts",
        "    └── pkg/",
        "        └── mod.py",
    ]
    globbed = await tool_client.text("view", {"path": ".", "glob": "*.py"})
    assert globbed.split("\n")[1:] == ["src/pkg/mod.py"]
    globbed = await tool_client.text("view", {"path": ".", "glob": "src/**/*.ts"})
    assert globbed.split("\n")[1:] == ["src/main.ts"]
    grepped = await tool_client.text("view", {"path": ".", "grep": "needle"})
    assert grepped.split("\n")[1:] == [
        "README:1\tneedle",
        "src/main.ts:1\tlet needle = 3",
        "src/pkg/mod.py:2\tneedle = 2",
    ]
    grepped = await tool_client.text("view", {"path": ".", "grep": "needle", "glob": "*.py"})
    assert grepped.split("\n")[1:] == ["src/pkg/mod.py:2\tneedle = 2"]


def test_glob_semantics() -> None:
    assert glob_regex("*.py").fullmatch("a/b/c.py")
    assert not glob_regex("src/*.py").fullmatch("src/a/b.py")
    assert glob_regex("src/**/*.py").fullmatch("src/b.py")
    assert glob_regex("src/**/*.py").fullmatch("src/a/b.py")
    assert glob_regex("[ab].txt").fullmatch("x/a.txt")
    assert not glob_regex("[!ab].txt").fullmatch("a.txt")


# --- create and remove ------------------------------------------------------------------------


async def test_create_makes_parents_and_refuses_existing_paths(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    text = await tool_client.text("create", {"path": "a/b/c.txt", "file_text": "one\r\ntwo"})
    assert text == f"Created {tmp_path / 'a/b/c.txt'} (8 bytes, 2 lines)"
    assert (tmp_path / "a/b/c.txt").read_bytes() == b"one\r\ntwo"
    message = await tool_client.error("create", {"path": "a/b/c.txt", "file_text": "other"})
    assert message.startswith(f"{tmp_path / 'a/b/c.txt'} already exists (a file)")
    assert (tmp_path / "a/b/c.txt").read_bytes() == b"one\r\ntwo"
    assert "already exists (a directory)" in await tool_client.error(
        "create", {"path": "a", "file_text": ""}
    )
    (tmp_path / "dangling").symlink_to("nowhere")
    assert "already exists" in await tool_client.error(
        "create", {"path": "dangling", "file_text": ""}
    )
    assert not (tmp_path / "nowhere").exists()
    assert "'file_text' is a required property" in await tool_client.error("create", {"path": "n"})


async def test_remove_rules(tool_client: ToolClient, tmp_path: Path) -> None:
    (tmp_path / "full" / "sub").mkdir(parents=True)
    (tmp_path / "full" / "sub" / "f").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dirlink").symlink_to("full")

    message = await tool_client.error("remove", {"path": "full"})
    assert message == (
        f"{tmp_path / 'full'} is a directory with 1 entries; set recursive to true to"
        " remove it and everything in it"
    )
    assert (tmp_path / "full" / "sub" / "f").exists()
    await tool_client.text("remove", {"path": "dirlink", "recursive": True})
    assert not (tmp_path / "dirlink").exists()
    assert (tmp_path / "full" / "sub" / "f").exists()
    await tool_client.text("remove", {"path": "empty"})
    await tool_client.text("remove", {"path": "file"})
    await tool_client.text("remove", {"path": "full", "recursive": True})
    assert os.listdir(tmp_path) == []
    assert "does not exist" in await tool_client.error("remove", {"path": "file"})
    assert "refusing to remove" in await tool_client.error(
        "remove", {"path": ".", "recursive": True}
    )
    assert "refusing to remove" in await tool_client.error(
        "remove", {"path": "/", "recursive": True}
    )
    assert "at 'recursive'" in await tool_client.error("remove", {"path": "x", "recursive": "yes"})
