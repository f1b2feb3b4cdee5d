"""The file token store, as root and as the ordinary user: private files written atomically,
refused when planted (a link, someone else's, hard linked, readable by others, not a file),
updates under a lock across processes, and no token in any error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.sandbox_users import SandboxUser
from trio_sandbox.oauth import FileTokenStore, TokenStoreError, check_store_name

CHILD = Path(__file__).resolve().parent / "store_child.py"
SECRET = "planted-secret-do-not-print"


async def run_store(user: SandboxUser, home: Path, directory: Path, *ops: list[Any]) -> Any:
    plan = {"directory": str(directory), "ops": [list(op) for op in ops]}
    return await user.run_json(str(CHILD), stdin=json.dumps(plan).encode(), home=home, limit=30)


def own(user: SandboxUser, path: Path) -> None:
    os.chown(path, user.uid, user.gid, follow_symlinks=False)


def foreign_uid(user: SandboxUser) -> int:
    # Someone other than the store's user: root for the ordinary user, nobody for root.
    return 65534 if user.is_root else 0


def error_of(result: dict[str, Any]) -> str:
    assert "error" in result, result
    assert result["error"] == "TokenStoreError"
    message: str = result["message"]
    return message


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "-opt", "", "x" * 200, "a\x00b"])
def test_names_that_are_path_tricks_are_refused(name: str) -> None:
    with pytest.raises(TokenStoreError, match="cannot name a token file"):
        check_store_name(name)


async def test_saved_tokens_are_private_and_load_back(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    directory = workspace / "state" / "trio-sandbox" / "oauth"
    results = await run_store(
        sandbox_user,
        workspace,
        directory,
        ["save", "github", "access-1"],
        ["save", "github", "access-2"],
        ["save", "linear", "access-3"],
        ["load", "github"],
        ["load", "missing"],
        ["names"],
        ["delete", "linear"],
        ["delete", "linear"],
        ["names"],
    )
    assert [r["ok"] for r in results] == [
        None,
        None,
        None,
        "access-2",
        None,
        ["github", "linear"],
        True,
        False,
        ["github"],
    ]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    token_file = directory / "github.json"
    info = token_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (sandbox_user.uid, sandbox_user.gid)
    # Written whole and renamed: no temporary file left behind.
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "github.json"]
    assert json.loads(token_file.read_text())["access_token"] == "access-2"


async def test_planted_token_files_are_refused_and_left_alone(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    directory = workspace / "oauth"
    await run_store(sandbox_user, workspace, directory, ["save", "seed", "x"])
    elsewhere = workspace / "elsewhere.json"
    elsewhere.write_text(json.dumps({"access_token": SECRET}))
    own(sandbox_user, elsewhere)

    (directory / "link.json").symlink_to(elsewhere)
    own(sandbox_user, directory / "link.json")
    os.link(directory / "seed.json", directory / "hard.json")
    foreign = directory / "foreign.json"
    foreign.write_bytes((directory / "seed.json").read_bytes())
    foreign.chmod(0o600)
    os.chown(foreign, foreign_uid(sandbox_user), foreign_uid(sandbox_user))
    loose = directory / "loose.json"
    loose.write_bytes((directory / "seed.json").read_bytes())
    loose.chmod(0o644)
    own(sandbox_user, loose)
    os.mkfifo(directory / "fifo.json", 0o600)
    own(sandbox_user, directory / "fifo.json")

    results = await run_store(
        sandbox_user,
        workspace,
        directory,
        ["load", "link"],
        ["save", "link", "new"],
        ["delete", "link"],
        ["load", "hard"],
        ["save", "hard", "new"],
        ["load", "foreign"],
        ["save", "foreign", "new"],
        ["load", "loose"],
        ["load", "fifo"],
        ["save", "fifo", "new"],
    )
    reasons = [error_of(result) for result in results]
    for reason in reasons[:3]:
        assert "link.json: refused: it is a symbolic link" in reason
    assert "hard.json: refused: it has 2 hard links" in reasons[3]
    assert "hard.json: refused" in reasons[4]
    assert f"foreign.json: refused: owned by uid {foreign_uid(sandbox_user)}" in reasons[5]
    assert "foreign.json: refused" in reasons[6]
    assert "loose.json: refused: mode 0644" in reasons[7]
    assert "fifo.json: refused: not a regular file" in reasons[8]
    assert "fifo.json: refused" in reasons[9]
    assert all(SECRET not in reason for reason in reasons)
    # Nothing planted was followed, replaced or removed.
    assert json.loads(elsewhere.read_text()) == {"access_token": SECRET}
    assert (directory / "link.json").is_symlink()
    assert (directory / "seed.json").stat().st_nlink == 2
    assert stat.S_ISFIFO((directory / "fifo.json").stat().st_mode)


async def test_a_planted_or_foreign_directory_is_refused(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    real = workspace / "real"
    real.mkdir(mode=0o700)
    own(sandbox_user, real)
    (workspace / "linked").symlink_to(real)
    foreign = workspace / "foreign"
    foreign.mkdir(mode=0o777)
    os.chown(foreign, foreign_uid(sandbox_user), foreign_uid(sandbox_user))
    linked = await run_store(sandbox_user, workspace, workspace / "linked", ["save", "a", "x"])
    assert "linked: refused: not a directory (a symbolic link?)" in error_of(linked[0])
    assert list(real.iterdir()) == []
    results = await run_store(sandbox_user, workspace, foreign, ["save", "a", "x"], ["load", "a"])
    for result in results:
        assert f"foreign: refused: owned by uid {foreign_uid(sandbox_user)}" in error_of(result)
    assert list(foreign.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"access_token": "' + SECRET.encode() + b'", ', "invalid JSON at line 1"),
        (b"\xff\xfe" + SECRET.encode(), "not UTF-8"),
        (json.dumps({"access_token": SECRET}).encode(), "is missing or not a string"),
        (json.dumps([SECRET]).encode(), "not a JSON object"),
        (b" " * (1 << 20) + b"{}", "larger than"),
    ],
)
def test_a_corrupt_file_is_named_and_its_content_never_shown(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    store = FileTokenStore(tmp_path / "oauth")
    store.directory.mkdir(mode=0o700)
    path = store.directory / "broken.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(TokenStoreError) as caught:
        store.load("broken")
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert "auth login broken" in message
    assert SECRET not in message


async def test_concurrent_updates_from_processes_lose_nothing(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    directory = workspace / "oauth"
    await run_store(sandbox_user, workspace, directory, ["save", "shared", "x"])
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(
                run_store, sandbox_user, workspace, directory, ["count", "shared", 25]
            )
    stored = json.loads((directory / "shared.json").read_text())
    assert stored["scope"] == "100"


async def test_no_directory_is_made_in_another_users_tree(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """(Review minor d.) Root with another user's XDG_STATE_HOME (sudo -E), or a user pointed
    at someone else's writable directory: refused, nothing made there."""
    theirs = workspace / "theirs"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    os.chown(theirs, 65534, 65534)
    directory = theirs / "state" / "trio-sandbox" / "oauth"
    results = await run_store(sandbox_user, workspace, directory, ["save", "a", "x"])
    assert f"would be made in {theirs}, owned by uid 65534" in error_of(results[0])
    assert list(theirs.iterdir()) == []
    # In the user's own tree: made as usual.
    mine = workspace / "mine" / "state" / "trio-sandbox" / "oauth"
    assert await run_store(sandbox_user, workspace, mine, ["save", "a", "x"]) == [{"ok": None}]


def test_a_relative_xdg_state_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """(Review minor e.) The XDG spec: relative paths are invalid, to be ignored."""
    from trio_sandbox.program import state_dir

    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert state_dir() == Path("/home/someone/.local/state/trio-sandbox")
    monkeypatch.setenv("XDG_STATE_HOME", "/abs/state")
    assert state_dir() == Path("/abs/state/trio-sandbox")
