"""A cut Pod log stream is taken up again with no line lost or written twice, whatever the
timestamps: equal ones (two lines read together, a coarse node clock), whole seconds, stdout and
stderr lines stamped slightly out of order. A property over the follower and a model of the
API's ``sinceTime``; then end to end, the double's kubelet on a coarse clock and its log streams
cut inside the CA block."""

from __future__ import annotations

import contextlib
import datetime
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kubernetes.kube_double import KubeDouble, open_kube_double
from tests.kubernetes.kube_harness import IMAGE, run_warden
from trio_sandbox import SandboxConfig, open_sandbox
from trio_sandbox.warden.kubernetes._api import KubeApi
from trio_sandbox.warden.kubernetes._logs import LogFollower

_EPOCH = datetime.datetime(2026, 12, 7, 1, 0, 0, tzinfo=datetime.UTC)


def _stamp(milliseconds: int, coarse: bool) -> str:
    moment = _EPOCH + datetime.timedelta(milliseconds=milliseconds)
    if coarse:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The kubelet trims the fraction's trailing zeros.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


class _AsyncLines:
    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def __aiter__(self) -> _AsyncLines:
        return self

    async def __anext__(self) -> str:
        await trio.lowlevel.checkpoint()
        try:
            return next(self._lines)
        except StopIteration:
            raise StopAsyncIteration from None


@attrs.define(eq=False)
class _LogModel:
    """The API's log streams: lines at or after ``sinceTime``'s second, in log order; each stream
    shows the lines written so far and may be cut after some of them."""

    log: list[tuple[str, str]]
    visible: list[int]  # how much of the log each next stream sees
    cuts: list[int | None]  # lines before each next stream ends (None: it ends with the log)
    requests: list[str | None] = attrs.field(factory=list)

    @contextlib.asynccontextmanager
    async def log_lines(self, pod: str, *, since_time: str | None) -> AsyncIterator[_AsyncLines]:
        self.requests.append(since_time)
        seen = self.visible.pop(0) if self.visible else len(self.log)
        cut = self.cuts.pop(0) if self.cuts else None
        lines = [
            f"{stamp} {text}"
            for stamp, text in self.log[:seen]
            if since_time is None or stamp.partition(".")[0].rstrip("Z") + "Z" >= since_time
        ]
        yield _AsyncLines(iter(lines[:cut] if cut is not None else lines))


# Steps between lines, in milliseconds: mostly none (equal stamps), some across a second.
_steps = st.lists(st.sampled_from([0, 0, 0, 1, 250, 999, 1000, 1001, 2500]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    steps=_steps,
    # Out of order by less than a second: stdout and stderr stamped by two writers.
    jitter=st.lists(st.integers(0, 999), max_size=60),
    coarse=st.lists(st.booleans(), max_size=60),
    cuts=st.lists(st.one_of(st.none(), st.integers(0, 8)), max_size=20),
    growth=st.lists(st.integers(0, 60), max_size=20),
)
def test_cut_streams_bring_every_line_once(
    steps: list[int],
    jitter: list[int],
    coarse: list[bool],
    cuts: list[int | None],
    growth: list[int],
) -> None:
    log: list[tuple[str, str]] = []
    now = 0
    for index, step in enumerate(steps):
        now += step
        shift = jitter[index] if index < len(jitter) else 0
        rough = coarse[index] if index < len(coarse) else False
        log.append((_stamp(max(now - shift, 0), rough), f"line {index}"))
    # Each stream sees at least what the one before saw: the log only grows.
    visible = sorted(min(grown, len(log)) for grown in growth)
    model = _LogModel(log, visible, list(cuts))
    out = trio.testing.MemorySendStream()

    async def follow_all() -> None:
        follower = LogFollower(cast(KubeApi, model), "pod", out)
        for _ in range(len(cuts) + len(growth) + 1):
            await follower.follow_once()

    trio.run(follow_all)
    out.close()  # so that an empty log reads as empty
    written = out.get_data_nowait().decode().splitlines()
    assert written == [text for _s, text in log]


@given(
    before=st.integers(0, 5),
    together=st.integers(1, 20),
    cut=st.integers(1, 20),
)
def test_lines_sharing_one_stamp_survive_a_cut_among_them(
    before: int, together: int, cut: int
) -> None:
    """The reviewer's case: lines read together share their stamp, the stream is cut among them."""
    log = [(_stamp(0, False), f"early {i}") for i in range(before)]
    log += [(_stamp(1500, False), f"together {i}") for i in range(together)]
    model = _LogModel(log, [], [cut])
    out = trio.testing.MemorySendStream()

    async def follow_twice() -> None:
        follower = LogFollower(cast(KubeApi, model), "pod", out)
        await follower.follow_once()
        await follower.follow_once()

    trio.run(follow_twice)
    out.close()
    assert out.get_data_nowait().decode().splitlines() == [text for _s, text in log]


# ---- end to end: the double's kubelet on a coarse clock -------------------------------------


@pytest.fixture
async def coarse_double(tmp_path: Path) -> AsyncIterator[KubeDouble]:
    async with open_kube_double(tmp_path) as served:
        served.kubelet.coarse_log_clock = True
        yield served


async def test_warden_writes_every_line_once_on_a_coarse_clock(coarse_double: KubeDouble) -> None:
    coarse_double.cut_log_streams = [2, 1, 1, 3, 1]
    script = "for i in 1 2 3 4 5 6 7 8; do echo line-$i; done; sleep 1; echo last"
    result = await run_warden(coarse_double, command=["sh", "-c", script])
    expected = "".join(f"line-{i}\n" for i in range(1, 9)) + "last\n"
    assert (result.returncode, result.stdout.decode()) == (0, expected)


async def test_sandbox_starts_with_its_ca_block_cut_on_a_coarse_clock(
    coarse_double: KubeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stream cut after one or two lines: the block is cut inside, several times, and
    its lines share their stamps. The host still reads the whole block; the next call works."""
    monkeypatch.setenv("KUBECONFIG", str(coarse_double.kubeconfig))
    monkeypatch.setenv("TRIO_SANDBOX_K8S_PYTHON", sys.executable)
    monkeypatch.setenv("TRIO_SANDBOX_K8S_START_TIMEOUT", "30")
    coarse_double.cut_log_streams = [1, 2] * 15
    async with open_sandbox(
        SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE)
    ) as sandbox:
        for word in ("first", "next"):
            result = await sandbox.call_tool("run_command", {"command": f"echo {word}"})
            text = "".join(getattr(item, "text", "") for item in result.content)
            assert text.startswith(word)
        (runtime,) = coarse_double.kubelet.runtimes.values()
        stamps = [stamp for stamp, line in runtime.log if "STAKPAK SERVER CA" in line]
        assert len(set(stamps)) == 1  # the block's first and last line share their stamp
    assert len(coarse_double.cut_log_streams) < 30 - 10  # the block's lines were cut many times
