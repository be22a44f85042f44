"""The PostgreSQL spool beyond the contract: a database that goes away, and secrets kept out of
what it says."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from onboarding.service.spool import PostgresSpool, SpoolUnavailable
from onboarding.tooling.pgcluster import PostgresCluster

from .conftest import PLENTY, T0

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
