"""The audit log's file: private, appended whole, rotated by size, and refused when it is not
the user's own."""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given

from trio_sandbox.observe import (
    AuditLogError,
    CallKind,
    CallRecord,
    Failure,
    LifecyclePhase,
    LifecycleRecord,
    Observer,
    Outcome,
    Record,
    open_audit_log,
)
from trio_sandbox.observe._audit import (
    ARGUMENTS_PREVIEW_CHARS,
    MAX_RECORD_BYTES,
    TEXT_PREVIEW_CHARS,
    _dumps,
)
from trio_sandbox.observe._records import wall_time
from trio_sandbox.sandbox import SandboxConfig


def call(arguments: dict[str, object] | None = None, name: str = "run_command") -> CallRecord:
    return CallRecord(
        kind=CallKind.TOOL_CALL,
        started=1_800_000_000.5,
        duration=0.25,
        client=None,
        session=None,
        upstream="sandbox",
        name=name,
        arguments=arguments if arguments is not None else {"command": "ls"},
        outcome=Outcome.OK,
    )


def test_a_new_log_is_private_and_each_record_is_one_json_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with open_audit_log(str(path)) as audit:
        audit.record(call({"command": "echo 'a\nb'"}))
        audit.record(LifecycleRecord(phase=LifecyclePhase.READY, at=1_800_000_001, sandbox="s"))
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["arguments"] == {"command": "echo 'a\nb'"}
    assert first["time"] == "2027-01-15T08:00:00.500000Z"
    assert (second["event"], second["phase"]) == ("sandbox", "ready")


def test_an_existing_log_of_ours_is_appended_to_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')
    path.chmod(0o644)
    with open_audit_log(str(path)) as audit:
        audit.record(call())
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().splitlines()[0] == '{"earlier": true}'
    assert len(path.read_text().splitlines()) == 2


def test_a_symlink_a_directory_and_a_missing_directory_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "link").symlink_to(target)
    for bad in (tmp_path / "link", tmp_path, tmp_path / "missing" / "audit.jsonl"):
        with pytest.raises(AuditLogError, match="audit log") as caught:
            open_audit_log(str(bad))
        assert str(bad) in str(caught.value)
    assert target.read_text() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs root")
def test_a_log_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o666)
    other = pwd.getpwnam("nobody").pw_uid
    os.chown(path, other, other)
    with pytest.raises(AuditLogError, match=f"owned by uid {other}"):
        open_audit_log(str(path))
    assert path.read_text() == ""


def test_rotation_keeps_the_newest_records_in_at_most_backups_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    line = len(json.dumps(call().to_json(), separators=(",", ":"))) + 1
    with open_audit_log(str(path), max_bytes=line * 10, backups=2) as audit:
        for index in range(45):
            audit.record(call({"command": f"echo {index:02d}"}))
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    kept = [
        json.loads(text)["arguments"]["command"]
        for name in ("audit.jsonl.2", "audit.jsonl.1", "audit.jsonl")
        for text in (tmp_path / name).read_text().splitlines()
    ]
    assert kept == [f"echo {index:02d}" for index in range(20, 45)]


def test_max_bytes_zero_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with open_audit_log(str(path), max_bytes=0) as audit:
        for _ in range(200):
            audit.record(call())
    assert [f.name for f in tmp_path.iterdir()] == ["audit.jsonl"]
    assert len(path.read_text().splitlines()) == 200


