"""A look at an API's spool from outside, as an observer that changes nothing: how many events
wait in it, and how many of them a given API process holds under a live lease (its drainer was
delivering them). A SQLite file is opened read-only (``mode=ro``); PostgreSQL is queried in a
read-only transaction. Used right after a ``kill -9``, to record what the dead API left for
whoever drains after it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

# The drainer's lease owner is "<host>:<pid>:<random>" (onboarding.service.drainer.owner_name).
# A released event keeps a future lease_until (its retry time) but no owner: not a lease.
SQLITE_COUNT = """
SELECT count(*),
       coalesce(sum(lease_owner IS NOT NULL AND lease_until > :now), 0),
       coalesce(sum(lease_owner LIKE :owner AND lease_until > :now), 0)
FROM spool_events
"""
POSTGRES_COUNT = """
SELECT count(*),
       count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_until > %(now)s),
       count(*) FILTER (WHERE lease_owner LIKE %(owner)s AND lease_until > %(now)s)
FROM spool_events
"""


@dataclass(frozen=True)
class SpoolSnapshot:
    rows: int  # events waiting in the spool
    leased: int  # of those, under a live lease (an owner, lease_until later than now)
    leased_by: int  # of those, held by the process asked about


def sqlite_path(location: str) -> Path | None:
    """The file of a SQLite spool location (``sqlite:///abs``, ``sqlite:rel`` or a path);
    None for PostgreSQL."""
    if location.startswith(("postgresql://", "postgres://")):
        return None
    if location.startswith("sqlite:"):
        rest = location.removeprefix("sqlite:")
        return Path(rest[2:] if rest.startswith("//") else rest)
    return Path(location)


async def read_spool(location: str, pid: int | None) -> SpoolSnapshot:
    """The spool at ``location`` as it is now; ``leased_by`` counts the leases of the API
    process ``pid`` (0 when None). A SQLite spool without a file yet is empty."""
    now = time.time()
    owner = f"%:{pid}:%" if pid is not None else ""
    path = sqlite_path(location)
    if path is not None:
        return await asyncio.to_thread(_read_sqlite, path, now, owner)
    return await _read_postgres(location, now, owner)


def _read_sqlite(path: Path, now: float, owner: str) -> SpoolSnapshot:
    if not path.exists():  # no API has opened it yet (read-only, we would not create it)
        return SpoolSnapshot(0, 0, 0)
    # Read-only: no schema created, no write lock taken, the WAL left as it is.
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        row = conn.execute(SQLITE_COUNT, {"now": now, "owner": owner}).fetchone()
    finally:
        conn.close()
    return SpoolSnapshot(*(int(v) for v in row))


async def _read_postgres(url: str, now: float, owner: str) -> SpoolSnapshot:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        await conn.set_read_only(True)
        cursor = await conn.execute(POSTGRES_COUNT, {"now": now, "owner": owner})
        row = await cursor.fetchone()
    assert row is not None
    return SpoolSnapshot(*(int(v) for v in row))
