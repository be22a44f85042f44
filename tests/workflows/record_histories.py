"""Record the histories of representative journeys as JSON fixtures for the replay test.

Record new journeys after an intentional, patched change to workflow logic; never re-record an
existing one to paper over a broken replay (that is exactly what the replay test is for). All
of them were re-recorded once, deliberately, for the pure-lifecycle rewrite of the workflow,
before anything was deployed; the ``workflow.patched`` branches that protected only histories
made during development were removed with it:

    python -m tests.workflows.record_histories NAME [NAME ...]

Each journey runs on the time-skipping test server, so days of timers take milliseconds."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from activities.notify import NoticeSender, NotifyConfig
from onboarding.core.bulk import BulkKind, BulkRequest, BulkState
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import (
    DeliveryState,
    NoticeType,
    OnboardingInput,
    Source,
    Stage,
    StartRequest,
    Status,
    TimeoutsChange,
)
from onboarding.core.selection import OnboardingFilter
from onboarding.service.bulk import BulkOperations
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings, new_notify_secret
from onboarding.service.worker import build_worker
from onboarding.tooling.binaries import temporal_cli
from tests.conftest import (
    TEST_CONVERTER,
    Standin,
    eventually,
    running_standin,
    start_time_skipping,
)
from tests.notice_receiver import NoticeReceiver, notice_receiver
from tests.smile_samples import event
from workflows import search_attributes
from workflows.onboarding import OnboardingWorkflow

HISTORIES = Path(__file__).parents[1] / "fixtures" / "histories"
STANDIN: Standin  # set while recording
RECEIVER: NoticeReceiver  # the customer's backend, set while recording
NOTIFY_SECRET = new_notify_secret()

# A journey returns the user whose history to record, and the run (None: the latest).
Journey = Callable[[Onboardings, WorkflowEnvironment, str], Awaitable[tuple[str, str | None]]]


async def happy_path(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
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
    return user, None


async def stall_progress_cancel(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """Stalls in account_created, recovers on connection, timeouts changed, then cancelled."""
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", at=0)])
    await env.sleep(timedelta(hours=1, minutes=5))
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=10)])
    await env.sleep(timedelta(seconds=5))
    await ops.set_timeouts(user, TimeoutsChange(stall={"connected": 600}))
    await env.sleep(timedelta(minutes=11))
    await ops.cancel(user, "recorded journey")
    return user, None


async def uploads_then_expiry(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """An upload that is never analyzed: stalls, then expires after expireAfter."""
    await ops.ingest(user, [event("ARCHIVE_STARTED", archiveId="archive-1", at=0)])
    await env.sleep(timedelta(seconds=5))
    await ops.set_timeouts(user, TimeoutsChange(expire_after=2 * 86400))
    await env.sleep(timedelta(days=2, minutes=1))
    return user, None


async def stall_reconcile_unstall(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """Started through Smile; the ACCOUNT_CONNECTED webhook is lost; the stall reconciles."""
    issued, _ = await ops.start(StartRequest(external_metadata={"journey": "reconcile"}))
    await ops.ingest(issued.user_id, [event("ACCOUNT_CREATED", accountId="a-r1", at=0)])
    await STANDIN.control.put(
        "/_control/accounts/a-r1", json={"userId": issued.user_id, "connectionStatus": "CONNECTED"}
    )
    await env.sleep(timedelta(hours=1, minutes=1))
    await ops.cancel(issued.user_id, "recorded journey")
    return issued.user_id, None


async def token_refresh(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """onTokenExpired pre-fetches a token; the front end then asks for one."""
    issued, _ = await ops.start(StartRequest())
    await ops.ingest(issued.user_id, [event("onTokenExpired", source=Source.WIDGET)])
    await env.sleep(timedelta(seconds=5))
    await ops.link_token(issued.user_id)
    await ops.reconcile(issued.user_id)
    await ops.cancel(issued.user_id, "recorded journey")
    return issued.user_id, None


async def continue_as_new(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
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
    return user, first_run


async def notices(ops: Onboardings, env: WorkflowEnvironment, user: str) -> tuple[str, str | None]:
    """Notices on, to a real receiver: the started notice is answered 503 once and retried
    (the stage_changed behind it waits), data ready and the settle window pass, the completed
    notice is refused (410) so the ended onboarding stays open, and an operator redelivers it."""
    RECEIVER.answer(503, times=1, user=user, type=NoticeType.STARTED)
    RECEIVER.answer(410, times=1, user=user, type=NoticeType.COMPLETED)
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=0)])
    await env.sleep(timedelta(seconds=30))  # the started notice's second attempt, after 5 s
    data = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")
    await ops.ingest(user, [event(t, accountId="a-1", at=1 + i) for i, t in enumerate(data)])
    await env.sleep(timedelta(minutes=11))

    async def completed_notice_refused() -> None:
        log = await ops.notice_log(user)
        assert [r.state for r in log.records][-1] is DeliveryState.FAILED

    await eventually(completed_notice_refused)
    await ops.redeliver_notices(user, None)

    async def closed() -> None:
        description = await ops.describe(user)
        assert description.status is WorkflowExecutionStatus.COMPLETED

    await eventually(closed)
    return user, None


async def stage_entered(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """Started without ``OnboardingStageEnteredAt`` (as a run continued from an older one is):
    the run publishes it at once, then with each stage change; then a stall and a cancel."""
    await env.client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(user_id=user, options=ops.default_options),
        id=workflow_id_for(user),
        task_queue=ops.settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.STAGE, Stage.CREATED.value),
                SearchAttributePair(search_attributes.STATUS, Status.ACTIVE.value),
            ]
        ),
    )
    await env.sleep(timedelta(seconds=5))
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", at=1)])
    await env.sleep(timedelta(seconds=30))
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=2)])
    await env.sleep(timedelta(hours=7))  # past connected's stall timeout
    await ops.cancel(user, "recorded journey")
    return user, None


# --- the other workflows, on the dev server (their visibility queries need it) ----------------
# These return the workflow id to record, not a user.


async def bulk_timeouts(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """A bulk timeouts change over three onboardings (one ended first), two to a chunk."""
    since = datetime.now(UTC)
    users = [f"{user}-{i}" for i in range(3)]
    for one in users:
        await ops.ingest(one, [event("ACCOUNT_CREATED", accountId="a-1", at=1)])
    await ops.cancel(users[2], "ended before the bulk change")
    selection = OnboardingFilter(stage=Stage.ACCOUNT_CREATED, started_after=since)

    async def visible() -> None:
        assert await ops.count(selection=selection) == 3

    await eventually(visible)
    request = BulkRequest(kind=BulkKind.TIMEOUTS, selection=selection, chunk=2,
                          timeouts=TimeoutsChange(stall={"connected": 7200}))  # fmt: skip
    bulk = BulkOperations(ops.client, ops.settings)
    submitted = await bulk.submit(request)

    async def completed() -> None:
        assert (await bulk.get(submitted.id)).progress.state is BulkState.COMPLETED

    await eventually(completed, timeout=60)
    return submitted.id, None


async def defaults_change(
    ops: Onboardings, env: WorkflowEnvironment, user: str
) -> tuple[str, str | None]:
    """The run-time defaults started from the environment, then changed once."""
    await ops.defaults.change(TimeoutsChange(stall={"connected": 7200}), actor="recording")
    return ops.defaults.workflow_id, None


ON_DEV_SERVER: dict[str, Journey] = {
    "bulk_timeouts": bulk_timeouts,
    "defaults_change": defaults_change,
}


# Journeys recorded with notices on (to the receiver started while recording).
NOTIFYING = frozenset({"notices"})

JOURNEYS: dict[str, tuple[Journey, dict[str, int]]] = {
    "happy_path": (happy_path, {}),
    "stall_progress_cancel": (stall_progress_cancel, {}),
    "uploads_then_expiry": (uploads_then_expiry, {}),
    "continue_as_new": (continue_as_new, {"continue_as_new_after": 3}),
    "stall_reconcile_unstall": (stall_reconcile_unstall, {}),
    "token_refresh": (token_refresh, {}),
    "notices": (notices, {}),
    "stage_entered": (stage_entered, {}),
}


async def record(names: list[str]) -> None:
    async with (
        await start_time_skipping() as env,
        running_standin() as standin,
        notice_receiver(NOTIFY_SECRET) as receiver,
    ):
        global STANDIN, RECEIVER
        STANDIN, RECEIVER = standin, receiver
        task_queue = f"record-{uuid.uuid4().hex[:8]}"
        smile = standin.client()
        sender = NoticeSender(NotifyConfig(urls=(receiver.url,), secrets=(NOTIFY_SECRET,)))
        async with build_worker(env.client, task_queue, smile, notices=sender):
            for name in names:
                journey, overrides = JOURNEYS[name]
                settings = Settings(
                    task_queue=task_queue, callback_secret=SecretStr("recording"), **overrides
                )
                if name in NOTIFYING:
                    settings = settings.model_copy(
                        update={
                            "notify_urls": [SecretStr(receiver.url)],
                            "notify_secrets": [SecretStr(NOTIFY_SECRET)],
                        }
                    )
                ops = Onboardings(env.client, settings)
                user, run_id = await journey(ops, env, f"tenantId-replay-{name}")
                handle = env.client.get_workflow_handle(workflow_id_for(user), run_id=run_id)
                await keep(name, handle)
        await sender.aclose()
        await smile.aclose()


async def keep(name: str, handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record_on_dev_server(names: list[str]) -> None:
    async with (
        await WorkflowEnvironment.start_local(
            data_converter=TEST_CONVERTER,
            dev_server_existing_path=str(temporal_cli()),
            search_attributes=search_attributes.ALL,
        ) as env,
        running_standin() as standin,
    ):
        task_queue = f"record-{uuid.uuid4().hex[:8]}"
        smile = standin.client()
        async with build_worker(env.client, task_queue, smile):
            for name in names:
                settings = Settings(task_queue=task_queue, defaults_id=f"defaults-{name}")
                ops = Onboardings(env.client, settings)
                workflow_id, run_id = await ON_DEV_SERVER[name](ops, env, f"tenantId-{name}")
                await keep(name, env.client.get_workflow_handle(workflow_id, run_id=run_id))
        await smile.aclose()


if __name__ == "__main__":
    chosen = sys.argv[1:]
    everything = [*JOURNEYS, *ON_DEV_SERVER]
    if not chosen or set(chosen) - set(everything):
        sys.exit(f"usage: python -m tests.workflows.record_histories NAME ...; names: {everything}")
    HISTORIES.mkdir(parents=True, exist_ok=True)
    skipping = [name for name in chosen if name in JOURNEYS]
    if skipping:
        asyncio.run(record(skipping))
    on_dev = [name for name in chosen if name in ON_DEV_SERVER]
    if on_dev:
        asyncio.run(record_on_dev_server(on_dev))
    # Out without interpreter teardown, which can abort under Temporal's core threads (as the
    # CLI's run() explains): everything is written and closed by now.
    sys.stdout.flush()
    os._exit(0)
