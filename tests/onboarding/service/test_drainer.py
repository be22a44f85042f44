"""The drainer against real Temporal: failures keep the events with a growing delay, delivery
removes them, an ended onboarding's events are dropped as on the live path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from onboarding.core.breaker import BreakerState
from onboarding.core.models import Event, Source
from onboarding.service.dead_letters import DeadLetters
from onboarding.service.drainer import Drainer
from onboarding.service.onboardings import IngestResult, Onboardings
from onboarding.service.settings import Settings
from onboarding.service.spool import SqliteSpool
from onboarding.service.spooling import Spooler, TemporalGate
from onboarding.service.temporal import connect
from tests.conftest import eventually, free_port, unique_user


def event(n: int) -> Event:
    at = datetime(2026, 11, 30, 8, 0, n, tzinfo=UTC)
    return Event(id=f"evt-{n}", type="ACCOUNT_CREATED", source=Source.WEBHOOK, created_at=at,
                 received_at=at, data={"accountId": f"acc-{n}"})  # fmt: skip


class Recording(Onboardings):
    """The real service layer, noting each signal's events as sent."""

    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings)
        self.signals: list[list[str]] = []

    async def ingest(
        self, user_id: str, events: list[Event], *, rpc_timeout: timedelta | None = None
    ) -> IngestResult:
        result = await super().ingest(user_id, events, rpc_timeout=rpc_timeout)
        self.signals.append([e.id for e in events])
        return result


@contextlib.asynccontextmanager
async def draining(
    spooler: Spooler, onboardings: Onboardings, gate: TemporalGate | None = None
) -> AsyncIterator[Drainer]:
    dead_letters = DeadLetters(spooler, lambda user_id, e: onboardings.ingest(user_id, [e]))
    drainer = Drainer(spooler, onboardings, gate or TemporalGate(cooldown=0.2), dead_letters,
                      lease=timedelta(seconds=30), timeout=1.0, concurrency=2)  # fmt: skip
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

    onboardings = Recording(dev_env.client, api_settings)
    gate = TemporalGate(cooldown=0.2, threshold=1)
    gate.failed()  # as the webhook path leaves it after Temporal went away
    async with draining(spooler, onboardings, gate) as drainer:

        async def delivered() -> None:
            assert drainer.counts.delivered == 3
            assert (await spooler.spool.stats()).depth == 0

        await eventually(delivered, timeout=30)
    assert onboardings.signals == [["evt-0", "evt-1", "evt-2"]]  # one signal, createdAt order
    assert gate.state is BreakerState.CLOSED  # the delivery closed the breaker again
    assert (await onboardings.get(user)).events_total == 3
    await spooler.close()


async def test_a_large_backlog_goes_in_chunks_in_order(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    """Signals stay well under Temporal's size limits, and a user's events keep their order
    across chunks."""
    spooler = Spooler(SqliteSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 30))
    user = unique_user()
    padding = "x" * 500
    for n in range(0, 60):
        big = event(n).model_copy(update={"data": {f"k{i}": padding for i in range(30)}})
        await spooler.put(user, big)
    onboardings = Recording(dev_env.client, api_settings)
    async with draining(spooler, onboardings) as drainer:

        async def delivered() -> None:
            assert drainer.counts.delivered == 60

        await eventually(delivered, timeout=30)
    assert len(onboardings.signals) > 1
    sent = [event_id for signal in onboardings.signals for event_id in signal]
    assert sent == [event(n).id for n in range(60)]
    await spooler.close()


async def test_an_event_temporal_refuses_goes_to_the_dead_letter_and_the_rest_through(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    spooler = Spooler(SqliteSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 30))
    user = unique_user()
    huge = event(1).model_copy(update={"data": {f"k{i}": "y" * 500 for i in range(6000)}})
    for item in (event(0), huge, event(2)):
        await spooler.put(user, item)
    onboardings = Recording(dev_env.client, api_settings)
    async with draining(spooler, onboardings) as drainer:

        async def settled() -> None:
            assert (drainer.counts.delivered, drainer.counts.refused) == (2, 1)
            assert (await spooler.spool.stats()).depth == 0

        await eventually(settled, timeout=30)
    (letter,) = await (await spooler.ready()).dead_letters(10)
    assert (letter.event_id, letter.type) == ("evt-1", "ACCOUNT_CREATED")
    assert "refused" in letter.reason
    assert [e.id for e in (await onboardings.get(user)).events] == ["evt-0", "evt-2"]
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


async def test_what_no_longer_parses_goes_to_the_dead_letter_and_a_refused_callback_is_dropped(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    """Neither may block its user for ever: the user's other events go through."""
    spooler = Spooler(SqliteSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 30))
    spool = await spooler.ready()
    user = unique_user()
    await spooler.put(user, event(0))
    stale = event(1).model_dump_json(by_alias=True).replace('"source":"webhook"', '"source":"x"')
    await spool.put(user, "evt-1", event(1).created_at, stale.encode(), datetime.now(UTC))
    huge_hint = event(2).model_copy(
        update={"source": Source.WIDGET, "data": {f"k{i}": "y" * 500 for i in range(6000)}}
    )
    await spooler.put(user, huge_hint)
    await spooler.put(user, event(3))
    onboardings = Recording(dev_env.client, api_settings)
    async with draining(spooler, onboardings) as drainer:

        async def settled() -> None:
            assert (drainer.counts.delivered, drainer.counts.refused) == (2, 1)
            assert (await spool.stats()).depth == 0

        await eventually(settled, timeout=30)
    (letter,) = await spool.dead_letters(10)
    assert letter.event_id == "evt-1" and "no longer parses" in letter.reason
    assert [e.id for e in (await onboardings.get(user)).events] == ["evt-0", "evt-3"]
    await spooler.close()
