"""What a command can do to the sandbox's ability to run the next one (the code in the sandbox).

Each test attacks from inside a real bubblewrap sandbox, as root and as an ordinary user, through
the whole stack (open_sandbox, the proxy, mutual TLS, the warden, the tool server), asserts that
the attack fails — nothing it started is left below the tool server, seen from the host in the
sandbox's pid namespace — and that the next call works. The program that drives each sandbox is
``commands_child.py``, run as the user.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sandbox_users import SandboxUser
from tests.tools.tools_harness import ToolClient, fast_limits
from trio_sandbox.tools import ToolLimits, clean_text, open_tool_server

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CHILD = Path(__file__).with_name("commands_child.py")

# Forks for ever; every child leaves the session and sleeps. Left running in the background, it
# holds every process the sandbox may have.
BOMB = (
    "python3 -c 'import os, time\n"
    "while True:\n"
    "    try:\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "            time.sleep(10000)\n"
    "    except OSError:\n"
    "        time.sleep(0.01)\n'"
)
# Every way out of a process group or session, then a wait that never ends.
ESCAPES = (
    "setsid -f sleep 1001; nohup sleep 1002 >/dev/null 2>&1 & (sleep 1003 &);"
    " python3 -c 'import os; os.fork() or (os.setsid(), os.fork() or"
    ' os.execvp("sleep", ["sleep", "1004"]))\'; echo ready; sleep 1005'
)
ESCAPED = {f"sleep {n}" for n in range(1001, 1006)}
# The tool server is the keeper's parent (the keeper is the command shell's).
TOOL_SERVER = 'T=$(cut -d" " -f4 /proc/$PPID/stat)'
NO_SPACE = "No space left on device"
ALLOCATE = 'python3 -c "x = bytearray(400 * 1024 * 1024); print(len(x))"'


async def run_child(user: SandboxUser, home: Path, plan: dict[str, Any]) -> Any:
    return await user.run_json(str(CHILD), home=home, stdin=json.dumps(plan).encode(), limit=240)


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"call": tool, "args": args}


def command(text: str, **options: Any) -> dict[str, Any]:
    return call("run_command", command=text, **options)


PROCS = {"procs": True}
NEXT = command("echo next")
NEXT_WORKED = {"text": "next\n[exit code 0]", "is_error": False}


def worked(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in ("text", "is_error")}


@needs_bwrap
async def test_a_fork_bomb_left_running_is_reclaimed_by_the_next_command(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "config": {"pids": "64"},
        "steps": [
            command(f"{BOMB} >/dev/null 2>&1 & echo started"),
            {"sleep": 1.0},
            {**PROCS, "within": 0},
            NEXT,
            PROCS,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    started, _, during, after, left = report["results"]
    assert worked(started) == {"text": "started\n[exit code 0]", "is_error": False}
    assert len(during["left"]) > 40  # the bomb holds the sandbox's processes
    assert worked(after) == NEXT_WORKED
    assert left["left"] == []
    assert report["generation"] == 1


@needs_bwrap
async def test_a_running_fork_bomb_is_named_in_the_error_and_cancelling_it_frees_the_sandbox(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "config": {"pids": "64"},
        "steps": [
            call("run_command_task", command=BOMB),
            {"sleep": 1.0},
            NEXT,
            call("cancel_task", task_id="$task"),
            NEXT,
            PROCS,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    _, _, refused, cancelled, after, left = report["results"]
    assert refused["is_error"], refused
    assert refused["text"].startswith("could not start /bin/sh: the process limit (64) reached")
    assert "1 running command(s) or task(s) hold the rest" in refused["text"]
    assert "ExceptionGroup" not in refused["text"]
    assert not cancelled["is_error"], cancelled
    assert worked(after) == NEXT_WORKED
    assert left["left"] == []
    assert report["generation"] == 1


@needs_bwrap
async def test_processes_that_leave_the_session_die_on_timeout_and_on_cancel(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "steps": [
            command(ESCAPES, timeout=2),
            PROCS,
            call("run_command_task", command=ESCAPES),
            {"sleep": 1.0},
            {**PROCS, "within": 0},
            call("cancel_task", task_id="$task"),
            PROCS,
            {**command(ESCAPES), "cancel_after": 2.0},
            PROCS,
            NEXT,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    timed_out, after_timeout, _, _, running, _, after_cancel, cancelled, after_call, next_ = report[
        "results"
    ]
    assert timed_out["is_error"]
    assert timed_out["text"] == (
        "ready\nCommand timed out after 2 s; the command and every process it started were killed."
    )
    assert after_timeout["left"] == []
    assert set(running["left"]) >= ESCAPED  # they did leave their session and group
    assert after_cancel["left"] == []
    assert cancelled == {"cancelled": True}
    assert after_call["left"] == []
    assert worked(next_) == NEXT_WORKED


@needs_bwrap
async def test_memory_and_tmp_limits_are_named_and_the_next_call_works(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "config": {"memory": "128M", "tmp_size": "16M"},
        "steps": [
            command(ALLOCATE),
            NEXT,
            # /tmp stays full for the calls after it.
            command(f"dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | grep -o '{NO_SPACE}'"),
            NEXT,
            call("create", path="/tmp/note.txt", file_text="hello"),
            call("view", path="/tmp"),
            PROCS,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    over, after_memory, fill, after_fill, create, view, left = report["results"]
    if sandbox_user.is_root:
        assert over["text"].splitlines()[-1] == "[killed: memory limit 128 MiB reached]"
    else:  # per command, as an rlimit: the allocation fails instead
        assert "MemoryError" in over["text"]
    assert worked(after_memory) == NEXT_WORKED
    assert NO_SPACE in fill["text"]
    assert worked(after_fill) == NEXT_WORKED
    assert create["is_error"]
    assert NO_SPACE in create["text"]
    assert not view["is_error"]
    assert "fill" in view["text"]
    assert left["left"] == []
    assert report["generation"] == 1


@needs_bwrap
async def test_a_tool_server_whose_limits_a_command_lowers_is_replaced(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "steps": [
            command(f"{TOOL_SERVER}; prlimit --pid $T --nproc=1:1 && echo lowered"),
            NEXT,
            {"generation": 2},
            NEXT,
            command(f"{TOOL_SERVER}; prlimit --pid $T --nofile=12:12 && echo lowered"),
            NEXT,
            {"generation": 3},
            NEXT,
            PROCS,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    lowered, refused, _, after, lowered_fds, refused_fds, _, after_fds, left = report["results"]
    assert worked(lowered) == {"text": "lowered\n[exit code 0]", "is_error": False}
    assert refused["is_error"]
    assert refused["text"].startswith("could not start /bin/sh: the process limit")
    assert worked(after) == NEXT_WORKED
    assert worked(lowered_fds) == {"text": "lowered\n[exit code 0]", "is_error": False}
    assert refused_fds["is_error"]
    assert refused_fds["text"].startswith(
        "could not start /bin/sh: the tool server's open-file limit (12) reached"
    )
    assert worked(after_fds) == NEXT_WORKED
    assert left == {**left, "left": [], "tool_servers": 1}
    assert report["generation"] == 3  # each time a fresh sandbox


@needs_bwrap
async def test_killing_everything_or_stopping_the_tool_server_is_survived(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    plan = {
        "config": {"health_interval": 0.5, "health_timeout": 0.5, "respawn_threshold": 2},
        "steps": [
            command("kill -9 -1; echo survived"),
            NEXT,
            command(f"{TOOL_SERVER}; kill -STOP $T; echo stopped"),
            NEXT,
            PROCS,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    killed, after_kill, stopped, after_stop, left = report["results"]
    assert killed["exception"] == "SandboxRestarted"
    assert killed["text"].startswith("the sandbox restarted while this call was in flight")
    assert worked(after_kill) == NEXT_WORKED
    assert stopped["exception"] == "SandboxRestarted"
    assert "failed health probes" in stopped["text"]
    assert worked(after_stop) == NEXT_WORKED
    assert left == {**left, "left": [], "tool_servers": 1}
    assert report["generation"] == 3


HOSTILE_OUTPUT = r"printf 'a\033[31mred\033[0m\0b\377\r\nc\033]0;title\007d\rx\342\200\256y\n'"
BIG = 300 * 1024


@needs_bwrap
async def test_hostile_output_input_and_commands_do_not_stop_the_next_call(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    limits = ToolLimits()
    plan = {
        "steps": [
            command(HOSTILE_OUTPUT),
            command("yes | head -c 100000000; echo done"),
            command("sleep 1000 & echo background"),
            command('cat; read x; echo "read:$x"'),
            command("exec >&- 2>&- <&-; sleep 0.1"),
            command(f"x='{'a' * BIG}'; echo ${{#x}}"),
            command("#" + "a" * limits.max_command_bytes),
            command("(sleep 0.2 &); setsid -f sleep 0.2; echo orphans"),
            {"sleep": 1.0},
            {**PROCS, "within": 0},
            NEXT,
        ],
    }
    report = await run_child(sandbox_user, workspace, plan)
    hostile, flood, background, stdin, closed, big, too_big, orphans, _, left, next_ = report[
        "results"
    ]
    assert worked(hostile) == {
        "text": "ared\\x00b\ufffd\ncd\\x0dx\\u202ey\n[exit code 0]",
        "is_error": False,
    }
    # The tool server keeps the last MiB; the proxy shows a short tail of that.
    assert not flood["is_error"]
    assert flood["text"].endswith("y\ndone\n[exit code 0]")
    assert len(flood["text"]) < 2**20
    # The child holding the output pipe does not hold the call.
    assert worked(background) == {"text": "background\n[exit code 0]", "is_error": False}
    assert background["seconds"] < 5
    assert worked(stdin) == {"text": "read:\n[exit code 0]", "is_error": False}
    assert worked(closed) == {"text": "[exit code 0]", "is_error": False}
    assert worked(big) == {"text": f"{BIG}\n[exit code 0]", "is_error": False}
    assert too_big["is_error"]
    assert too_big["text"] == (
        f"the command is {limits.max_command_bytes + 1} bytes (UTF-8); the limit is"
        f" {limits.max_command_bytes}: write long scripts to a file with the create tool and"
        " run that"
    )
    # What a command leaves in the background keeps running (a dev server, say); orphans that
    # end are reaped (no zombie holds a pid: bwrap, the tool server and the sleep are all).
    assert worked(orphans) == {"text": "orphans\n[exit code 0]", "is_error": False}
    assert left["left"] == ["sleep 1000"]
    assert len(left["all"]) == 3
    assert worked(next_) == NEXT_WORKED


@needs_bwrap
async def test_a_request_over_the_message_bound_fails_alone_and_the_sandbox_stays(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    # The tool server closes the connection on a message over its bound; sent as it was, a model
    # could restart the sandbox (and lose every background task) with one oversized argument.
    oversized = 5 * 1024 * 1024
    plan = {"steps": [command("#" + "a" * oversized), NEXT]}
    report = await run_child(sandbox_user, workspace, plan)
    refused, next_ = report["results"]
    assert refused["exception"] == "McpError"
    sent = re.fullmatch(
        r"message of (\d+) bytes is over the (\d+)-byte limit of one message; it was not sent",
        refused["text"],
    )
    assert sent is not None, refused
    assert int(sent[1]) > oversized > int(sent[2])
    assert worked(next_) == NEXT_WORKED
    assert report["generation"] == 1


# --- in-process: the tool server alone, on virtual time -----------------------------------------


async def test_a_command_that_never_ends_times_out_by_default(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_tool_server(workdir=tmp_path, limits=fast_limits()) as server:
        client = ToolClient(server, server.open_session())
        result = await client.call("run_command", {"command": "sleep 100000"})
        [tool] = [tool.to_json() for tool in server.tools if tool.name == "run_command"]
    assert result.is_error
    assert result.text_content == (
        "Command timed out after 600 s; the command and every process it started were killed."
    )
    assert "600 when omitted" in tool["inputSchema"]["properties"]["timeout"]["description"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("echo a\0b", "the command contains a NUL character, which no shell script can hold"),
        ("echo \ud800", "the command is not valid Unicode: surrogates not allowed"),
    ],
)
async def test_commands_no_shell_can_hold_are_refused_and_the_next_call_works(
    tmp_path: Path, text: str, error: str
) -> None:
    async with open_tool_server(workdir=tmp_path, limits=fast_limits()) as server:
        client = ToolClient(server, server.open_session())
        assert await client.error("run_command", {"command": text}) == error
        assert await client.error("run_command_task", {"command": text}) == error
        assert await client.text("run_command", {"command": "echo next"}) == "next\n[exit code 0]"


_ALLOWED_CONTROLS = {"\n", "\t"}


def _shown(text: str) -> bool:
    """No character a terminal would act on: C0, DEL, C1, bidirectional overrides."""
    return not any(
        (ord(c) < 0x20 and c not in _ALLOWED_CONTROLS)
        or 0x7F <= ord(c) <= 0x9F
        or 0x202A <= ord(c) <= 0x202E
        or 0x2066 <= ord(c) <= 0x2069
        for c in text
    )


@given(st.binary(max_size=2000))
def test_any_output_is_shown_without_control_characters(data: bytes) -> None:
    assert _shown(clean_text(data))


_PLAIN = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Co", "Cn")) | st.sampled_from("\n\t"),
    max_size=3000,
)


@given(_PLAIN)
def test_plain_output_is_shown_as_it_was_written(text: str) -> None:
    assert clean_text(text.encode()) == text


# The working directory is only where the shell starts: nothing is written to it.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_PLAIN)
async def test_any_script_reaches_the_shell_intact(tmp_path: Path, text: str) -> None:
    # A here-document echoes the script's body back: what the shell read is what was sent.
    # The delimiter begins with DEL, which the text never holds: dash (Debian's /bin/sh)
    # drops a byte of a line that begins with the delimiter's first character and goes on
    # with a non-ASCII one ("E\xa0" came back as "E\ufffd" under "END_OF_TEXT").
    delimiter = "\x7fEND_OF_TEXT_7f3a"
    script = f"cat <<'{delimiter}'\n{text}\n{delimiter}\necho \"[$?]\""
    async with open_tool_server(workdir=tmp_path, limits=fast_limits()) as server:
        client = ToolClient(server, server.open_session())
        output = await client.text("run_command", {"command": script})
    assert output == f"{text}\n[0]\n[exit code 0]"
