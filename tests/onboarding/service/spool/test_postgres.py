"""The PostgreSQL spool beyond the contract: a database that goes away, and secrets kept out of
what it says."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from onboarding.service.spool import PostgresSpool, SpoolUnavailable
from onboarding.service.spool.postgres import SCHEMA_LOCK
from onboarding.tooling.pgcluster import PostgresCluster

from .conftest import PLENTY, T0, at
from .test_contract import Held

PASSWORD = "hunter2-not-for-logs"  # trust authentication ignores it; it must never be shown


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, to stop under a spool."""
    with PostgresCluster() as cluster:
        yield cluster


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


async def test_a_stopped_database_is_unavailable(own_cluster: PostgresCluster) -> None:
    spool = PostgresSpool(with_password(own_cluster.url), PLENTY, timeout=1.0)
    await spool.open()
    try:
        await spool.check_writable()
        await asyncio.to_thread(own_cluster.stop)

        started = time.monotonic()
        with pytest.raises(SpoolUnavailable) as raised:
            await spool.check_writable()
        assert time.monotonic() - started < 10
        with pytest.raises(SpoolUnavailable):
            await spool.put("u", "e", T0, b"x", T0)
    finally:
        await spool.close()
    assert PASSWORD not in str(raised.value)
    assert "127.0.0.1" in str(raised.value) and "refused" in str(raised.value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket closes


@pytest.mark.parametrize("where", ["closed-port", "missing-database"])
async def test_a_database_that_is_not_there_is_unavailable_at_open(
    where: str, postgres_cluster: PostgresCluster
) -> None:
    if where == "closed-port":
        url, reason = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/spool", "refused"
    else:
        url, reason = with_password(postgres_cluster.url_for("no_such_db")), "does not exist"
    spool = PostgresSpool(f"{url}?application_name=x&password={PASSWORD}", PLENTY, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SpoolUnavailable) as raised:
        await spool.open()
    assert time.monotonic() - started < 10
    assert reason in str(raised.value)  # it says why
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in repr(spool)
    with pytest.raises(SpoolUnavailable, match="not open"):
        await spool.check_writable()


def test_an_unparsable_url_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError, match="percent-encode") as raised:
        PostgresSpool(f"postgresql://postgres:{PASSWORD} with spaces@127.0.0.1/db", PLENTY)
    assert PASSWORD not in str(raised.value)
    assert "with spaces" not in str(raised.value)


async def execute(url: str, *statements: bytes) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)


async def test_any_database_error_is_unavailable_without_secrets_or_data(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database(f"spool_{uuid.uuid4().hex[:12]}")
    spool = PostgresSpool(with_password(url), PLENTY)
    await spool.open()
    try:
        # A constraint someone added: PostgreSQL's DETAIL would quote the whole row.
        await execute(url, b"ALTER TABLE spool_events ADD CHECK (user_id <> 'user-secret')")
        with pytest.raises(SpoolUnavailable, match="violates check constraint") as violated:
            await spool.put("user-secret", "event-secret", T0, b"payload-secret", T0)
        # A value PostgreSQL refuses quotes it in the primary message itself.
        await execute(url, b"ALTER TABLE dead_letters ALTER COLUMN type TYPE integer USING 0")
        with pytest.raises(SpoolUnavailable, match="SQLSTATE 22") as refused:
            await spool.add_dead_letter(b"body-secret", "r", None, "type-secret", T0)
        await execute(url, b"DROP TABLE dead_letters")
        with pytest.raises(SpoolUnavailable, match='"dead_letters" does not exist') as dropped:
            await spool.dead_letters(limit=10)
    finally:
        await spool.close()
    for raised in (violated, refused, dropped):
        message = str(raised.value)
        assert "secret" not in message and PASSWORD not in message, message
        assert "\n" not in message


async def test_a_role_without_create_on_the_schema_is_unavailable_at_open(
    postgres_cluster: PostgresCluster,
) -> None:
    name = f"spool_{uuid.uuid4().hex[:12]}"
    url = postgres_cluster.create_database(name)
    await execute(
        url, f"CREATE ROLE {name} LOGIN".encode(), b"REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    )
    spool = PostgresSpool(url.replace("postgres@", f"{name}:{PASSWORD}@", 1), PLENTY)
    with pytest.raises(SpoolUnavailable, match="permission denied for schema public") as raised:
        await spool.open()
    assert PASSWORD not in str(raised.value)
    await spool.close()  # harmless

    await execute(url, f"GRANT CREATE ON SCHEMA public TO {name}".encode())
    await spool.open()  # the same instance, once the right is there
    try:
        await spool.put("u", "e1", T0, b"x", T0)
        assert (await spool.stats()).depth == 1
    finally:
        await spool.close()


async def test_a_failed_open_can_be_retried_and_closed(postgres_cluster: PostgresCluster) -> None:
    name = f"spool_{uuid.uuid4().hex[:12]}"
    spool = PostgresSpool(postgres_cluster.url_for(name), PLENTY, timeout=1.0)
    with pytest.raises(SpoolUnavailable, match="does not exist"):
        await spool.open()
    await spool.close()  # harmless
    with pytest.raises(SpoolUnavailable, match="not open"):
        await spool.stats()

    postgres_cluster.create_database(name)
    await spool.open()
    try:
        await spool.put("u", "e1", T0, b"x", T0)
        assert (await spool.stats()).depth == 1
    finally:
        await spool.close()
    await spool.close()  # twice: harmless


async def test_a_cancelled_open_can_be_retried(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database(f"spool_{uuid.uuid4().hex[:12]}")
    spool = PostgresSpool(url, PLENTY)
    # Another process is creating the schema (holds its lock): open waits for it ...
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(spool.open(), 0.3)  # ... and is given up
        with pytest.raises(SpoolUnavailable, match="not open"):
            await spool.stats()
    await spool.open()  # the lock went with the other connection
    try:
        await spool.check_writable()
    finally:
        await spool.close()


async def test_claims_keep_one_owner_per_user_whatever_the_default_isolation(
    postgres_cluster: PostgresCluster,
) -> None:
    name = f"spool_{uuid.uuid4().hex[:12]}"
    url = postgres_cluster.create_database(name)
    # A claim's second statement must see what others committed after its first.
    await execute(url, f"ALTER DATABASE {name} SET default_transaction_isolation = "
                       "'repeatable read'".encode())  # fmt: skip
    writer = PostgresSpool(url, PLENTY)
    claimers = [PostgresSpool(url, PLENTY) for _ in range(4)]
    try:
        for spool in (writer, *claimers):
            await spool.open()
        for i in range(120):
            await writer.put("the-user", f"e{i}", at(i), b"x", T0)
        held = Held()
        await asyncio.gather(
            *(
                held.deliver_until_empty(c, f"owner-{n}", 120, limit=10)
                for n, c in enumerate(claimers)
            )
        )
        delivered = held.assert_one_owner_at_a_time_in_order()["the-user"]
        assert [e.event_id for e in delivered] == [f"e{i}" for i in range(120)]
    finally:
        for spool in (writer, *claimers):
            await spool.close()
