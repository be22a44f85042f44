"""The spool's contract (``base.Spool``), the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from onboarding.service.spool import (
    DeadLetter,
    Spool,
    SpooledEvent,
    SpoolFull,
    SpoolStats,
    SpoolUnavailable,
)

from .conftest import T0, Spools, at

FAR = at(3600)


async def put(spool: Spool, user: str, event: str, created: float, size: int = 10) -> None:
    await spool.put(user, event, at(created), event.encode().ljust(size, b"."), T0)


def ids(events: list[SpooledEvent]) -> list[str]:
    return [e.event_id for e in events]


async def test_claim_returns_one_users_events_by_created_at_then_seq(spool: Spool) -> None:
    await put(spool, "u1", "late", created=5)
    await put(spool, "u1", "tie-first", created=1)
    await put(spool, "u1", "tie-second", created=1)  # same created_at: put order (seq) decides
    await put(spool, "u1", "middle", created=3)

    events = await spool.claim("owner", T0, FAR, limit=10)

    assert ids(events) == ["tie-first", "tie-second", "middle", "late"]
    assert events[0].seq < events[1].seq
    first = events[0]
    assert (first.user_id, first.created_at, first.spooled_at) == ("u1", at(1), T0)
    assert (first.payload, first.attempts) == (b"tie-first.", 0)
    assert first.created_at.utcoffset() == timedelta(0)


async def test_claim_picks_the_user_whose_oldest_event_is_oldest(spool: Spool) -> None:
    await put(spool, "later-user", "l1", created=10)
    await put(spool, "earlier-user", "e2", created=20)
    await put(spool, "earlier-user", "e1", created=2)

    first = await spool.claim("a", T0, FAR, limit=10)
    second = await spool.claim("b", T0, FAR, limit=10)

    assert {e.user_id for e in first} == {"earlier-user"}
    assert ids(first) == ["e1", "e2"]
    assert ids(second) == ["l1"]
    assert await spool.claim("c", T0, FAR, limit=10) == []


async def test_claim_takes_at_most_limit(spool: Spool) -> None:
    for i in range(5):
        await put(spool, "u", f"e{i}", created=i)

    assert await spool.claim("z", T0, FAR, limit=0) == []
    for expected in (["e0", "e1"], ["e2", "e3"], ["e4"]):
        claimed = await spool.claim("a", T0, FAR, limit=2)
        assert ids(claimed) == expected
        await spool.remove([e.seq for e in claimed])
    assert await spool.claim("a", T0, FAR, limit=2) == []


async def test_a_user_with_a_live_lease_is_not_claimable(spool: Spool) -> None:
    for i in range(4):
        await put(spool, "u", f"e{i}", created=i)
    held = await spool.claim("a", T0, at(30), limit=2)
    assert ids(held) == ["e0", "e1"]

    # Neither the rest of the user's events, nor one that arrives while the batch is out,
    # nor one that arrives late with an older created_at.
    await put(spool, "u", "arrived-meanwhile", created=10)
    await put(spool, "u", "arrived-late", created=-1)
    assert await spool.claim("b", T0, FAR, limit=10) == []
    assert await spool.claim("b", at(29.999), FAR, limit=10) == []

    await spool.remove([e.seq for e in held])
    after = await spool.claim("b", T0, FAR, limit=10)
    assert ids(after) == ["arrived-late", "e2", "e3", "arrived-meanwhile"]


async def test_after_a_release_the_user_waits_for_retry_at(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    batch = await spool.claim("a", T0, FAR, limit=10)
    await put(spool, "u", "e2", created=2)  # newer, arrives while e1 is out
    await spool.release([e.seq for e in batch], retry_at=at(60))

    assert await spool.claim("b", at(1), FAR, limit=10) == []  # e2 does not overtake e1
    assert await spool.claim("b", at(59.999), FAR, limit=10) == []
    retried = await spool.claim("b", at(60), FAR, limit=10)
    assert [(e.event_id, e.attempts) for e in retried] == [("e1", 1), ("e2", 0)]


async def test_a_leased_user_does_not_block_other_users(spool: Spool) -> None:
    await put(spool, "busy", "b1", created=1)  # the oldest event of all
    await put(spool, "busy", "b2", created=4)
    await put(spool, "other", "o1", created=2)
    await put(spool, "third", "t1", created=3)

    busy = await spool.claim("a", T0, FAR, limit=1)
    assert ids(busy) == ["b1"]
    assert ids(await spool.claim("b", T0, FAR, limit=10)) == ["o1"]

    await spool.release([e.seq for e in busy], retry_at=at(60))  # waiting for its retry
    assert ids(await spool.claim("c", at(1), FAR, limit=10)) == ["t1"]
    assert await spool.claim("d", at(1), FAR, limit=10) == []
    assert ids(await spool.claim("d", at(60), FAR, limit=10)) == ["b1", "b2"]


async def test_a_leased_event_is_claimable_again_only_when_its_lease_ends(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    await put(spool, "u", "e2", created=2)

    held = await spool.claim("a", T0, at(30), limit=10)
    assert ids(held) == ["e1", "e2"]

    assert await spool.claim("b", at(29.999), at(60), limit=10) == []
    again = await spool.claim("b", at(30), at(60), limit=10)  # ended at or before now
    assert [e.seq for e in again] == [e.seq for e in held]


async def test_release_counts_an_attempt_and_delays_the_next_claim(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    seqs = [e.seq for e in await spool.claim("a", T0, FAR, limit=10)]

    await spool.release(seqs, retry_at=at(60))
    assert await spool.claim("b", at(59), FAR, limit=10) == []
    retried = await spool.claim("b", at(60), at(120), limit=10)
    assert [(e.event_id, e.attempts) for e in retried] == [("e1", 1)]

    await spool.release(seqs, retry_at=at(61))
    assert [e.attempts for e in await spool.claim("c", at(61), FAR, limit=10)] == [2]
    await spool.release([], retry_at=at(99))  # nothing to do


async def test_release_frees_an_unexpired_lease_at_retry_at(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    seqs = [e.seq for e in await spool.claim("a", T0, FAR, limit=10)]
    await spool.release(seqs, retry_at=at(5))  # before the lease would have ended
    assert ids(await spool.claim("b", at(5), FAR, limit=10)) == ["e1"]


async def test_remove_deletes_and_ignores_unknown_seqs(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    await put(spool, "v", "e2", created=2)
    claimed = await spool.claim("a", T0, FAR, limit=10)

    await spool.remove([e.seq for e in claimed] + [987654321])
    await spool.remove([])

    assert (await spool.stats()).depth == 1
    assert ids(await spool.claim("b", at(7200), FAR, limit=10)) == ["e2"]


async def test_seqs_are_never_reused(spool: Spool) -> None:
    await put(spool, "u", "e1", created=1)
    await put(spool, "u", "e2", created=2)
    claimed = await spool.claim("a", T0, FAR, limit=10)
    await spool.remove([claimed[-1].seq])  # the highest seq
    await put(spool, "u", "e3", created=3)

    rest = await spool.claim("b", FAR, at(7200), limit=10)
    assert ids(rest) == ["e1", "e3"]
    assert rest[1].seq > claimed[-1].seq


async def test_stats(spool: Spool) -> None:
    assert await spool.stats() == SpoolStats(0, 0, None, 0)

    await spool.put("u", "e1", at(1), b"abc", now=at(100))
    await spool.put("v", "e2", at(2), b"defgh", now=at(50))
    await spool.add_dead_letter(b"{}", "unusable", None, None, now=at(3))

    assert await spool.stats() == SpoolStats(depth=2, bytes=8, oldest_spooled_at=at(50),
                                             dead_letters=1)  # fmt: skip


async def test_put_refuses_what_would_exceed_max_bytes_and_writes_nothing(
    spools: Spools,
) -> None:
    spool = await spools.open(max_bytes=100)
    await put(spool, "u", "e1", created=1, size=60)
    await put(spool, "u", "e2", created=2, size=40)  # exactly at the limit: taken

    with pytest.raises(SpoolFull):
        await put(spool, "u", "e3", created=3, size=1)

    assert (await spool.stats()).depth == 2
    assert (await spool.stats()).bytes == 100
    claimed = await spool.claim("a", T0, FAR, limit=10)
    assert ids(claimed) == ["e1", "e2"]

    await spool.remove([claimed[0].seq])  # frees 60 bytes
    await put(spool, "u", "e4", created=4, size=60)
    with pytest.raises(SpoolFull):
        await put(spool, "u", "e5", created=5, size=1)


async def test_dead_letters_are_kept_listed_in_pages_and_removed(spool: Spool) -> None:
    body = b'{"id": "et-1", "type": "ACCOUNT_CONNECTED"}\xff'  # bytes as received, not text
    first = await spool.add_dead_letter(body, "no user id", "et-1", "ACCOUNT_CONNECTED", at(0.5))
    assert first == DeadLetter(first.id, at(0.5), "no user id", "et-1", "ACCOUNT_CONNECTED",
                               body, 0, None)  # fmt: skip
    assert len(first.id) == 32 and int(first.id, 16) >= 0
    others = [await spool.add_dead_letter(b"x", f"r{i}", None, None, at(i // 2)) for i in range(5)]

    expected = sorted([first, *others], key=lambda d: (d.received_at, d.id))
    pages: list[list[DeadLetter]] = []
    after: tuple[datetime, str] | None = None
    while page := await spool.dead_letters(limit=2, after=after):
        pages.append(page)
        after = (page[-1].received_at, page[-1].id)
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [d for p in pages for d in p] == expected

    assert await spool.dead_letter(first.id) == first
    assert await spool.dead_letter("0" * 32) is None

    await spool.note_replay_failure(first.id, "workflow rejected it")
    await spool.note_replay_failure(first.id, "still rejected")
    noted = await spool.dead_letter(first.id)
    assert noted is not None and (noted.replays, noted.last_error) == (2, "still rejected")
    await spool.note_replay_failure("0" * 32, "unknown: ignored")

    assert await spool.remove_dead_letter(first.id) is True
    assert await spool.remove_dead_letter(first.id) is False
    assert first.id not in [d.id for d in await spool.dead_letters(limit=100)]
    assert (await spool.stats()).dead_letters == 5


async def test_a_page_continues_after_its_last_letter_was_discarded(spool: Spool) -> None:
    # Equal received_at times: the id orders them, and the cursor must hold both.
    letters = [await spool.add_dead_letter(b"x", f"r{i}", None, None, at(i // 3)) for i in range(7)]
    expected = sorted(letters, key=lambda d: (d.received_at, d.id))

    page1 = await spool.dead_letters(limit=3)
    assert page1 == expected[:3]
    assert await spool.remove_dead_letter(page1[-1].id)  # discarded from the first page

    page2 = await spool.dead_letters(limit=3, after=(page1[-1].received_at, page1[-1].id))
    assert page2 == expected[3:6]
    page3 = await spool.dead_letters(limit=3, after=(page2[-1].received_at, page2[-1].id))
    assert page3 == expected[6:]
    assert await spool.dead_letters(limit=3, after=(page3[-1].received_at, page3[-1].id)) == []


async def test_dead_letters_do_not_count_against_max_bytes(spools: Spools) -> None:
    spool = await spools.open(max_bytes=10)
    await spool.add_dead_letter(b"y" * 100, "unusable", None, None, T0)
    await put(spool, "u", "e1", created=1, size=10)
    assert (await spool.stats()).bytes == 10


async def test_a_restart_finds_everything_where_it_was(spools: Spools) -> None:
    before = await spools.open()
    for i in range(3):
        await put(before, "u", f"e{i}", created=i)
    await put(before, "v", "v0", created=10)
    leased = await before.claim("a", T0, at(30), limit=10)
    letter = await before.add_dead_letter(b"body", "bad", "et-9", None, T0)
    stats = await before.stats()
    await before.close()

    after = await spools.open()
    assert await after.stats() == stats
    assert await after.dead_letter(letter.id) == letter
    assert ids(await after.claim("b", at(1), FAR, limit=10)) == ["v0"]  # u's are still leased
    assert await after.claim("b", at(29), FAR, limit=10) == []
    assert await after.claim("b", at(30), FAR, limit=10) == leased


async def test_several_instances_open_one_fresh_store_at_once(spools: Spools) -> None:
    instances = [spools.new() for _ in range(4)]
    await asyncio.gather(*(s.open() for s in instances))
    for i, spool in enumerate(instances):
        await put(spool, f"u{i}", f"e{i}", created=i)
        await spool.open()  # again: nothing happens
    assert (await instances[0].stats()).depth == 4
    await instances[1].check_writable()


class Held:
    """Claims as concurrent deliverers see them: each batch with the time it was held, from
    when ``claim`` returned to when ``remove`` was called (within the lease's true span)."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, float, str, list[SpooledEvent]]] = []

    async def deliver_until_empty(self, spool: Spool, owner: str, total: int, limit: int) -> None:
        deadline = time.monotonic() + 30
        while sum(len(b[3]) for b in self.batches) < total:
            assert time.monotonic() < deadline, "the spool was not drained by the deadline"
            events = await spool.claim(owner, T0, FAR, limit=limit)
            if not events:
                await asyncio.sleep(0.001)  # polling: another owner holds what is left
                continue
            started = time.monotonic()
            await asyncio.sleep(0.002)  # delivering
            self.batches.append((started, time.monotonic(), owner, events))
            await spool.remove([e.seq for e in events])
            await asyncio.sleep(0.001)  # on to other work: the others get their turn

    def assert_one_owner_at_a_time_in_order(self) -> dict[str, list[SpooledEvent]]:
        """Per user: no two batches held at once, and the batches in the order they were held
        are the user's events in (created_at, seq) order. Returns the events per user."""
        per_user: dict[str, list[tuple[float, float, list[SpooledEvent]]]] = {}
        for started, ended, _, events in self.batches:
            assert len({e.user_id for e in events}) == 1
            per_user.setdefault(events[0].user_id, []).append((started, ended, events))
        delivered: dict[str, list[SpooledEvent]] = {}
        for user, batches in per_user.items():
            batches.sort(key=lambda b: b[0])
            for before, after in itertools.pairwise(batches):
                assert before[1] <= after[0], f"two owners held {user}'s events at once"
            delivered[user] = [e for _, _, events in batches for e in events]
            in_order = sorted(delivered[user], key=lambda e: (e.created_at, e.seq))
            assert [e.seq for e in delivered[user]] == [e.seq for e in in_order]
        return delivered


async def test_concurrent_claimers_deliver_one_user_one_batch_at_a_time(spools: Spools) -> None:
    writer = await spools.open()
    order = list(range(250))
    random.Random(7).shuffle(order)  # put out of order, with created_at ties (seq decides)
    for i in order:
        await put(writer, "the-user", f"e{i}", created=i // 3)
    claimers = [await spools.open() for _ in range(4)]
    held = Held()

    await asyncio.gather(
        *(held.deliver_until_empty(c, f"owner-{n}", 250, limit=20) for n, c in enumerate(claimers))
    )

    delivered = held.assert_one_owner_at_a_time_in_order()["the-user"]
    assert len(delivered) == len({e.seq for e in delivered}) == 250
    assert [e.created_at for e in delivered] == sorted(at(i // 3) for i in range(250))
    assert len({owner for _, _, owner, _ in held.batches}) > 1  # they did take turns
    assert (await writer.stats()).depth == 0


async def test_concurrent_claimers_share_users_but_never_an_event(spools: Spools) -> None:
    writer = await spools.open()
    for i in range(150):
        await put(writer, f"user-{i % 12}", f"e{i}", created=i % 17)
    claimers = [await spools.open() for _ in range(4)]
    held = Held()

    await asyncio.gather(
        *(held.deliver_until_empty(claimers[n % 4], f"owner-{n}", 150, limit=5) for n in range(8))
    )

    delivered = held.assert_one_owner_at_a_time_in_order()
    everything = [e.seq for events in delivered.values() for e in events]
    assert len(everything) == len(set(everything)) == 150
    assert len(delivered) == 12
    assert len({owner for _, _, owner, _ in held.batches}) > 1  # they did share the work


async def test_a_dropped_table_makes_the_spool_unavailable(spools: Spools) -> None:
    spool = await spools.open()
    await put(spool, "u", "e1", created=1)
    await spools.execute("DROP TABLE spool_events")

    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: spool.put("u", "e2", at(2), b"secret-payload", T0),
        lambda: spool.claim("a", T0, FAR, limit=10),
        spool.stats,
    ]
    for operation in operations:
        with pytest.raises(SpoolUnavailable, match="spool_events") as raised:
            await operation()
        assert "secret-payload" not in str(raised.value)


async def test_check_writable(spool: Spool) -> None:
    await spool.check_writable()
    await spool.check_writable()


async def test_naive_datetimes_are_refused(spool: Spool) -> None:
    with pytest.raises(ValueError, match="aware"):
        await spool.put("u", "e", datetime(2025, 1, 1), b"x", T0)
