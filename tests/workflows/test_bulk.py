"""Bulk operations on the dev server with the service's real worker: the filter selects exactly
its onboardings, ended ones are skipped, progress adds up, a stop stops, a worker restarted in
the middle loses nothing, and the same request run again changes nothing more."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.smile_client import SmileClient
from onboarding.core.bulk import BulkKind, BulkRequest, BulkState, bulk_id
from onboarding.core.models import Stage, Status, TimeoutsChange
from onboarding.core.selection import OnboardingFilter
from onboarding.service.bulk import BulkNotFound, BulkOperations, BulkStatus
from onboarding.service.onboardings import Onboardings, TemporalUnavailable
from onboarding.service.settings import Settings
from onboarding.service.worker import build_worker
from tests.conftest import Standin, eventually, unique_user
from tests.smile_samples import event

TWO_DAYS = timedelta(days=2).total_seconds()


async def in_stage(ops: Onboardings, stage: Stage, *, ended: bool = False) -> str:
    user = unique_user()
    events = [event("ACCOUNT_CREATED", accountId="a-1", at=1)]
    if stage is Stage.CONNECTED:
        events.append(event("ACCOUNT_CONNECTED", accountId="a-1", at=2))

    async def ingested() -> None:
        # As the API would spool it and try again: under load, a first call can be refused.
        try:
            await ops.ingest(user, events)
        except TemporalUnavailable as err:
            raise AssertionError(f"not yet taken: {err}") from err

    await eventually(ingested)

    async def arrived() -> None:
        assert (await ops.get(user)).stage is stage

    await eventually(arrived)
    if ended:
        await ops.cancel(user, "ended before the bulk change")
    return user


async def finished(bulk: BulkOperations, operation_id: str, timeout: float = 60) -> BulkStatus:
    async def ended() -> BulkStatus:
        status = await bulk.get(operation_id)
        assert status.progress.state is not BulkState.RUNNING
        return status

    return await eventually(ended, timeout=timeout)


async def visible(ops: Onboardings, selection: OnboardingFilter, count: int) -> None:
    async def counted() -> None:
        assert await ops.count(selection=selection) == count

    await eventually(counted)


def timeouts_request(
    selection: OnboardingFilter, rate: float = 200.0, chunk: int = 50
) -> BulkRequest:
    change = TimeoutsChange(stall={"connected": TWO_DAYS})
    return BulkRequest(
        kind=BulkKind.TIMEOUTS, selection=selection, timeouts=change, rate=rate, chunk=chunk
    )


@dataclass
class Fleet:
    """One test's service on its own task queue: what it started after ``since`` is its own."""

    client: Client
    smile: SmileClient
    task_queue: str = field(default_factory=lambda: f"bulk-{uuid.uuid4().hex[:8]}")
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        settings = Settings(task_queue=self.task_queue)
        self.ops = Onboardings(self.client, settings)
        self.bulk = BulkOperations(self.client, settings)

    def worker(self) -> Worker:
        return build_worker(self.client, self.task_queue, self.smile)


@pytest.fixture
async def fleet(dev_env: WorkflowEnvironment, shared_standin: Standin) -> AsyncIterator[Fleet]:
    smile = shared_standin.client()
    yield Fleet(dev_env.client, smile)


async def test_a_bulk_change_reaches_exactly_its_selection_and_runs_again_idempotently(
    fleet: Fleet,
) -> None:
    ops, bulk, since = fleet.ops, fleet.bulk, fleet.since
    async with fleet.worker():
        chosen = [await in_stage(ops, Stage.CONNECTED) for _ in range(3)]
        ended = await in_stage(ops, Stage.CONNECTED, ended=True)
        elsewhere = [await in_stage(ops, Stage.ACCOUNT_CREATED) for _ in range(2)]
        selection = OnboardingFilter(stage=Stage.CONNECTED, started_after=since)
        await visible(ops, selection, 4)
        await visible(ops, OnboardingFilter(status=Status.CANCELLED, started_after=since), 1)

        submitted = await bulk.submit(timeouts_request(selection))
        assert submitted.id == bulk_id(submitted.request)
        status = await finished(bulk, submitted.id)
        assert status.progress.state is BulkState.COMPLETED
        p = status.progress
        assert (p.matched, p.done, p.skipped_ended, p.failed) == (4, 3, 1, 0)
        assert status.remaining == 0 and not p.failures
        for user in chosen:
            assert (await ops.get(user)).timeouts.stall[Stage.CONNECTED] == TWO_DAYS
        for user in [*elsewhere, ended]:
            assert (await ops.get(user)).timeouts.stall[Stage.CONNECTED] != TWO_DAYS

        # The same request again: the same operation id, run anew, nothing different after it.
        before = {user: (await ops.get(user)).timeouts for user in chosen}
        again = await finished(bulk, (await bulk.submit(timeouts_request(selection))).id)
        assert again.id == submitted.id and again.started_at != status.started_at
        p = again.progress
        assert (p.matched, p.done, p.skipped_ended, p.failed) == (4, 3, 1, 0)
        assert {user: (await ops.get(user)).timeouts for user in chosen} == before


