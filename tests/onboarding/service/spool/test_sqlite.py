"""The SQLite spool beyond the contract: its pragmas, and several processes on one file."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from asyncio.subprocess import PIPE
from collections import defaultdict
from pathlib import Path

import pytest

from onboarding.service.spool import SpoolUnavailable, SqliteSpool

from .conftest import PLENTY, T0, at

# One writer process: puts ``count`` events for ``user`` with rising created_at.
WRITER = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from onboarding.service.spool import SqliteSpool

async def main(path: str, user: str, count: int) -> None:
    spool = SqliteSpool(Path(path), 10**9)
    await spool.open()
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(count):
        await spool.put(user, f"{user}-{i}", base + timedelta(seconds=i), b"x" * 32, base)
    await spool.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_write_while_this_one_claims(tmp_path: Path) -> None:
    path, per_writer = tmp_path / "shared.sqlite3", 150
    spool = SqliteSpool(path, PLENTY)
    await spool.open()
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), user, str(per_writer), stdout=PIPE, stderr=PIPE
        )
        for user in ("writer-a", "writer-b")
    ]
    received: dict[str, list[str]] = defaultdict(list)
    seqs: list[int] = []
    deadline = time.monotonic() + 20
    try:
        while len(seqs) < 2 * per_writer:
            assert time.monotonic() < deadline, f"received {len(seqs)} events by the deadline"
            events = await spool.claim("drainer", T0, at(3600), limit=20)
            if not events:
                await asyncio.sleep(0.01)  # polling for the writers' next commits
                continue
            for event in events:
                received[event.user_id].append(event.event_id)
            seqs.extend(e.seq for e in events)
            await spool.remove([e.seq for e in events])
        outputs = [await writer.communicate() for writer in writers]
    finally:
        for writer in writers:
            if writer.returncode is None:
                writer.kill()
                await writer.wait()
        await spool.close()

    assert [w.returncode for w in writers] == [0, 0], outputs
    assert len(set(seqs)) == len(seqs)
    for user in ("writer-a", "writer-b"):  # each user's events came out in their order
        assert received[user] == [f"{user}-{i}" for i in range(per_writer)]


async def test_the_file_is_in_wal_mode_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "spool.sqlite3"
    spool = SqliteSpool(path, PLENTY)
    await spool.open()
    await spool.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_a_spool_made_before_the_spooled_at_index_gets_it_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = SqliteSpool(path, PLENTY)
    await spool.open()
    await spool.put("u", "e1", at(1), b"abc", now=at(20))
    await spool.close()
    with sqlite3.connect(path) as conn:  # as a spool of an earlier version left it
        conn.execute("DROP INDEX spool_events_spooled")
    conn.close()

    for opening in (1, 2):  # the second opening finds it there
        spool = SqliteSpool(path, PLENTY)
        await spool.open()
        await spool.put("v", f"v{opening}", at(2), b"defgh", now=at(10))
        stats = await spool.stats()
        await spool.close()
        assert (stats.depth, stats.oldest_spooled_at) == (1 + opening, at(10))
        assert stats.bytes == 3 + 5 * opening  # spool_meta's running total
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            str(row)
            for row in conn.execute("EXPLAIN QUERY PLAN SELECT MIN(spooled_at) FROM spool_events")
        )
    conn.close()
    assert "spool_events_spooled" in plan


async def test_storage_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    spool = SqliteSpool(tmp_path / "a-file" / "spool.sqlite3", PLENTY)
    with pytest.raises(SpoolUnavailable, match="a-file"):
        await spool.open()
    with pytest.raises(SpoolUnavailable, match="not open"):
        await spool.check_writable()


async def test_an_old_sqlite_is_refused_with_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    spool = SqliteSpool(tmp_path / "new" / "spool.sqlite3", PLENTY)
    with pytest.raises(SpoolUnavailable, match=r"3\.35\.0 or newer.*SQLite 3\.31\.1"):
        await spool.open()
    assert not (tmp_path / "new").exists()
    await spool.close()


async def test_create_false_opens_an_existing_spool_only(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "spool.sqlite3"
    tool = SqliteSpool(path, PLENTY, create=False)
    with pytest.raises(SpoolUnavailable, match="the spool file does not exist at") as raised:
        await tool.open()
    assert str(path) in str(raised.value)
    assert not (tmp_path / "not-yet").exists()  # neither the directory nor the file

    path.parent.mkdir()
    with pytest.raises(SpoolUnavailable, match="does not exist"):
        await tool.open()
    assert list(path.parent.iterdir()) == []

    service = SqliteSpool(path, PLENTY)
    await service.open()
    await service.put("u", "e1", T0, b"x", T0)
    await service.close()

    await tool.open()  # now there is one: the same instance opens after failing twice
    try:
        assert (await tool.stats()).depth == 1
        assert [e.event_id for e in await tool.claim("op", T0, at(60), limit=10)] == ["e1"]
    finally:
        await tool.close()


async def test_create_false_refuses_a_file_that_is_not_a_spool(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE something_else (x)")
    conn.close()
    tool = SqliteSpool(path, PLENTY, create=False)
    with pytest.raises(SpoolUnavailable, match="is not a spool"):
        await tool.open()
    with sqlite3.connect(path) as conn:  # nothing was added to it
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["something_else"]


async def test_a_failed_open_can_be_retried_and_closed(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    spool = SqliteSpool(blocker / "spool.sqlite3", PLENTY)
    for _ in range(2):
        with pytest.raises(SpoolUnavailable, match="data"):
            await spool.open()
        await spool.close()  # harmless
        with pytest.raises(SpoolUnavailable, match="not open"):
            await spool.stats()

    blocker.unlink()
    await spool.open()
    try:
        await spool.put("u", "e1", T0, b"x", T0)
        assert (await spool.stats()).depth == 1
    finally:
        await spool.close()
    await spool.close()  # twice: harmless


async def test_a_cancelled_open_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    first = SqliteSpool(path, PLENTY)
    await first.open()
    await first.close()

    # Another process holds the write lock: open waits for it (busy_timeout) ...
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    spool = SqliteSpool(path, PLENTY)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(spool.open(), 0.2)  # ... and is given up
        with pytest.raises(SpoolUnavailable, match="not open"):
            await spool.stats()
    finally:
        other.execute("ROLLBACK")
        other.close()

    await spool.open()
    try:
        await spool.check_writable()
    finally:
        await spool.close()
