"""The lifecycle's rules as the workflow lives them: one test for each defect the pure lifecycle
rules out (each failed on the imperative workflow before it). On the dev server with timeouts of
a second or two, since several need Smile to be slow in real time while the clock runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notices import StallNotice
from activities.smile import SmileActivities
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import (
    OnboardingView,
    Source,
    Stage,
    StartRequest,
    Status,
    TimeoutsChange,
)
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from tests.conftest import CALLBACK_SECRET, Standin, eventually, running_standin, unique_user
from tests.smile_samples import event
from workflows.create_user import CreateSmileUserWorkflow
from workflows.onboarding import OnboardingWorkflow

TASK_QUEUE = f"lifecycle-{uuid.uuid4().hex[:8]}"


@activity.defn(name="notify_stalled")
async def notice_receiver_down(notice: StallNotice) -> None:
    raise ApplicationError("the notice receiver is down", non_retryable=True)


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


@pytest.fixture(scope="module")
async def worker(dev_env: WorkflowEnvironment, standin: Standin) -> AsyncIterator[None]:
    """The service's worker, but with a notice receiver that is down."""
    smile = standin.client(timeout=10.0)
    activities = SmileActivities(smile)
    async with Worker(
        dev_env.client,
        task_queue=TASK_QUEUE,
        workflows=[OnboardingWorkflow, CreateSmileUserWorkflow],
        activities=[
            notice_receiver_down,
            activities.create_user,
            activities.create_token,
            activities.reconcile,
        ],
    ):
        yield
    await smile.aclose()


@pytest.fixture
async def ops(dev_env: WorkflowEnvironment, worker: None, standin: Standin) -> Onboardings:
    await standin.reset()
    settings = Settings(task_queue=TASK_QUEUE, callback_secret=SecretStr(CALLBACK_SECRET))
    return Onboardings(dev_env.client, settings)


async def history_of(ops: Onboardings, user: str) -> list[EventType.ValueType]:
    history = await ops.client.get_workflow_handle(workflow_id_for(user)).fetch_history()
    return [e.event_type for e in history.events]


async def test_a_failed_stall_notice_never_fails_the_onboarding(ops: Onboardings) -> None:
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    await ops.set_timeouts(user, TimeoutsChange(stall={"account_created": 1}))

    async def stalled_and_the_notice_failed() -> None:
        view = await ops.get(user)
        assert view.status is Status.STALLED
        assert view.reconcile.runs == 1  # Smile was asked first
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED in await history_of(ops, user)

    await eventually(stalled_and_the_notice_failed)
    handle = ops.client.get_workflow_handle(workflow_id_for(user))
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    await ops.set_timeouts(user, TimeoutsChange(stall={"connected": 3600}))
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=5)])

    async def recovered() -> None:
        view = await ops.get(user)
        assert (view.stage, view.status) == (Stage.CONNECTED, Status.ACTIVE)

    await eventually(recovered)
    await ops.cancel(user, "done")


async def test_the_end_is_final_a_late_no_such_user_does_not_overwrite_a_cancel(
    ops: Onboardings, standin: Standin
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await standin.faults(
        delayNext=1, delaySeconds=1.5, failNext=1, failStatus=404, onlyPath="/v1/accounts"
    )
    reconciling = asyncio.create_task(ops.reconcile(user))

    async def smile_is_being_asked() -> None:
        calls = await standin.calls()
        assert any(c["path"] == "/v1/accounts" and c["status"] is None for c in calls)

    await eventually(smile_is_being_asked)
    cancelled = await ops.cancel(user, "operator")
    assert cancelled.status is Status.CANCELLED
    after = await reconciling  # Smile then answers 404: "no such user"
    assert (after.status, after.status_reason) == (Status.CANCELLED, "operator")


async def test_a_token_refresh_wish_survives_continue_as_new(
    dev_env: WorkflowEnvironment, worker: None
) -> None:
    settings = Settings(
        task_queue=TASK_QUEUE, continue_as_new_after=3, callback_secret=SecretStr(CALLBACK_SECRET)
    )
    ops = Onboardings(dev_env.client, settings)
    issued, _ = await ops.start(StartRequest())
    user = issued.user_id
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=1)])
    # The third signal asks for a token and, at the same moment, for continue-as-new.
    await ops.ingest(user, [event("onTokenExpired", source=Source.WIDGET, at=2)])

    async def refreshed_in_the_next_run() -> None:
        view = await ops.get(user)
        assert view.runs == 2
        assert view.token.refresh_count == 1

    await eventually(refreshed_in_the_next_run)
    await ops.cancel(user, "done")