async def test_a_stopped_operation_stops_and_keeps_what_it_did(
    fleet: Fleet,
) -> None:
    ops, bulk, since = fleet.ops, fleet.bulk, fleet.since
    async with fleet.worker():
        users = [await in_stage(ops, Stage.ACCOUNT_CREATED) for _ in range(12)]
        selection = OnboardingFilter(stage=Stage.ACCOUNT_CREATED, started_after=since)
        await visible(ops, selection, len(users))
        # One a second, three at a time: twelve seconds in all, four chunks.
        submitted = await bulk.submit(timeouts_request(selection, rate=1.0, chunk=3))

        async def first_chunk_done() -> None:
            assert (await bulk.get(submitted.id)).progress.done >= 3

        await eventually(first_chunk_done, timeout=30)
        stopped = await bulk.stop(submitted.id)
        assert stopped.progress.state is BulkState.CANCELLED
        p = stopped.progress
        # Whole chunks only: the one in hand was finished, and no other begun.
        assert p.done % 3 == 0 and 3 <= p.done < len(users)
        assert (p.skipped_ended, p.failed) == (0, 0)
        assert stopped.remaining == len(users) - p.done
        changed = [u for u in users
                   if (await ops.get(u)).timeouts.stall[Stage.CONNECTED] == TWO_DAYS]  # fmt: skip
        assert len(changed) == p.done
        # Stopping again, or reading it, says the same.
        assert (await bulk.stop(submitted.id)).progress == p
        with pytest.raises(BulkNotFound):
            await bulk.get("bulk-timeouts-0000000000000000")


async def test_progress_is_reported_and_a_restarted_worker_loses_nothing(
    fleet: Fleet,
) -> None:
    ops, bulk, since = fleet.ops, fleet.bulk, fleet.since
    async with fleet.worker():
        users = [await in_stage(ops, Stage.ACCOUNT_CREATED) for _ in range(60)]
        selection = OnboardingFilter(stage=Stage.ACCOUNT_CREATED, started_after=since)
        await visible(ops, selection, len(users))
        # Two a second, twenty at a time: three chunks of ten seconds each.
        submitted = await bulk.submit(timeouts_request(selection, rate=2.0, chunk=20))

        async def under_way() -> BulkStatus:
            status = await bulk.get(submitted.id)
            assert status.progress.done >= 20  # the first chunk reported
            return status

        midway = await eventually(under_way, timeout=60)
        assert midway.progress.matched == 60
        assert midway.remaining == 60 - midway.progress.handled
    # The worker is gone in the middle of the second chunk; a new one takes over.
    async with fleet.worker():
        status = await finished(bulk, submitted.id, timeout=90)
        assert status.progress.state is BulkState.COMPLETED
        p = status.progress
        assert (p.matched, p.done, p.skipped_ended, p.failed) == (60, 60, 0, 0)
        for user in users:
            assert (await ops.get(user)).timeouts.stall[Stage.CONNECTED] == TWO_DAYS
    # The chunk in hand when the worker went away was tried again, not lost or counted twice.
    history = await fleet.client.get_workflow_handle(submitted.id).fetch_history()
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                if e.HasField("activity_task_started_event_attributes")]  # fmt: skip
    assert max(attempts) >= 2


async def test_onboardings_that_end_as_it_runs_are_counted_once(fleet: Fleet) -> None:
    """A bulk cancel, two to a page: each page's onboardings end before the next page is read,
    and none comes round again (visibility lists open ones before ended ones)."""
    ops, bulk, since = fleet.ops, fleet.bulk, fleet.since
    async with fleet.worker():
        users = [await in_stage(ops, Stage.ACCOUNT_CREATED) for _ in range(7)]
        ended = await in_stage(ops, Stage.ACCOUNT_CREATED, ended=True)
        selection = OnboardingFilter(stage=Stage.ACCOUNT_CREATED, started_after=since)
        await visible(ops, selection, 8)
        await visible(ops, OnboardingFilter(status=Status.CANCELLED, started_after=since), 1)
        request = BulkRequest(kind=BulkKind.CANCEL, selection=selection, reason="in bulk",
                              page=2, chunk=2)  # fmt: skip
        status = await finished(bulk, (await bulk.submit(request)).id)
        p = status.progress
        assert (p.state, p.matched, p.done, p.skipped_ended, p.failed) == (
            BulkState.COMPLETED,
            8,
            7,
            1,
            0,
        )
        for user in users:
            view = await ops.get(user)
            assert (view.status, view.status_reason) == (Status.CANCELLED, "in bulk")
        assert (await ops.get(ended)).status_reason == "ended before the bulk change"
