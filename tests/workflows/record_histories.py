"""Record the histories of representative journeys as JSON fixtures for the replay test.

Run after an intentional, patched change to workflow logic (never to paper over a broken replay):

    python -m tests.workflows.record_histories

Each journey runs on the time-skipping test server, so days of timers take milliseconds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from onboarding import search_attributes
from onboarding.binaries import temporal_test_server
from onboarding.identity import workflow_id_for
from onboarding.models import Source, TimeoutsChange
from onboarding.operations import Onboardings
from onboarding.settings import Settings
from onboarding.worker import build_worker
from tests.smile_samples import event

HISTORIES = Path(__file__).parents[1] / "fixtures" / "histories"

# A journey returns the run id to record, or None for the latest run.
Journey = Callable[[Onboardings, WorkflowEnvironment, str], Awaitable[str | None]]


async def happy_path(ops: Onboardings, env: WorkflowEnvironment, user: str) -> str | None:
    """Webhooks (one duplicated, one unknown type) and a widget hint to data ready, settle."""
    connected = event("ACCOUNT_CONNECTED", accountId="a-1", at=2, providers=["abccorp"])
    for e in (
        event("USER_CREATED", at=0),
        event("onAccountCreated", source=Source.WIDGET, accountId="a-1", at=1),
        connected,
        connected,
        event("NEW_EVENT_TYPE", at=3),
        event("IDENTITY_ADDED", accountId="a-1", at=4),
        event("EMPLOYMENTS_ADDED", accountId="a-1", at=5, count=2),
        event("INCOMES_ADDED", accountId="a-1", at=6, count=1),
    ):
        await ops.ingest(user, [e])
        await env.sleep(timedelta(seconds=30))
    await env.sleep(timedelta(minutes=11))
    return None


async def stall_progress_cancel(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> str | None:
    """Stalls in account_created, recovers on connection, timeouts changed, then cancelled."""
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", at=0)])
    await env.sleep(timedelta(hours=1, minutes=5))
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=10)])
    await env.sleep(timedelta(seconds=5))
    await ops.set_timeouts(user, TimeoutsChange(stall={"connected": 600}))
    await env.sleep(timedelta(minutes=11))
    await ops.cancel(user, "recorded journey")
    return None


async def uploads_then_expiry(ops: Onboardings, env: WorkflowEnvironment, user: str) -> str | None:
    """An upload that is never analyzed: stalls, then expires after expireAfter."""
    await ops.ingest(user, [event("ARCHIVE_STARTED", archiveId="archive-1", at=0)])
    await env.sleep(timedelta(seconds=5))
    await ops.set_timeouts(user, TimeoutsChange(expire_after=2 * 86400))
    await env.sleep(timedelta(days=2, minutes=1))
    return None


async def continue_as_new(ops: Onboardings, env: WorkflowEnvironment, user: str) -> str | None:
    """Enough signals to continue-as-new (threshold 3 in this recording); records the first
    run, whose history ends in the continue-as-new."""
    first_run: str | None = None
    for i in range(4):
        await ops.ingest(user, [event("IDENTITY_ADDED", event_id=f"et-{i}", at=i)])
        if first_run is None:
            first_run = (
                await ops.client.get_workflow_handle(workflow_id_for(user)).describe()
            ).run_id
        await env.sleep(timedelta(seconds=1))
    return first_run


JOURNEYS: dict[str, tuple[Journey, dict[str, int]]] = {
    "happy_path": (happy_path, {}),
    "stall_progress_cancel": (stall_progress_cancel, {}),
    "uploads_then_expiry": (uploads_then_expiry, {}),
    "continue_as_new": (continue_as_new, {"continue_as_new_after": 3}),
}


async def record() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(temporal_test_server()),
    )
    async with env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for k in search_attributes.ALL
                },
            )
        )
        task_queue = f"record-{uuid.uuid4().hex[:8]}"
        async with build_worker(env.client, task_queue):
            for name, (journey, overrides) in JOURNEYS.items():
                ops = Onboardings(env.client, Settings(task_queue=task_queue, **overrides))
                user = f"tenantId-replay-{name}"
                run_id = await journey(ops, env, user)
                handle = env.client.get_workflow_handle(workflow_id_for(user), run_id=run_id)
                history = await handle.fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")


if __name__ == "__main__":
    HISTORIES.mkdir(parents=True, exist_ok=True)
    asyncio.run(record())
