"""The real warden launcher against a fake warden script (fake_warden.py) that misbehaves:
one test per fault, asserting the SandboxStartError step, exit status and stderr tail, or the
respawn; and that no process is left behind. Deadlines (the 60 s CA deadline, readiness) fire
under an autojump MockClock."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_sandbox.sandbox import SandboxConfig, SandboxStartError, open_sandbox
from trio_sandbox.tls import MtlsIdentity

FAKE_WARDEN = str(Path(__file__).with_name("fake_warden.py"))
HTTPS_ONLY_TOOL_SERVER = str(Path(__file__).with_name("https_only_tool_server.py"))


def config_for(mode: str, **changes: Any) -> SandboxConfig:
    return SandboxConfig(warden=(sys.executable, FAKE_WARDEN, mode), **changes)


def read_pid(path: Path) -> int:
    return int(path.read_text())


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # its process group too: it was the group's leader


@pytest.fixture
def pidfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warden.pid"
    monkeypatch.setenv("FAKE_WARDEN_PIDFILE", str(path))
    return path


async def start_error(config: SandboxConfig) -> SandboxStartError:
    with pytest.raises(SandboxStartError) as caught:
        await enter_and_leave(config)
    return caught.value


async def enter_and_leave(config: SandboxConfig) -> None:
    async with open_sandbox(config):
        pass  # pragma: no cover - these configurations never start


@pytest.mark.parametrize(
    ("mode", "status", "in_reason", "in_stderr"),
    [
        ("die", 3, "ended before", "cannot create the sandbox: permission denied"),
        ("exit-before-ca", 2, "ended before", "the tool server exited with status 1"),
        ("empty-block", 5, "empty", "printed an empty block"),
        ("truncated", 6, "", "cut short"),
    ],
)
async def test_a_warden_without_a_good_ca_block_fails_the_start(
    mode: str, status: int, in_reason: str, in_stderr: str, pidfile: Path
) -> None:
    with trio.fail_after(20):
        error = await start_error(config_for(mode))
    assert error.step == "ca"
    assert error.exit_status == status
    assert in_reason in error.reason
    assert in_stderr in error.stderr_tail
    assert f"warden exit status {status}" in str(error)
    assert_gone(read_pid(pidfile))


async def test_garbage_output_is_survived_and_only_the_stderr_tail_is_kept(pidfile: Path) -> None:
    with trio.fail_after(20):
        error = await start_error(config_for("garbage"))
    assert (error.step, error.exit_status) == ("ca", 4)
    assert len(error.stderr_tail.encode()) <= 4096
    assert error.stderr_tail.endswith("LAST STDERR LINE\n")
    assert "stderr line 0000" not in error.stderr_tail
    assert_gone(read_pid(pidfile))


async def test_a_missing_warden_fails_at_the_warden_step() -> None:
    config = SandboxConfig(warden=("/nonexistent/warden",))
    with trio.fail_after(20):
        error = await start_error(config)
    assert error.step == "warden"
    assert "/nonexistent/warden" in error.reason


async def test_a_stopped_warden_hits_the_ca_deadline_then_is_killed(
    autojump_clock: Any, pidfile: Path
) -> None:
    # Jump only after the warden had real time to start (and stop itself): a threshold of 0
    # would fire the deadline while it is still loading.
    autojump_clock.autojump_threshold = 0.3
    started = trio.current_time()
    error = await start_error(config_for("stop"))
    elapsed = trio.current_time() - started
    assert error.step == "ca"
    assert "no server CA block within 60 s" in error.reason
    assert error.exit_status is None  # still there (stopped) when the deadline fired
    # 60 s deadline, 0.5 s for it to exit on its own, 10 s of grace after SIGINT, then SIGKILL.
    assert elapsed == pytest.approx(70.5, abs=0.2)
    assert_gone(read_pid(pidfile))


async def test_a_tool_server_that_never_answers_fails_at_the_ready_step(
    autojump_clock: Any, pidfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    autojump_clock.autojump_threshold = 0.3
    monkeypatch.setenv("FAKE_WARDEN_CA", MtlsIdentity.generate_server().ca_cert_pem())
    error = await start_error(config_for("no-server", ready_timeout=1.0, stop_grace=1.0))
    assert error.step == "ready"
    assert "did not answer" in error.reason
    assert "connect" in error.reason.lower() or "refused" in error.reason
    assert error.exit_status is None
    assert_gone(read_pid(pidfile))


async def test_a_slow_warden_starts_and_a_killed_one_is_respawned(
    pidfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_WARDEN_DELAY", "0.3")
    with trio.fail_after(60):
        async with open_sandbox(config_for("slow")) as sandbox:
            first_pid = sandbox.warden_pid
            assert first_pid is not None
            assert first_pid == read_pid(pidfile)
            result = await sandbox.call_tool("run_command", {"command": "echo one"})
            assert "one" in result.text_content
            os.kill(first_pid, signal.SIGKILL)
            while sandbox.health.generation < 2:
                await sandbox.wait_health_change()
            assert sandbox.warden_pid != first_pid
            result = await sandbox.call_tool("run_command", {"command": "echo two"})
            assert "two" in result.text_content
            assert sandbox.health.total_respawn_attempts == 1
            second_pid = sandbox.warden_pid
            assert second_pid is not None
        assert_gone(first_pid)
        assert_gone(second_pid)


async def test_our_tool_server_is_reached_over_websocket_and_an_https_only_one_over_https() -> None:
    """The host asks for WebSocket first (our tool server takes it on the same endpoint: less
    work per call); a tool server that answers the upgrade with an HTTP status, as the original
    one does, is spoken to over HTTPS at once, the contract's URL."""
    with trio.fail_after(60):
        async with open_sandbox(config_for("ok", warm_spares=0)) as sandbox:
            assert (sandbox.sandbox_url or "").startswith("wss://127.0.0.1:")
            result = await sandbox.call_tool("run_command", {"command": "echo over wss"})
            assert "over wss" in result.text_content
        https_only = config_for(
            "ok", warm_spares=0, command=[sys.executable, HTTPS_ONLY_TOOL_SERVER]
        )
        async with open_sandbox(https_only) as sandbox:
            assert (sandbox.sandbox_url or "").startswith("https://127.0.0.1:")
            result = await sandbox.call_tool("echo", {"text": "over https"})
            assert result.text_content == "over https"
            assert sandbox.start_timeline["ready"] - sandbox.start_timeline["first_attempt"] < 5
