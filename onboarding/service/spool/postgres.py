"""The spool in PostgreSQL, for several API replicas sharing one database.

``psycopg`` 3 (async) through a small ``psycopg_pool`` pool; every statement commits on its own
(autocommit) unless it needs a transaction. Every psycopg failure (connection, pool time-out,
missing table or right, …) becomes :class:`SpoolUnavailable`, whose message names the database
without its password and quotes no data (PostgreSQL's DETAIL lines, which may quote a row, are
left out).

Claiming is one READ COMMITTED transaction of two statements. The first chooses the user (the
first whose events hold no live lease) and takes a transaction-scoped advisory lock on it with
``pg_try_advisory_xact_lock`` (evaluated on that one row only); a user another claimer has
locked is passed over for the next. The second statement, with a snapshot taken after the lock
was granted, leases that user's events, checking again that none holds a live lease. The lock
is held until commit, so a claimer that gets it after another claimed the user sees that
claim's leases and takes nothing; then it tries the next user. Hence one user's events are held
by one owner at a time and come out in order.

The byte limit uses ``SUM(size)`` at most a second old: each instance sums the table when its
figure is older than that and adds its own puts and removes in between. An exact counter would
be one row every replica's every put updates, serialising them all on its lock; the cost of
the cached sum is that replicas together may go past the limit by what they take in a second."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from onboarding.service.spool.base import (
    DeadLetter,
    Spool,
    SpooledEvent,
    SpoolFull,
    SpoolStats,
    SpoolUnavailable,
)
from onboarding.service.spool.rows import epoch, event_from_row, letter_from_row, utc

POOL_MIN, POOL_MAX = 1, 4
BYTES_MAX_AGE = 1.0  # seconds a summed byte total may be used for
SCHEMA_LOCK = 0x5F5E_5E01  # pg_advisory_xact_lock key: one schema creation at a time
# Claim locks are pg_try_advisory_xact_lock(CLAIM_LOCKS, hashtext(user_id)): the two-key form,
# a lock space apart from SCHEMA_LOCK's (and from most other users of advisory locks).
CLAIM_LOCKS = 0x5370_6F6F
CLAIM_TRIES = 16  # users tried per claim before giving up until the next one

TABLES_EXIST = """
SELECT to_regclass('spool_events') IS NOT NULL AND to_regclass('spool_meta') IS NOT NULL
   AND to_regclass('dead_letters') IS NOT NULL
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS spool_events (
    seq bigserial PRIMARY KEY,
    user_id text NOT NULL,
    event_id text NOT NULL,
    created_at double precision NOT NULL,
    spooled_at double precision NOT NULL,
    payload bytea NOT NULL,
    size integer NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until double precision
);
CREATE INDEX IF NOT EXISTS spool_events_order ON spool_events (created_at, seq);
CREATE INDEX IF NOT EXISTS spool_events_user ON spool_events (user_id, created_at, seq);
CREATE TABLE IF NOT EXISTS spool_meta (
    id integer PRIMARY KEY CHECK (id = 1),
    checked_at double precision
);
INSERT INTO spool_meta (id) VALUES (1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS dead_letters (
    id text PRIMARY KEY,
    received_at double precision NOT NULL,
    reason text NOT NULL,
    event_id text,
    type text,
    body bytea NOT NULL,
    replays integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS dead_letters_order ON dead_letters (received_at, id);
"""
PUT = """
INSERT INTO spool_events (user_id, event_id, created_at, spooled_at, payload, size)
VALUES (%s, %s, %s, %s, %s, %s)
"""
# The first claimable user not in %(passed)s, and whether this transaction got its lock. The
# LIMIT keeps the subquery apart, so the lock is tried on the one row it returns, not on every
# row the planner happens to filter.
CLAIM_USER = """
SELECT first.user_id, pg_try_advisory_xact_lock(%(locks)s, hashtext(first.user_id))
FROM (
    SELECT e.user_id FROM spool_events e
    WHERE (e.lease_until IS NULL OR e.lease_until <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM spool_events l WHERE l.user_id = e.user_id AND l.lease_until > %(now)s
      )
      AND e.user_id <> ALL(%(passed)s)
    ORDER BY e.created_at, e.seq LIMIT 1
) AS first
"""
# Run once the user's lock is held: a new snapshot, which sees every lease committed before.
CLAIM_EVENTS = """
WITH picked AS (
    SELECT e.seq FROM spool_events e
    WHERE e.user_id = %(user_id)s AND (e.lease_until IS NULL OR e.lease_until <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM spool_events l WHERE l.user_id = e.user_id AND l.lease_until > %(now)s
      )
    ORDER BY e.created_at, e.seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE spool_events AS e SET lease_owner = %(owner)s, lease_until = %(until)s
FROM picked WHERE e.seq = picked.seq
RETURNING e.seq, e.user_id, e.event_id, e.created_at, e.spooled_at, e.payload, e.attempts
"""
STATS = """
SELECT (SELECT count(*) FROM spool_events), (SELECT COALESCE(sum(size), 0) FROM spool_events),
       (SELECT min(spooled_at) FROM spool_events), (SELECT count(*) FROM dead_letters)
"""
LETTERS = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
ORDER BY received_at, id LIMIT %(limit)s
"""
# A place, not a letter: the page continues even if the letter at ``after`` is gone.
LETTERS_AFTER = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
WHERE (received_at, id) > (%(at)s, %(id)s)
ORDER BY received_at, id LIMIT %(limit)s
"""
LETTER = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
WHERE id = %s
"""


def describe(conninfo: str) -> str:
    """The database a connection string names, without its password (or any other option):
    what may go into messages and logs."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        if "://" in conninfo:
            return redact_url(conninfo) + " (unparsable)"
        return "an unparsable PostgreSQL connection string"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


def redact_url(url: str) -> str:
    """``url`` without user information, query or fragment (any may hold a secret). Cut at the
    last ``@`` of all, not the authority's: a password may hold an unescaped ``/`` or ``?``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, sep, rest = url.partition(":")
    rest = re.split(r"[?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    return f"{scheme}{sep}{rest}"


class PostgresSpool(Spool):
    def __init__(self, url: str, max_bytes: int, *, timeout: float = 5.0) -> None:
        """``timeout``: how long to wait for a connection (at open, and from the pool)."""
        try:
            password = conninfo_to_dict(url).get("password")
        except psycopg.Error:
            # psycopg's message quotes the string, password and all.
            raise ValueError(
                f"invalid PostgreSQL URL {describe(url)}: percent-encode special characters "
                "(spaces, '@', '/') in the user name and password"
            ) from None
        self._url = url
        self._password = str(password) if password else None
        self.description = describe(url)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._connect_timeout = max(2, round(timeout))  # libpq's minimum is 2 s
        self._pool: AsyncConnectionPool[AsyncConnection[TupleRow]] | None = None
        # The payloads' total as last summed plus this instance's changes since; the
        # generation tells a failed put whether its reservation is still in the figure.
        self._bytes: int | None = None
        self._bytes_at = 0.0
        self._bytes_generation = 0
        self._bytes_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresSpool({self.description!r}, max_bytes={self.max_bytes})"

    async def open(self) -> None:
        async with self._open_lock:
            if self._pool is not None:
                return
            pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
                self._url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                open=False,
                timeout=self.timeout,
                kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
                # A connection that died with a server restart is replaced, not handed out.
                check=AsyncConnectionPool.check_connection,
                configure=_configure,
                name="spool",
            )
            try:
                await pool.open(wait=True, timeout=self.timeout)
                async with pool.connection() as conn:
                    await _create_schema(conn)
            except BaseException as err:
                # The spool stays closed (``_pool`` is None): ``open`` may be tried again.
                await pool.close()
                if isinstance(err, psycopg.Error):
                    raise await self._unavailable(err) from None
                raise
            self._bytes = None  # summed afresh: others may have changed the table meanwhile
            self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def put(
        self, user_id: str, event_id: str, created_at: datetime, payload: bytes, now: datetime
    ) -> None:
        size = len(payload)
        row = (user_id, event_id, epoch(created_at), epoch(now), payload, size)
        async with self._connection() as conn:
            total = await self._total_bytes(conn)
            if total + size > self.max_bytes:
                raise SpoolFull(
                    f"the spool holds about {total} bytes; {size} more would exceed "
                    f"its limit of {self.max_bytes}"
                )
            # Reserved before the insert, so this instance's concurrent puts count it.
            self._bytes, generation = total + size, self._bytes_generation
            try:
                await conn.execute(PUT, row)
            except BaseException:
                if self._bytes is not None and generation == self._bytes_generation:
                    self._bytes -= size
                raise

    async def claim(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[SpooledEvent]:
        if limit <= 0:
            return []
        args: dict[str, Any] = {
            "owner": owner,
            "now": epoch(now),
            "until": epoch(lease_until),
            "limit": limit,
            "locks": CLAIM_LOCKS,
        }
        passed: list[str] = []  # users another claimer holds, or just claimed
        async with self._connection() as conn, conn.transaction():
            for _ in range(CLAIM_TRIES):
                cursor = await conn.execute(CLAIM_USER, {**args, "passed": passed})
                chosen = await cursor.fetchone()
                if chosen is None:
                    return []  # nothing claimable
                user_id, locked = chosen
                if locked:
                    cursor = await conn.execute(CLAIM_EVENTS, {**args, "user_id": user_id})
                    rows = await cursor.fetchall()
                    if rows:
                        return sorted(
                            (event_from_row(r) for r in rows), key=lambda e: (e.created_at, e.seq)
                        )
                    # Another claimer leased the user between our two snapshots.
                passed.append(user_id)
        return []

    async def remove(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        async with self._connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM spool_events WHERE seq = ANY(%s) RETURNING size", (list(seqs),)
            )
            freed = sum(size for (size,) in await cursor.fetchall())
        if self._bytes is not None:
            self._bytes = max(0, self._bytes - freed)

    async def release(self, seqs: Sequence[int], retry_at: datetime) -> None:
        if not seqs:
            return
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE spool_events SET attempts = attempts + 1, lease_owner = NULL,"
                " lease_until = %s WHERE seq = ANY(%s)",
                (epoch(retry_at), list(seqs)),
            )

    async def stats(self) -> SpoolStats:
        async with self._connection() as conn:
            row = await (await conn.execute(STATS)).fetchone()
        if row is None:
            raise SpoolUnavailable(
                f"the PostgreSQL spool at {self.description} returned no row for its stats"
            )
        depth, size, oldest, letters = row
        oldest_at = utc(oldest) if oldest is not None else None
        return SpoolStats(int(depth), int(size), oldest_at, int(letters))

    async def check_writable(self) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE spool_meta SET checked_at = %s WHERE id = 1", (time.time(),))

    # --- the dead-letter -----------------------------------------------------------------

    async def add_dead_letter(
        self,
        body: bytes,
        reason: str,
        event_id: str | None,
        type_: str | None,
        now: datetime,
    ) -> DeadLetter:
        letter = DeadLetter(uuid.uuid4().hex, now, reason, event_id, type_, body, 0, None)
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO dead_letters (id, received_at, reason, event_id, type, body)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (letter.id, epoch(now), reason, event_id, type_, body),
            )
        return letter

    async def dead_letters(
        self, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[DeadLetter]:
        query = LETTERS
        args: dict[str, object] = {"limit": limit}
        if after is not None:  # a place, not a letter: see LETTERS_AFTER
            query = LETTERS_AFTER
            args |= {"at": epoch(after[0]), "id": after[1]}
        async with self._connection() as conn:
            rows = await (await conn.execute(query, args)).fetchall()
        return [letter_from_row(r) for r in rows]

    async def dead_letter(self, id_: str) -> DeadLetter | None:
        async with self._connection() as conn:
            row = await (await conn.execute(LETTER, (id_,))).fetchone()
        return letter_from_row(row) if row is not None else None

    async def remove_dead_letter(self, id_: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute("DELETE FROM dead_letters WHERE id = %s", (id_,))
            return cursor.rowcount > 0

    async def note_replay_failure(self, id_: str, error: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE dead_letters SET replays = replays + 1, last_error = %s WHERE id = %s",
                (error, id_),
            )

    # --- internals -----------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        if self._pool is None:
            raise SpoolUnavailable(f"the PostgreSQL spool at {self.description} is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as err:
            raise await self._unavailable(err) from None

    async def _total_bytes(self, conn: AsyncConnection[TupleRow]) -> int:
        async with self._bytes_lock:  # one sum at a time; the others use its result
            if self._bytes is None or time.monotonic() - self._bytes_at >= BYTES_MAX_AGE:
                cursor = await conn.execute("SELECT COALESCE(sum(size), 0) FROM spool_events")
                row = await cursor.fetchone()
                if row is None:
                    raise SpoolUnavailable(
                        f"the PostgreSQL spool at {self.description} returned no byte total"
                    )
                self._bytes, self._bytes_at = int(row[0]), time.monotonic()
                self._bytes_generation += 1
            return self._bytes

    async def _unavailable(self, err: Exception) -> SpoolUnavailable:
        if isinstance(err, PoolTimeout):
            # The pool only says it waited; one connection of our own says why.
            try:
                probe = await asyncio.wait_for(
                    AsyncConnection.connect(self._url, connect_timeout=self._connect_timeout),
                    self._connect_timeout + 1,
                )
            except (psycopg.Error, TimeoutError) as failure:
                err = failure
            else:
                await probe.close()
        reason = _reason(err)
        if self._password:
            reason = reason.replace(self._password, "***")
        return SpoolUnavailable(
            f"the PostgreSQL spool at {self.description} is unavailable: {reason}"
        )


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    # The claim relies on each statement of its transaction taking a new snapshot, whatever
    # the server's default_transaction_isolation says.
    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)


def _reason(err: Exception) -> str:
    """What went wrong, on one line, quoting no data: of an error the server sent, only its
    primary message (its DETAIL may quote a row: "Failing row contains (…)"), and not even
    that for a data exception (class 22: "invalid input syntax for type …: <the value>")."""
    sqlstate = getattr(err, "sqlstate", None)
    if isinstance(err, psycopg.Error) and sqlstate:
        if sqlstate.startswith("22"):
            return f"{type(err).__name__} (SQLSTATE {sqlstate})"
        primary = err.diag.message_primary or type(err).__name__
        return f"{' '.join(primary.split())} (SQLSTATE {sqlstate})"
    return " ".join(str(err).split()) or type(err).__name__


async def _create_schema(conn: AsyncConnection[TupleRow]) -> None:
    row = await (await conn.execute(TABLES_EXIST)).fetchone()
    if row is not None and row[0]:
        return  # a role with no CREATE right may still use an existing spool
    # CREATE ... IF NOT EXISTS races between two processes (a unique violation in the
    # catalogue): the lock makes the second wait, then find everything there.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        await conn.execute(SCHEMA)
