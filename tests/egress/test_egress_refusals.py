"""The refusals endpoint the tool server asks after each command, and its query parser."""

from __future__ import annotations

import math
import time

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.egress.egress_harness import open_connection, receive_all, running_proxy
from trio_sandbox.egress import REFUSALS_PATH, EgressPolicy, EventLine, Verdict, ask_refusals
from trio_sandbox.egress._errors import RefusalQueryError
from trio_sandbox.egress._refusals import (
    parse_refusals_query,
    refusals_target,
)
from trio_sandbox.tools._network_notes import NetworkNotes


async def refuse(port: int, host: str) -> None:
    async with await open_connection(port) as stream:
        await stream.send_all(f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert (await stream.receive_some(12)).startswith(b"HTTP/1.1 403")


async def test_refusals_since_a_moment_and_only_those() -> None:
    async with running_proxy(EgressPolicy.parse(["allowed.test"])) as proxy:
        await refuse(proxy.port, "early.test")
        middle = time.time()
        await refuse(proxy.port, "late.test")
        await refuse(proxy.port, "later.test:8080")
        assert await ask_refusals("127.0.0.1", proxy.port, middle) == [
            "refused late.test:80 (not in allow_domains)",
            "refused later.test:8080 (not in allow_domains)",
        ]
        assert await ask_refusals("127.0.0.1", proxy.port, time.time() + 1) == []
        assert len(await ask_refusals("127.0.0.1", proxy.port, 0.0)) == 3
        # Asking is not a decision: nothing was logged or counted for it.
        assert len(proxy.events) == 3


async def test_the_notes_name_a_repeated_refusal_once_with_its_count() -> None:
    async with running_proxy(EgressPolicy.parse([])) as proxy:
        started = NetworkNotes.now()
        for _ in range(40):
            await refuse(proxy.port, "loop.test")
        await refuse(proxy.port, "once.test")
        notes = await NetworkNotes(f"127.0.0.1:{proxy.port}").since(started)
    assert notes == (
        "[network] refused: loop.test:80 (not in allow_domains) (40 times)\n"
        "[network] refused: once.test:80 (not in allow_domains)\n"
    )


async def test_the_list_is_bounded() -> None:
    async with running_proxy(EgressPolicy.parse([])) as proxy:
        for index in range(105):
            await refuse(proxy.port, f"host{index}.test")
        lines = await ask_refusals("127.0.0.1", proxy.port, 0.0)
    assert len(lines) == 100
    assert lines[0].startswith("refused host5.test:80")


@pytest.mark.parametrize("query", ["", "?since=", "?since=soon", "?since=nan", "?since=1&since=2"])
async def test_a_bad_query_is_a_400_and_other_paths_are_still_refused(query: str) -> None:
    async with running_proxy(EgressPolicy.parse([])) as proxy:
        async with await open_connection(proxy.port) as stream:
            await stream.send_all(
                f"GET {REFUSALS_PATH}{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            answer = await receive_all(stream)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"expected ?since=<seconds since the epoch>" in answer
        async with await open_connection(proxy.port) as stream:
            await stream.send_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"this is a proxy" in await receive_all(stream)


async def test_asking_a_proxy_that_is_gone_raises_oserror() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with pytest.raises(OSError, match=r"all attempts to connect .* failed"):
        await ask_refusals("127.0.0.1", port, 0.0)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_since_round_trips(since: float) -> None:
    assert parse_refusals_query(refusals_target(since)) == since


@given(st.text())
def test_the_query_parser_accepts_finite_numbers_or_raises_its_error(query: str) -> None:
    try:
        since = parse_refusals_query(f"{REFUSALS_PATH}?{query}")
    except RefusalQueryError:
        return
    assert math.isfinite(since)


@given(
    st.sampled_from(list(Verdict)),
    st.text(
        alphabet=st.characters(blacklist_characters=" \n", blacklist_categories=["Cs"]), min_size=1
    ),
    st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=["Cs"])),
)
def test_event_lines_read_back(verdict: Verdict, target: str, detail: str) -> None:
    assert EventLine.parse(f"{verdict.value} {target} ({detail})") == EventLine(
        verdict, target, detail
    )


@pytest.mark.parametrize(
    "line", ["", "allowed", "allowed x.test:80", "maybe x.test:80 (why)", "refused  (why)"]
)
def test_other_lines_are_not_event_lines(line: str) -> None:
    assert EventLine.parse(line) is None
