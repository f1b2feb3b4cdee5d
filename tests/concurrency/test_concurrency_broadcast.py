"""AsyncValue, the one broadcast value: who wakes, in what order, what a slow reader skips, and
that an equal value is not a change. Waiting runs on virtual time (an autojump MockClock)."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest
import trio
import trio.testing

from trio_sandbox.concurrency import AsyncValue


async def test_setting_wakes_every_waiter_with_the_new_value(autojump_clock: Any) -> None:
    value = AsyncValue(0)
    seen: list[tuple[str, int]] = []

    async def waiter(name: str) -> None:
        seen.append((name, await value.wait_change()))

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(waiter, name)
        await trio.testing.wait_all_tasks_blocked()
        value.value = 1
    assert sorted(seen) == [("a", 1), ("b", 1), ("c", 1)]
    assert value.value == 1


async def test_an_equal_value_is_not_a_change(autojump_clock: Any) -> None:
    value = AsyncValue("idle")
    with trio.move_on_after(10) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(value.wait_change)
            await trio.testing.wait_all_tasks_blocked()
            value.value = "idle"
            await trio.sleep(5)
            assert nursery.child_tasks  # still waiting: nothing changed
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught


async def test_wait_value_returns_at_once_when_the_predicate_holds(autojump_clock: Any) -> None:
    value = AsyncValue(3)
    began = trio.current_time()
    assert await value.wait_value(lambda v: v > 2) == 3
    assert trio.current_time() == began


async def test_wait_value_waits_for_the_predicate_not_for_any_change(autojump_clock: Any) -> None:
    value = AsyncValue(0)
    got: list[int] = []

    async def wait_for_big() -> None:
        got.append(await value.wait_value(lambda v: v >= 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_big)
        for step in (1, 5, 9):
            await trio.sleep(1)
            value.value = step
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
        await trio.sleep(1)
        value.value = 12
    assert got == [12]


async def test_wait_value_checks_cancellation_even_when_it_holds() -> None:
    value = AsyncValue(True)
    with trio.CancelScope() as scope:
        scope.cancel()
        await value.wait_value(bool)
        pytest.fail("a cancelled wait_value returned")  # pragma: no cover
    assert scope.cancelled_caught


async def test_a_slow_reader_skips_intermediate_values_but_sees_the_latest(
    autojump_clock: Any,
) -> None:
    value = AsyncValue(0)
    seen: list[int] = []

    async def slow_reader() -> None:
        async with aclosing(value.eventual_values()) as values:
            async for current in values:
                seen.append(current)
                if current == 5:
                    return
                await trio.sleep(10)  # busy elsewhere while the value moves on

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_reader)
        await trio.testing.wait_all_tasks_blocked()
        for step in range(1, 6):
            value.value = step
            await trio.sleep(1)
    # 0 first; then, after each nap, only the latest (1..4 were passed over while it slept)
    assert seen[0] == 0
    assert seen[-1] == 5
    assert len(seen) < 6
    assert seen == sorted(seen)


async def test_eventual_values_does_not_repeat_an_unchanged_value(autojump_clock: Any) -> None:
    value = AsyncValue("a")
    seen: list[str] = []

    async def reader() -> None:
        async with aclosing(value.eventual_values()) as values:
            async for current in values:
                seen.append(current)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        value.value = "a"  # equal: not a change
        await trio.sleep(1)
        value.value = "b"
        await trio.sleep(1)
        value.value = "b"
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert seen == ["a", "b"]


async def test_wakeups_follow_the_order_of_changes(autojump_clock: Any) -> None:
    value = AsyncValue(0)
    seen: list[int] = []

    async def follower() -> None:
        while len(seen) < 3:
            seen.append(await value.wait_change())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        for step in (1, 2, 3):
            await trio.testing.wait_all_tasks_blocked()
            value.value = step
    assert seen == [1, 2, 3]


async def test_a_cancelled_waiter_leaves_the_others_waiting(autojump_clock: Any) -> None:
    value = AsyncValue(0)
    woken: list[int] = []

    async def waiter() -> None:
        woken.append(await value.wait_change())

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(1) as scope:
            await value.wait_change()
        assert scope.cancelled_caught
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        value.value = 7
    assert woken == [7]