def test_huge_arguments_keep_a_preview_and_their_size(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    content = "x" * (MAX_RECORD_BYTES * 4)
    with open_audit_log(str(path)) as audit:
        audit.record(call({"path": "/work/big", "content": content}))
    [line] = path.read_text().splitlines()
    assert len(line) < MAX_RECORD_BYTES
    arguments = json.loads(line)["arguments"]
    assert arguments["truncated"] is True
    assert arguments["size"] > len(content)
    assert len(arguments["preview"]) == ARGUMENTS_PREVIEW_CHARS


def test_huge_names_and_messages_are_cut(tmp_path: Path) -> None:
    """A client names its tool as it likes, an upstream words its errors as it likes, each up to
    a message's size: a record keeps the start of each, so a few calls cannot rotate the log's
    history out."""
    path = tmp_path / "audit.jsonl"
    name, message = "n" * 4_000_000, "m" * 4_000_000
    record = attrs.evolve(
        call(name=name), outcome=Outcome.FAILED, failure=Failure("McpError", message, -32602)
    )
    with open_audit_log(str(path)) as audit:
        audit.record(record)
        audit.record(call())  # an ordinary record beside it stays whole
    huge, ordinary = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(json.dumps(huge)) < MAX_RECORD_BYTES
    assert huge["tool"] == "n" * (TEXT_PREVIEW_CHARS - 1) + "\u2026"
    assert huge["error"] == {
        "type": "McpError",
        "code": -32602,
        "message": "m" * (TEXT_PREVIEW_CHARS - 1) + "\u2026",
    }
    assert ordinary["tool"] == "run_command"
    assert ordinary["arguments"] == {"command": "ls"}


def test_two_processes_appending_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = (
        "import sys\n"
        "from tests.observe.test_audit_log import call\n"
        "from trio_sandbox.observe import open_audit_log\n"
        "with open_audit_log(sys.argv[1], max_bytes=0) as audit:\n"
        "    for i in range(2000):\n"
        "        audit.record(call({'command': sys.argv[2] * 300 + str(i)}))\n"
    )
    root = Path(__file__).resolve().parent.parent.parent
    children = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), letter], cwd=root)
        for letter in "ab"
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    commands = [json.loads(line)["arguments"]["command"] for line in path.read_text().splitlines()]
    assert len(commands) == 4000
    assert sorted(c[0] for c in commands) == ["a"] * 2000 + ["b"] * 2000
    assert all(c[:300] in ("a" * 300, "b" * 300) for c in commands)


def test_a_bad_rotation_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError, match="0 or more"):
        open_audit_log(str(tmp_path / "a"), max_bytes=-1)


def test_a_rotation_that_fails_keeps_writing_to_the_old_file_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another user's file (here: a directory) where the first backup goes: the rename fails.
    path = tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl.1").mkdir()
    (tmp_path / "audit.jsonl.1" / "inside").write_text("")
    line = len(json.dumps(call().to_json(), separators=(",", ":"))) + 1
    with open_audit_log(str(path), max_bytes=line * 2, backups=1) as audit:
        for index in range(6):
            audit.record(call({"command": f"echo {index}"}))
    kept = [json.loads(text)["arguments"]["command"] for text in path.read_text().splitlines()]
    assert kept == [f"echo {index}" for index in range(6)]
    failures = [r for r in caplog.records if "could not be rotated" in r.getMessage()]
    assert len(failures) == 1  # said once, not per record


def test_a_hard_linked_log_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-file"
    other.write_text("mine\n")
    os.link(other, tmp_path / "audit.jsonl")
    with pytest.raises(AuditLogError, match="hard links"):
        open_audit_log(str(tmp_path / "audit.jsonl"))
    assert other.read_text() == "mine\n"


def test_a_sink_that_fails_loses_its_record_not_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def record(self, record: Record) -> None:
            raise OSError(28, "No space left on device")

        def placeholder_made(self, rule: str) -> None:
            pass

        def output_shortened(self, upstream: str | None) -> None:
            pass

    seen: list[Record] = []

    class Keeper(Broken):
        def record(self, record: Record) -> None:
            seen.append(record)

    observer = Observer(sinks=[Broken(), Keeper()])
    observer.emit(call())
    assert len(seen) == 1
    assert "could not take a record" in caplog.text


def test_an_audit_log_the_sandbox_could_write_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(ValueError, match="inside the writable volume"):
        SandboxConfig(volumes=[f"{project}:/work"], audit_log=str(project / "logs" / "a.jsonl"))
    # Read-only, or elsewhere: fine.
    SandboxConfig(volumes=[f"{project}:/work:ro"], audit_log=str(project / "a.jsonl"))
    SandboxConfig(volumes=[f"{project}:/work"], audit_log=str(tmp_path / "a.jsonl"))


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_a_records_time_is_rfc3339_utc_within_a_microsecond(seconds: float) -> None:
    text = wall_time(seconds)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    back = parsed.replace(tzinfo=datetime.UTC).timestamp()
    assert abs(back - seconds) <= 1.5e-6


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes(),  # not JSON: written as its str(), as json.dumps(default=str) would
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_a_line_is_what_json_dumps_writes_in_ascii(value: object) -> None:
    line = _dumps(value)
    assert line == json.dumps(value, separators=(",", ":"), default=str)
    assert line.isascii()
    assert "\n" not in line
