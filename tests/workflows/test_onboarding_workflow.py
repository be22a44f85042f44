"""The workflow on Temporal's time-skipping test server: signal-with-start, dedupe, query, and
every timer (stall, un-stall, changed timeouts, expiry, settle), cancel and continue-as-new."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from onboarding.core.identity import workflow_id_for
from onboarding.core.models import OnboardingView, Stage, Status, TimeoutsChange
from onboarding.service.onboardings import InvalidChange, OnboardingEnded, Onboardings
from onboarding.service.settings import Settings
from onboarding.service.worker import build_worker
from tests.conftest import Standin, eventually, unique_user
from tests.smile_samples import event

HOUR = timedelta(hours=1)


TASK_QUEUE = f"wf-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def worker(
    time_skipping_env: WorkflowEnvironment, shared_standin: Standin
) -> AsyncIterator[None]:
    # One worker for the module: time skipped in one test also fires other tests' timers,
    # and their workflows must still have a worker to run on.
    smile = shared_standin.client()
    async with build_worker(time_skipping_env.client, TASK_QUEUE, smile):
        yield
    await smile.aclose()


@pytest.fixture
def ops(time_skipping_env: WorkflowEnvironment, worker: None) -> Onboardings:
    return Onboardings(time_skipping_env.client, Settings(task_queue=TASK_QUEUE))


async def state_is(ops: Onboardings, user: str, **expected: object) -> OnboardingView:
    async def check() -> OnboardingView:
        view = await ops.get(user)
        for key, value in expected.items():
            assert getattr(view, key) == value, (key, getattr(view, key))
        return view

    return await eventually(check)


async def test_signal_with_start_dedupe_and_query(ops: Onboardings) -> None:
    user = unique_user()
    created = event("ACCOUNT_CREATED", event_id="et-a", accountId="a-1", providers=["abccorp"])
    assert (await ops.ingest(user, [created])).outcome == "accepted"
    assert (await ops.ingest(user, [created])).outcome == "accepted"
    view = await state_is(ops, user, duplicates_ignored=1)
    assert view.stage is Stage.ACCOUNT_CREATED
    assert view.status is Status.ACTIVE
    assert view.events_total == 1
    assert [a.account_id for a in view.accounts] == ["a-1"]
    assert view.workflow_id == workflow_id_for(user)


async def test_stalls_exactly_at_the_deadline_and_not_before(
    ops: Onboardings, time_skipping_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    view = await state_is(ops, user, stage=Stage.ACCOUNT_CREATED)
    assert view.stage_entered_at is not None and view.deadlines.stall is not None
    assert view.deadlines.stall - view.stage_entered_at == HOUR  # account_created default

    await time_skipping_env.sleep(HOUR - timedelta(seconds=1))
    assert (await ops.get(user)).status is Status.ACTIVE

    await time_skipping_env.sleep(timedelta(seconds=1))
    stalled = await state_is(ops, user, status=Status.STALLED)
    assert stalled.stalls == 1
    assert stalled.stalled_at is not None
    assert abs(stalled.stalled_at - view.deadlines.stall) < timedelta(milliseconds=50)


async def test_progress_makes_a_stalled_onboarding_active_again(
    ops: Onboardings, time_skipping_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", at=0)])
    await state_is(ops, user, stage=Stage.ACCOUNT_CREATED)
    await time_skipping_env.sleep(HOUR)
    await state_is(ops, user, status=Status.STALLED)

    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=60)])
    view = await state_is(ops, user, stage=Stage.CONNECTED, status=Status.ACTIVE)
    assert view.stage_entered_at is not None and view.deadlines.stall is not None
    assert view.deadlines.stall - view.stage_entered_at == timedelta(hours=6)


async def test_a_timeout_changed_while_running_takes_effect(
    ops: Onboardings, time_skipping_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    await state_is(ops, user, stage=Stage.ACCOUNT_CREATED)
    timeouts = await ops.set_timeouts(user, TimeoutsChange(stall={"account_created": 7200}))
    assert timeouts.stall[Stage.ACCOUNT_CREATED] == 7200

    await time_skipping_env.sleep(HOUR + timedelta(minutes=1))
    assert (await ops.get(user)).status is Status.ACTIVE  # the old 1h deadline is gone

    await time_skipping_env.sleep(HOUR)
    await state_is(ops, user, status=Status.STALLED)

    # Extending past now un-stalls; shortening below the time already spent stalls at once.
    await ops.set_timeouts(user, TimeoutsChange(stall={"account_created": 3 * 3600}))
    await state_is(ops, user, status=Status.ACTIVE)
    await ops.set_timeouts(user, TimeoutsChange(stall={"account_created": 60}))
    await state_is(ops, user, status=Status.STALLED, stalls=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (TimeoutsChange(stall={"sleeping": 60}), "unknown stage 'sleeping'"),
        (TimeoutsChange(stall={"data_ready": 60}), "has no stall timeout"),
        (TimeoutsChange(stall={"connected": 0}), "must be a positive number of seconds"),
        (TimeoutsChange(expire_after=-1), "expireAfter must be a positive number"),
        (TimeoutsChange(stall={"created": 1e12}), "must be at most ten years"),
        (TimeoutsChange(), "nothing to change"),
    ],
)
async def test_invalid_timeouts_are_rejected_and_change_nothing(
    ops: Onboardings, change: TimeoutsChange, message: str
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    before = await state_is(ops, user, events_total=1)
    with pytest.raises(InvalidChange, match=message):
        await ops.set_timeouts(user, change)
    assert (await ops.get(user)).timeouts == before.timeouts


async def test_expiry_ends_the_workflow(
    ops: Onboardings, time_skipping_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await state_is(ops, user, events_total=1)
    await time_skipping_env.sleep(timedelta(days=7))
    handle = ops.client.get_workflow_handle(workflow_id_for(user), result_type=OnboardingView)
    result = await handle.result()
    assert result.status is Status.EXPIRED
    assert result.stalls == 1  # stalled after 24h in created, then expired
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_data_ready_settles_then_completes_and_late_events_start_nothing(
    ops: Onboardings, time_skipping_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    await ops.ingest(
        user,
        [
            event("ACCOUNT_CONNECTED", accountId="a-1", at=0),
            event("IDENTITY_ADDED", accountId="a-1", at=1),
            event("EMPLOYMENTS_ADDED", accountId="a-1", at=2),
            event("INCOMES_ADDED", accountId="a-1", at=3),
        ],
    )
    view = await state_is(ops, user, stage=Stage.DATA_READY)
    assert view.deadlines.settle is not None and view.data_ready_at is not None
    assert view.deadlines.settle - view.data_ready_at == timedelta(minutes=10)

    await time_skipping_env.sleep(timedelta(minutes=5))
    await ops.ingest(user, [event("INCOMES_UPDATED", accountId="a-1", at=4)])  # absorbed
    await state_is(ops, user, events_total=5)
    await time_skipping_env.sleep(timedelta(minutes=5))
    done = await state_is(ops, user, status=Status.COMPLETED)
    assert done.data["incomes"].events == 2

    late = await ops.ingest(user, [event("INCOMES_UPDATED", accountId="a-1", at=5)])
    assert late.outcome == "onboarding_ended"
    after = await ops.get(user)
    assert after.status is Status.COMPLETED and after.events_total == 5


async def test_cancel(ops: Onboardings) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await state_is(ops, user, events_total=1)
    view = await ops.cancel(user, "user asked to stop")
    assert (view.status, view.status_reason) == (Status.CANCELLED, "user asked to stop")
    with pytest.raises(OnboardingEnded):
        await ops.cancel(user, "again")
    with pytest.raises(OnboardingEnded):
        await ops.set_timeouts(user, TimeoutsChange(stall={"created": 60}))
