"""End to end with the real bubblewrap warden and the real tool server (real time, bounded):
tools listed and called, the tool server killed inside and the next call served after the
respawn, cancellation in the middle of startup; and after ``open_sandbox`` exits, no child
process, listening socket, temporary file or task of ours remains."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from tests.sandbox.sandbox_fakes import all_tasks
from trio_sandbox.sandbox import SandboxConfig, SandboxRestarted, open_sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def processes_with(marker: str) -> list[int]:
    """Pids whose command line or environment holds ``marker`` (ours, whatever their parent)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{part}", "rb") as source:
                    if needle in source.read():
                        found.append(int(entry))
                        break
            except OSError:
                continue
    return found


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every temporary file of ours (and of the warden, which inherits TMPDIR) lands here."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def marker() -> str:
    return f"trio-sandbox-e2e-{uuid.uuid4().hex}"


def e2e_config(marker: str) -> SandboxConfig:
    # The marker lands in the command lines and environments of everything we start.
    return SandboxConfig(env={"TRIO_SANDBOX_E2E_MARK": marker}, stop_grace=5.0)


async def test_tools_calls_respawn_and_a_clean_teardown(private_tmp: Path, marker: str) -> None:
    tasks_before = all_tasks()
    with trio.fail_after(90):
        async with open_sandbox(e2e_config(marker)) as sandbox:
            names = {tool.name for tool in sandbox.tools}
            assert {"run_command", "view", "create", "str_replace"} <= names
            assert {tool.name for tool in await sandbox.list_tools()} == names
            result = await sandbox.call_tool(
                "run_command", {"command": "id -u; echo $STAKPAK_MCP_PORT"}
            )
            assert not result.is_error
            assert result.text_content.split()[:2] == ["65534", "8080"]
            proxy_port = port_of(sandbox.proxy_url)
            first_url = sandbox.sandbox_url
            assert first_url is not None
            first_warden = sandbox.warden_pid
            assert first_warden is not None
            assert processes_with(marker)  # the scan can see what we started
            assert {proxy_port, port_of(first_url)} <= listening_ports()

            # kill -9 the tool server inside (the parent of the command's keeper): the call
            # doing it fails as restarted, the next one runs on the respawned sandbox.
            kill = 'kill -9 "$(cut -d" " -f4 /proc/$PPID/stat)"; sleep 5'
            with pytest.raises(SandboxRestarted):
                await sandbox.call_tool("run_command", {"command": kill})
            result = await sandbox.call_tool("run_command", {"command": "echo back"})
            assert "back" in result.text_content
            assert sandbox.health.generation == 2
            assert sandbox.health.healthy
            assert sandbox.warden_pid != first_warden
            assert sandbox.proxy_url.endswith(f":{proxy_port}/mcp")
            second_warden = sandbox.warden_pid
            second_url = sandbox.sandbox_url
            assert second_warden is not None
            assert second_url is not None
        # Nothing of ours remains: processes, listening sockets, temporary files, tasks.
        for pid in (first_warden, second_warden):
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)
        assert processes_with(marker) == []
        assert not {proxy_port, port_of(first_url), port_of(second_url)} & listening_ports()
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", proxy_port)),
        ):
            pass
        assert files_in(private_tmp) == []
        assert all_tasks() == tasks_before


class _StageEvents(logging.Handler):
    """Sets an event when the sandbox logs a start-up milestone containing ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()  # logging runs in the Trio thread: setting the event is safe


# Cancel at each milestone of a start: the warden started, its CA block read, the tool
# server answering (the proxy not started yet).
@pytest.mark.parametrize("when", ["warden running", "server CA received", "tool server ready"])
async def test_cancelling_in_the_middle_of_startup_leaves_nothing(
    private_tmp: Path, marker: str, when: str
) -> None:
    tasks_before = all_tasks()
    stages = logging.getLogger("trio_sandbox.stages")
    milestone = _StageEvents(when)
    stages.addHandler(milestone)
    stages.setLevel(logging.INFO)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:

                async def start_then_hang() -> None:
                    async with open_sandbox(e2e_config(marker)):
                        pytest.fail(
                            "it was meant to be cancelled while starting"
                        )  # pragma: no cover

                nursery.start_soon(start_then_hang)
                if when == "warden running":
                    while not processes_with(marker):  # noqa: ASYNC110 - a process has no event
                        await trio.sleep(0.005)
                else:
                    await milestone.seen.wait()
                nursery.cancel_scope.cancel()  # what Ctrl-C does to a trio program
    finally:
        stages.removeHandler(milestone)
    assert processes_with(marker) == []
    assert files_in(private_tmp) == []
    assert all_tasks() == tasks_before
