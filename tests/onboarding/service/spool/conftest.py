"""Spool fixtures: one throwaway PostgreSQL cluster for the session, and ``spool`` on both
backends (a fresh SQLite file or a fresh database each test) so one set of contract tests runs
on each."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from onboarding.service.spool import PostgresSpool, Spool, SqliteSpool
from onboarding.tooling.pgcluster import PostgresCluster

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
PLENTY = 10**9


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Spools:
    """Spool instances on one storage (one file, one database), closed after the test."""

    def __init__(
        self,
        backend: str,
        make: Callable[[int], Spool],
        execute: Callable[[str], Awaitable[None]],
    ) -> None:
        self.backend = backend
        self._make = make
        self._made: list[Spool] = []
        self.execute = execute  # one SQL statement on the storage, behind the spools' backs

    def new(self, max_bytes: int = PLENTY) -> Spool:
        spool = self._make(max_bytes)
        self._made.append(spool)
        return spool

    async def open(self, max_bytes: int = PLENTY) -> Spool:
        spool = self.new(max_bytes)
        await spool.open()
        return spool

    async def close_all(self) -> None:
        for spool in self._made:
            await spool.close()


def sqlite_execute(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


async def postgres_execute(url: str, sql: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.encode())


@pytest.fixture(params=["sqlite", "postgres"])
async def spools(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Spools]:
    if request.param == "sqlite":
        path = tmp_path / "data" / "spool.sqlite3"  # the parent is created by open
        spools = Spools(
            "sqlite",
            lambda max_bytes: SqliteSpool(path, max_bytes),
            lambda sql: asyncio.to_thread(sqlite_execute, path, sql),
        )
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database(f"spool_{uuid.uuid4().hex[:12]}")
        spools = Spools(
            "postgres",
            lambda max_bytes: PostgresSpool(url, max_bytes),
            lambda sql: postgres_execute(url, sql),
        )
    yield spools
    await spools.close_all()


@pytest.fixture
async def spool(spools: Spools) -> Spool:
    return await spools.open()
