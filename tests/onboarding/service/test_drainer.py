"""The drainer against real Temporal: failures keep the events with a growing delay, delivery
removes them, an ended onboarding's events are dropped as on the live path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from onboarding.core.models import Event, Source
from onboarding.service.drainer import Drainer
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.service.spool import SqliteSpool
from onboarding.service.spooling import Spooler, TemporalGate
from onboarding.service.temporal import connect
from tests.conftest import eventually, free_port, unique_user


def event(n: int) -> Event:
    at = datetime(2026, 11, 30, 8, 0, n, tzinfo=UTC)
    return Event(id=f"evt-{n}", type="ACCOUNT_CREATED", source=Source.WEBHOOK, created_at=at,
                 received_at=at, data={"accountId": f"acc-{n}"})  # fmt: skip


@contextlib.asynccontextmanager
async def draining(spooler: Spooler, onboardings: Onboardings) -> AsyncIterator[Drainer]:
    drainer = Drainer(spooler, onboardings, TemporalGate(cooldown=0.2), lease=timedelta(seconds=30),
                      timeout=1.0, concurrency=2)  # fmt: skip
    task = asyncio.create_task(drainer.run())
    try:
        yield drainer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_failures_keep_the_events_then_delivery_removes_them(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    spooler = Spooler(SqliteSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 20))
    user = unique_user()
    for n in (2, 0, 1):
        await spooler.put(user, event(n))
    away = await connect(f"127.0.0.1:{free_port()}", lazy=True, use_environment=False)
    async with draining(spooler, Onboardings(away, api_settings)) as drainer:

        async def tried_and_kept() -> None:
            assert drainer.counts.failed_attempts >= 1
            stats = await spooler.spool.stats()
            assert stats.depth == 3

        await eventually(tried_and_kept)
    spool = await spooler.ready()
    # Released with a delay: nobody may claim them at once.
    now = datetime.now(UTC)
    assert await spool.claim("someone", now, now + timedelta(seconds=1), 10) == []

    onboardings = Onboardings(dev_env.client, api_settings)
    async with draining(spooler, onboardings) as drainer:

        async def delivered() -> None:
            assert drainer.counts.delivered == 3
            assert (await spooler.spool.stats()).depth == 0

        await eventually(delivered, timeout=30)
    view = await onboardings.get(user)
    assert [e.id for e in view.events] == ["evt-0", "evt-1", "evt-2"]  # createdAt order
    await spooler.close()


async def test_events_for_an_ended_onboarding_are_dropped(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    onboardings = Onboardings(dev_env.client, api_settings)
    user = unique_user()
    await onboardings.ingest(user, [event(0)])
    await onboardings.cancel(user, "test")
    spooler = Spooler(SqliteSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 20))
    await spooler.put(user, event(1))
    async with draining(spooler, onboardings) as drainer:

        async def dropped() -> None:
            assert drainer.counts.ended == 1
            assert (await spooler.spool.stats()).depth == 0

        await eventually(dropped, timeout=30)
    assert (await onboardings.get(user)).events_total == 1
    await spooler.close()
