"""The spool in one SQLite file, for one machine (several processes may share the file).

The stdlib ``sqlite3`` runs in one dedicated thread per spool, holding one connection. WAL mode
lets readers work beside the writer; ``synchronous=FULL`` makes every commit durable before we
acknowledge; ``busy_timeout`` makes a process wait for another's write lock instead of failing.
Every write is a ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front, so a read
inside it can never be invalidated by another process's commit.

The byte limit is exact: triggers keep the payloads' total in the one-row ``spool_meta`` table,
in the same transaction as the insert or delete, so ``put`` (and ``stats``) reads one row
instead of summing the table. ``seq`` is ``AUTOINCREMENT``: a removed event's seq is never
reused, so a late ``remove`` from an owner whose lease ran out cannot delete a newer event.

Claiming chooses the user and leases their events inside one ``BEGIN IMMEDIATE`` transaction,
so claims (from every process on the file) run one at a time and each sees the leases of the
ones before it: a user whose events hold a live lease is never chosen again before it ends.

``RETURNING`` needs SQLite 3.35 or newer; ``open`` says so when Python's SQLite is older."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from onboarding.service.spool.base import (
    DeadLetter,
    Spool,
    SpooledEvent,
    SpoolFull,
    SpoolStats,
    SpoolUnavailable,
)
from onboarding.service.spool.rows import epoch, event_from_row, letter_from_row, utc

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    spooled_at REAL NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS spool_events_order ON spool_events (created_at, seq);
CREATE INDEX IF NOT EXISTS spool_events_user ON spool_events (user_id, created_at, seq);
CREATE INDEX IF NOT EXISTS spool_events_spooled ON spool_events (spooled_at);
CREATE TABLE IF NOT EXISTS spool_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL,
    checked_at REAL
);
INSERT OR IGNORE INTO spool_meta (id, bytes) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS spool_events_bytes_in AFTER INSERT ON spool_events
BEGIN UPDATE spool_meta SET bytes = bytes + NEW.size WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS spool_events_bytes_out AFTER DELETE ON spool_events
BEGIN UPDATE spool_meta SET bytes = bytes - OLD.size WHERE id = 1; END;
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    event_id TEXT,
    type TEXT,
    body BLOB NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_order ON dead_letters (received_at, id);
"""

SQLITE_NEEDED = (3, 35, 0)  # RETURNING

TABLES = ("spool_events", "spool_meta", "dead_letters")

# A user is claimable when none of their events holds a live lease (lease_until > now); the
# first is the one whose oldest event comes first.
FIRST_USER = """
SELECT e.user_id FROM spool_events e
WHERE (e.lease_until IS NULL OR e.lease_until <= :now)
  AND NOT EXISTS (
      SELECT 1 FROM spool_events l WHERE l.user_id = e.user_id AND l.lease_until > :now
  )
ORDER BY e.created_at, e.seq LIMIT 1
"""
CLAIM = """
UPDATE spool_events SET lease_owner = :owner, lease_until = :until WHERE seq IN (
    SELECT e.seq FROM spool_events e
    WHERE e.user_id = :user_id AND (e.lease_until IS NULL OR e.lease_until <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM spool_events l WHERE l.user_id = e.user_id AND l.lease_until > :now
      )
    ORDER BY e.created_at, e.seq LIMIT :limit
) RETURNING seq, user_id, event_id, created_at, spooled_at, payload, attempts
"""
LETTERS = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
ORDER BY received_at, id LIMIT :limit
"""
# A place, not a letter: the page continues even if the letter at ``after`` is gone.
LETTERS_AFTER = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
WHERE (received_at, id) > (:at, :id)
ORDER BY received_at, id LIMIT :limit
"""
LETTER = """
SELECT id, received_at, reason, event_id, type, body, replays, last_error FROM dead_letters
WHERE id = :id
"""