async def test_data_ready_again_settles_from_the_new_time(ops: Onboardings) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await ops.set_timeouts(user, TimeoutsChange(settle_window=2))
    data = [event(t, accountId="a-1", at=i) for i, t in
            enumerate(("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED"))]  # fmt: skip
    await ops.ingest(user, data)
    first = await eventually(lambda: _stage_is(ops, user, Stage.DATA_READY))
    assert first.deadlines.settle is not None
    handle = ops.client.get_workflow_handle_for(OnboardingWorkflow.run, workflow_id_for(user))
    more = StartRequest(required_data=["identity", "employments", "incomes", "documents"])
    await handle.execute_update(OnboardingWorkflow.begin, more)
    await eventually(lambda: _stage_is(ops, user, Stage.CONNECTED))

    async def past_the_first_settle_deadline() -> None:
        assert datetime.now(UTC) > first.deadlines.settle + timedelta(milliseconds=200)  # type: ignore[operator]

    await eventually(past_the_first_settle_deadline)
    await ops.ingest(user, [event("DOCUMENTS_ADDED", accountId="a-1", at=9)])
    again = await eventually(lambda: _stage_is(ops, user, Stage.DATA_READY))
    assert again.status is Status.ACTIVE  # not completed at once on the old deadline
    assert again.data_ready_at is not None and first.data_ready_at is not None
    assert again.data_ready_at > first.deadlines.settle
    assert again.deadlines.settle == again.data_ready_at + timedelta(seconds=2)

    async def completed() -> None:
        assert (await ops.get(user)).status is Status.COMPLETED

    await eventually(completed)


async def test_no_command_blocks_the_clock_expiry_while_smile_is_slow(
    ops: Onboardings, standin: Standin
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await standin.faults(delayNext=1, delaySeconds=6, onlyPath="/v1/accounts")
    # Stall after 1 s (reconciliation starts, and Smile takes 6 s); expire after 2 s.
    await ops.set_timeouts(user, TimeoutsChange(stall={"created": 1}, expire_after=2))

    async def expired() -> None:
        assert (await ops.get(user)).status is Status.EXPIRED

    await eventually(expired)
    kinds = await history_of(ops, user)
    # It expired while Smile was still answering: no reconciliation result came first.
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in kinds


async def test_a_signal_that_moves_no_deadline_arms_no_timer(ops: Onboardings) -> None:
    user = unique_user()
    journey = ("USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED",
               "IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")  # fmt: skip

    async def handled(signals: int) -> None:
        # Read from the history, not by query, so that each signal gets a task of its own.
        kinds = await history_of(ops, user)
        assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == signals
        last_completed = max(
            (i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
            default=-1,
        )
        last_signal = max(
            i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )
        assert last_completed > last_signal

    for at, event_type in enumerate(journey):
        await ops.ingest(user, [event(event_type, accountId="a-1", at=at)])
        await eventually(lambda n=at + 1: handled(n))  # type: ignore[misc]
    kinds = await history_of(ops, user)
    # A timer only for the deadlines that moved: start, account_created, connected, data_ready.
    assert kinds.count(EventType.EVENT_TYPE_TIMER_STARTED) == 4
    assert kinds.count(EventType.EVENT_TYPE_TIMER_CANCELED) == 3
    # Three stage changes published, and the SDK's TemporalChangeVersion for the first patch.
    assert kinds.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) == 4
    assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 1
    assert len(kinds) <= 38
    await ops.cancel(user, "done")


async def test_updates_answer_small_whatever_the_history(ops: Onboardings) -> None:
    user = unique_user()
    many = [event("INCOMES_UPDATED", accountId="a-1", at=i) for i in range(200)]
    await ops.ingest(user, many)
    await eventually(lambda: _events_total_is(ops, user, 200))
    await ops.set_timeouts(user, TimeoutsChange(stall={"created": 7200}))
    await ops.reconcile(user)
    view = await ops.cancel(user, "done")
    assert len(view.events) == 200  # the view, read by query, is whole
    history = await ops.client.get_workflow_handle(workflow_id_for(user)).fetch_history()
    results = [
        e.workflow_execution_update_completed_event_attributes.outcome.success
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
    ]
    assert len(results) == 3
    for result in results:
        size = sum(len(p.data) for p in result.payloads)
        assert 0 < size < 1024, json.loads(result.payloads[0].data)


async def _stage_is(ops: Onboardings, user: str, stage: Stage) -> OnboardingView:
    view = await ops.get(user)
    assert view.stage is stage
    return view


async def _events_total_is(ops: Onboardings, user: str, total: int) -> None:
    assert (await ops.get(user)).events_total == total
