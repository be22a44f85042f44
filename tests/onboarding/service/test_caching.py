"""The short-lived, single-flight cache in front of the scrape-time metrics and the console's
funnel: one load per ``ttl`` however many readers, by an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from onboarding.service.caching import Snapshot, TtlCache
from tests.conftest import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loads:
    """A load that counts its calls and, while ``gate`` is shut, waits for it."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.calls += 1
        self.started.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.calls


async def test_a_value_is_kept_for_ttl_seconds_then_loaded_again() -> None:
    clock, load = Clock(), Loads()
    cache: TtlCache[int] = TtlCache(5.0, clock)

    assert await cache.get(load) == 1
    clock.now += 4.9
    assert await cache.get(load) == 1
    assert load.calls == 1
    clock.now += 0.1  # 5 s after the load came in
    assert await cache.get(load) == 2
    assert await cache.get(load) == 2
    assert load.calls == 2


async def test_readers_arriving_during_a_load_await_that_one_load() -> None:
    load = Loads()
    load.gate.clear()
    cache: TtlCache[int] = TtlCache(5.0, Clock())

    readers = [asyncio.create_task(cache.get(load)) for _ in range(50)]
    await load.started.wait()
    assert load.calls == 1
    load.gate.set()
    assert await asyncio.gather(*readers) == [1] * 50
    assert load.calls == 1


async def test_a_failed_load_is_not_kept_and_the_next_reader_tries_again() -> None:
    load = Loads()
    load.gate.clear()
    load.fail = RuntimeError("backend down")
    cache: TtlCache[int] = TtlCache(5.0, Clock())

    readers = [asyncio.create_task(cache.get(load)) for _ in range(3)]
    await load.started.wait()
    load.gate.set()
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["backend down"] * 3
    assert load.calls == 1

    load.fail = None
    assert await cache.get(load) == 2


async def test_a_cancelled_reader_leaves_the_load_to_the_others() -> None:
    load = Loads()
    load.gate.clear()
    cache: TtlCache[int] = TtlCache(5.0, Clock())

    first = asyncio.create_task(cache.get(load))
    second = asyncio.create_task(cache.get(load))
    await load.started.wait()
    first.cancel()  # the client that started the load went away
    with pytest.raises(asyncio.CancelledError):
        await first
    load.gate.set()
    assert await second == 1
    assert await cache.get(load) == 1  # and its value is kept
    assert load.calls == 1


async def test_with_no_ttl_every_read_loads_but_never_two_at_once() -> None:
    load = Loads()
    cache: TtlCache[int] = TtlCache(0.0, Clock())
    assert [await cache.get(load) for _ in range(3)] == [1, 2, 3]

    load.gate.clear()
    load.started.clear()
    readers = [asyncio.create_task(cache.get(load)) for _ in range(5)]
    await load.started.wait()
    load.gate.set()
    assert await asyncio.gather(*readers) == [4] * 5


# --- Snapshot: stale while revalidating -------------------------------------------------------


async def test_a_snapshot_answers_at_once_and_refreshes_in_the_background() -> None:
    clock, load = Clock(), Loads()
    snapshot: Snapshot[int] = Snapshot(10.0, clock)
    first = [asyncio.create_task(snapshot.get(load)) for _ in range(5)]
    assert await asyncio.gather(*first) == [1] * 5  # the first readers wait, for one load
    assert load.calls == 1
    clock.now += 10.0
    load.gate.clear()  # the refresh will hang until let go
    load.started.clear()
    assert await snapshot.get(load) == 1  # old, but at once
    await load.started.wait()
    assert await snapshot.get(load) == 1 and load.calls == 2  # one refresh, not two
    load.gate.set()

    async def refreshed() -> None:
        assert await snapshot.get(load) == 2

    await eventually(refreshed)
    assert load.calls == 2


async def test_a_failed_refresh_keeps_the_last_snapshot_and_a_first_failure_is_seen() -> None:
    clock, load = Clock(), Loads()
    snapshot: Snapshot[int] = Snapshot(10.0, clock)
    load.fail = RuntimeError("visibility away")
    with pytest.raises(RuntimeError, match="visibility away"):
        await snapshot.get(load)
    load.fail = None
    assert await snapshot.get(load) == 2
    clock.now += 11.0
    load.fail = RuntimeError("away again")
    load.started.clear()
    assert await snapshot.get(load) == 2
    await load.started.wait()

    async def failed_quietly() -> None:
        assert load.calls == 3 and await snapshot.get(load) == 2

    await eventually(failed_quietly)
