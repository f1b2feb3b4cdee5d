"""The one signal runner: ``main`` runs until a stop signal, a further signal is told apart, one
recorded before Trio ran stops ``main`` before it starts (or, asked, starts it cancelled), and
the recording loads without Trio. SIGUSR1 stands in for the stop signals so that the test
runner's own SIGINT stays untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_sandbox.concurrency import early_signals, record_early_signals, run_until_signalled

SIGNALS = (signal.SIGUSR1,)


@pytest.fixture
def restore_sigusr1() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
        record_early_signals(())  # forget what the test recorded


async def test_main_runs_to_its_result_without_a_signal() -> None:
    async def main() -> str:
        await trio.lowlevel.checkpoint()
        return "done"

    assert await run_until_signalled(main, signals=SIGNALS) == "done"


async def test_a_signal_cancels_main_and_a_second_one_is_told_apart(restore_sigusr1: None) -> None:
    stopping: list[int] = []
    again: list[int] = []
    told_again = trio.Event()

    def on_again(signum: int) -> None:
        again.append(signum)
        told_again.set()

    async def main() -> str:
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await trio.sleep_forever()
        finally:
            # an orderly stop that takes a while: the next signal comes meanwhile
            with trio.CancelScope(shield=True):
                os.kill(os.getpid(), signal.SIGUSR1)
                await told_again.wait()
        return "not reached"  # pragma: no cover

    with trio.fail_after(10):
        result = await run_until_signalled(
            main, on_signal=stopping.append, on_again=on_again, signals=SIGNALS
        )
    assert result is None
    assert stopping == [signal.SIGUSR1]
    assert again == [signal.SIGUSR1]


async def test_a_signal_during_the_start_cancels_the_start(restore_sigusr1: None) -> None:
    reached: list[str] = []

    async def main() -> str:
        os.kill(os.getpid(), signal.SIGUSR1)
        await trio.sleep(30)  # "starting"
        reached.append("started")  # pragma: no cover
        return "started"  # pragma: no cover

    with trio.fail_after(10):
        assert await run_until_signalled(main, signals=SIGNALS) is None
    assert reached == []


async def test_a_signal_recorded_before_trio_stops_main_before_it_starts(
    restore_sigusr1: None,
) -> None:
    record_early_signals(SIGNALS)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert early_signals() == (signal.SIGUSR1,)
    stopping: list[int] = []
    ran: list[bool] = []

    async def main() -> str:
        ran.append(True)  # pragma: no cover
        return "ran"  # pragma: no cover

    assert await run_until_signalled(main, on_signal=stopping.append, signals=SIGNALS) is None
    assert stopping == [signal.SIGUSR1]
    assert ran == []


async def test_with_early_cancel_main_starts_cancelled_and_cleans_up(
    restore_sigusr1: None,
) -> None:
    """The warden's case: what its back end launched before Trio must still be stopped."""
    record_early_signals(SIGNALS)
    os.kill(os.getpid(), signal.SIGUSR1)
    stopping: list[int] = []
    steps: list[str] = []

    async def main() -> str:
        steps.append("started")
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.lowlevel.checkpoint()
                steps.append("cleaned up")
        return "ran"  # pragma: no cover

    result = await run_until_signalled(
        main, on_signal=stopping.append, signals=SIGNALS, early="cancel"
    )
    assert result is None
    assert stopping == [signal.SIGUSR1]
    assert steps == ["started", "cleaned up"]


async def test_recorded_signals_of_other_kinds_do_not_stop_main(restore_sigusr1: None) -> None:
    record_early_signals(SIGNALS)
    os.kill(os.getpid(), signal.SIGUSR1)

    async def main() -> int:
        return 1

    assert await run_until_signalled(main, signals=(signal.SIGUSR2,)) == 1


def test_recording_early_signals_loads_without_trio() -> None:
    probe = (
        "import sys\n"
        "from trio_sandbox.concurrency import record_early_signals\n"
        "record_early_signals()\n"
        "print('trio' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert done.stdout.strip() == b"False"