class SqliteSpool(Spool):
    def __init__(self, path: Path, max_bytes: int, *, create: bool = True) -> None:
        """``create=False`` (for operator tools): ``open`` creates neither the directory, nor
        the file, nor the schema; it fails when there is no spool at ``path``."""
        self.path = path
        self.max_bytes = max_bytes
        self.create = create
        # Both set together, and only by an ``open`` that succeeded.
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        async with self._open_lock:
            if self._conn is not None:
                return
            if sqlite3.sqlite_version_info < SQLITE_NEEDED:
                raise SpoolUnavailable(
                    f"the SQLite spool needs SQLite {'.'.join(map(str, SQLITE_NEEDED))} or newer"
                    f" (for RETURNING); this Python has SQLite {sqlite3.sqlite_version}"
                )
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-sqlite")
            opened: list[sqlite3.Connection] = []

            def connect() -> None:
                opened.append(self._connect())

            def discard() -> None:
                for conn in opened:
                    conn.close()

            try:
                await self._run(executor, connect)
            except BaseException:
                # Also when cancelled while ``connect`` still runs: the one thread closes what
                # it opened once it is done.
                executor.submit(discard)
                executor.shutdown(wait=False)
                raise
            self._executor, self._conn = executor, opened[0]

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)

    async def put(
        self, user_id: str, event_id: str, created_at: datetime, payload: bytes, now: datetime
    ) -> None:
        row = (user_id, event_id, epoch(created_at), epoch(now), payload, len(payload))

        def put(conn: sqlite3.Connection) -> None:
            (total,) = _one(conn, "SELECT bytes FROM spool_meta WHERE id = 1")
            if total + len(payload) > self.max_bytes:
                raise SpoolFull(
                    f"the spool holds {total} bytes; {len(payload)} more would exceed "
                    f"its limit of {self.max_bytes}"
                )
            conn.execute(
                "INSERT INTO spool_events (user_id, event_id, created_at, spooled_at, payload,"
                " size) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

        await self._write(put)

    async def claim(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[SpooledEvent]:
        args = {"owner": owner, "now": epoch(now), "until": epoch(lease_until), "limit": limit}

        def peek(conn: sqlite3.Connection) -> bool:
            # A read first: an idle drainer polling an empty spool takes no write lock.
            return _one(conn, FIRST_USER, args) is not None

        def claim(conn: sqlite3.Connection) -> list[SpooledEvent]:
            row = _one(conn, FIRST_USER, args)
            if row is None:
                return []
            rows = _all(conn, CLAIM, {**args, "user_id": row[0]})
            return sorted((event_from_row(r) for r in rows), key=lambda e: (e.created_at, e.seq))

        if limit <= 0 or not await self._call(peek):
            return []
        return await self._write(claim)

    async def remove(self, seqs: Sequence[int]) -> None:
        if seqs:
            listed = json.dumps(list(seqs))
            await self._write(
                lambda conn: _all(
                    conn,
                    "DELETE FROM spool_events WHERE seq IN (SELECT value FROM json_each(?))",
                    (listed,),
                )
            )

    async def release(self, seqs: Sequence[int], retry_at: datetime) -> None:
        if seqs:
            args = (epoch(retry_at), json.dumps(list(seqs)))
            await self._write(
                lambda conn: _all(
                    conn,
                    "UPDATE spool_events SET attempts = attempts + 1, lease_owner = NULL,"
                    " lease_until = ? WHERE seq IN (SELECT value FROM json_each(?))",
                    args,
                )
            )

    async def stats(self) -> SpoolStats:
        def stats(conn: sqlite3.Connection) -> SpoolStats:
            # One statement: one snapshot. The bytes are the triggers' running total, the
            # oldest comes from the spooled_at index: only the two counts walk an index.
            depth, size, oldest, letters = _one(
                conn,
                "SELECT (SELECT COUNT(*) FROM spool_events),"
                " COALESCE((SELECT bytes FROM spool_meta WHERE id = 1), 0),"
                " (SELECT MIN(spooled_at) FROM spool_events),"
                " (SELECT COUNT(*) FROM dead_letters)",
            )
            return SpoolStats(depth, size, utc(oldest) if oldest is not None else None, letters)

        return await self._call(stats)

    async def check_writable(self) -> None:
        checked_at = time.time()
        await self._write(
            lambda conn: conn.execute(
                "UPDATE spool_meta SET checked_at = ? WHERE id = 1", (checked_at,)
            )
        )

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
        row = (letter.id, epoch(now), reason, event_id, type_, body)
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO dead_letters (id, received_at, reason, event_id, type, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
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
        rows = await self._call(lambda conn: _all(conn, query, args))
        return [letter_from_row(r) for r in rows]

    async def dead_letter(self, id_: str) -> DeadLetter | None:
        row = await self._call(lambda conn: _one(conn, LETTER, {"id": id_}))
        return letter_from_row(row) if row is not None else None

    async def remove_dead_letter(self, id_: str) -> bool:
        count = await self._write(
            lambda conn: conn.execute("DELETE FROM dead_letters WHERE id = ?", (id_,)).rowcount
        )
        return bool(count)

    async def note_replay_failure(self, id_: str, error: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE dead_letters SET replays = replays + 1, last_error = ? WHERE id = ?",
                (error, id_),
            )
        )

    # --- the thread ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """In the spool's thread: the open connection, the schema in place."""
        # Autocommit (isolation_level=None): we say BEGIN IMMEDIATE ourselves.
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        else:
            if not self.path.exists():
                raise SpoolUnavailable(f"the spool file does not exist at {self.path}")
            # mode=rw: never creates the file, even if it vanished since the check.
            uri = self.path.absolute().as_uri() + "?mode=rw"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            # busy_timeout first: switching to WAL and creating the schema may wait for
            # another process doing the same.
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self.create:
                found = {
                    name
                    for (name,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                }
                missing = [table for table in TABLES if table not in found]
                if missing:
                    raise SpoolUnavailable(
                        f"the file at {self.path} is not a spool (it has no "
                        f"{', '.join(missing)} table)"
                    )
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            if self.create:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(SCHEMA):
                        conn.execute(statement)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._call(transaction)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise SpoolUnavailable(f"the SQLite spool at {self.path} is not open")
        return await self._run(executor, lambda: work(conn))

    async def _run(self, executor: ThreadPoolExecutor, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, work)
        except (sqlite3.Error, OSError) as err:
            raise SpoolUnavailable(f"the SQLite spool at {self.path} failed: {err}") from err


# Every statement runs to its end and its cursor is closed before the next one: a statement
# left part-way (a ``fetchone`` of a SELECT) keeps a read open, and SQLite then reported API
# misuse under load in a later ``executemany`` (lists of seqs now go as one JSON array).
def _one(conn: sqlite3.Connection, sql: str, args: Any = ()) -> Any:
    with contextlib.closing(conn.execute(sql, args)) as cursor:
        rows = cursor.fetchall()
    return rows[0] if rows else None


def _all(conn: sqlite3.Connection, sql: str, args: Any = ()) -> list[Any]:
    with contextlib.closing(conn.execute(sql, args)) as cursor:
        return cursor.fetchall()


def _statements(script: str) -> list[str]:
    """Split the schema on statement ends, keeping each trigger's body whole."""
    statements: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, waiting as ``busy_timeout`` would: when several processes
    open a fresh spool at once, SQLite may answer the switch with SQLITE_BUSY at once instead of
    calling the busy handler, so it is tried again until the same deadline."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            busy = err.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # extended codes too
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
