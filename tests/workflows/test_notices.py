"""Notices to the customer's backend, end to end: the real workflow and worker, the real delivery
activity posting over HTTP to a real local receiver that verifies every request with
``standardwebhooks`` (``tests/notice_receiver.py``). Journeys whose timers matter run on a
time-skipping server of this module's own (its clock is not shared with other modules, and none
of their leftover workflows hold it); what needs the real server's answers (the next attempt's
time, queries across continue-as-new) runs on the dev server with short Retry-After waits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.notify import NoticeSender, NotifyConfig
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import (
    DeliveryState,
    NoticeRecord,
    NoticeType,
    OnboardingView,
    Stage,
    StartRequest,
    Status,
    TimeoutsChange,
)
from onboarding.service.notices import NoticeList, Notices, NoticesClosed
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings, new_notify_secret
from onboarding.service.worker import build_worker
from tests.conftest import (
    CALLBACK_SECRET,
    SMILE_SECRET,
    WEBHOOK_SECRET,
    Standin,
    eventually,
    running_standin,
    start_time_skipping,
    unique_user,
)
from tests.notice_receiver import NoticeReceiver, Received, notice_receiver
from tests.smile_samples import event
from workflows.onboarding import OnboardingWorkflow

SECRET = new_notify_secret()
OLD_SECRET = new_notify_secret()
NEW_SECRET = new_notify_secret()
TIMEOUT = timedelta(seconds=2)
TASK_QUEUE = f"notices-{uuid.uuid4().hex[:8]}"
DEV_TASK_QUEUE = f"notices-dev-{uuid.uuid4().hex[:8]}"

STARTED, STAGE_CHANGED, DATA_READY = (
    NoticeType.STARTED, NoticeType.STAGE_CHANGED, NoticeType.DATA_READY,
)  # fmt: skip
STALLED, RESUMED, COMPLETED = NoticeType.STALLED, NoticeType.RESUMED, NoticeType.COMPLETED
EXPIRED, FAILED, CANCELLED = NoticeType.EXPIRED, NoticeType.FAILED, NoticeType.CANCELLED
DATA = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")


# --- servers, receiver, workers ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_time_skipping() as env:
        yield env


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


@pytest.fixture(scope="module")
async def module_receiver() -> AsyncIterator[NoticeReceiver]:
    async with notice_receiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
async def receiver(module_receiver: NoticeReceiver) -> AsyncIterator[NoticeReceiver]:
    """The module's receiver, up and answering 200 to everyone at the start of each test."""
    module_receiver.fix()
    await module_receiver.up()
    yield module_receiver
    module_receiver.fix()
    await module_receiver.up()


def sender(*urls: str, secrets: tuple[str, ...] = (SECRET,)) -> NoticeSender:
    return NoticeSender(NotifyConfig(urls=urls, secrets=secrets, timeout=TIMEOUT))


@pytest.fixture(scope="module")
async def worker(
    env: WorkflowEnvironment, standin: Standin, module_receiver: NoticeReceiver
) -> AsyncIterator[None]:
    # One worker for the module: skipping time in one test fires the timers of every
    # workflow on this server, and those must have a worker to run on.
    smile = standin.client(timeout=10.0)
    notices = sender(module_receiver.url)
    async with build_worker(env.client, TASK_QUEUE, smile, notices=notices):
        yield
    await notices.aclose()
    await smile.aclose()


@pytest.fixture(scope="module")
async def dev_worker(
    dev_env: WorkflowEnvironment, standin: Standin, module_receiver: NoticeReceiver
) -> AsyncIterator[None]:
    smile = standin.client(timeout=10.0)
    notices = sender(module_receiver.url)
    async with build_worker(dev_env.client, DEV_TASK_QUEUE, smile, notices=notices):
        yield
    await notices.aclose()
    await smile.aclose()


def notify_settings(
    base: Settings, task_queue: str, *urls: str, **update: Any
) -> Settings:  # fmt: skip
    """``base`` with notices on to ``urls`` (model_copy does not validate: typed values)."""
    return base.model_copy(
        update={
            "task_queue": task_queue,
            "notify_urls": [SecretStr(url) for url in urls],
            "notify_secrets": [SecretStr(SECRET)],
            **update,
        }
    )


@pytest.fixture
async def ops(
    env: WorkflowEnvironment, worker: None, api_settings: Settings, receiver: NoticeReceiver,
    standin: Standin,
) -> Onboardings:  # fmt: skip
    await standin.reset()
    return Onboardings(env.client, notify_settings(api_settings, TASK_QUEUE, receiver.url))


@pytest.fixture
def dev_ops(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings,
    receiver: NoticeReceiver,
) -> Onboardings:  # fmt: skip
    return Onboardings(dev_env.client, notify_settings(api_settings, DEV_TASK_QUEUE, receiver.url))


# --- helpers ----------------------------------------------------------------------------------


async def stage_is(ops: Onboardings, user: str, stage: Stage, status: Status = Status.ACTIVE
                   ) -> OnboardingView:  # fmt: skip
    async def check() -> OnboardingView:
        view = await ops.get(user)
        assert (view.stage, view.status) == (stage, status)
        return view

    return await eventually(check)


async def result(client: Client, user: str) -> OnboardingView:
    """The onboarding's end (the workflow closes only once its notices are settled)."""
    handle = client.get_workflow_handle_for(OnboardingWorkflow.run, workflow_id_for(user))
    return await handle.result()


async def execution_status(client: Client, user: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id_for(user)).describe()).status


def kinds(got: list[Received]) -> list[str]:
    return [r.type for r in got]


def check_bodies(got: list[Received], user: str, *forbidden: str) -> None:
    """One onboarding's notices as delivered: its user, sequence 1..n in the order they came,
    every webhook-id once, the body's type the notice's, and nothing secret in the raw bytes."""
    assert got, "nothing was delivered"
    assert [r.sequence for r in got] == list(range(1, len(got) + 1))
    assert len({r.webhook_id for r in got}) == len(got)
    for r in got:
        assert r.user_id == user
        assert r.verified_by == (SECRET,)
        assert set(r.notice) == {"type", "timestamp", "data"}
        assert r.type.startswith("onboarding.") and r.notice["timestamp"].endswith("Z")
        assert r.data["stage"] in {s.value for s in Stage}
        assert r.data["status"] in {s.value for s in Status}
        for secret in (SECRET, CALLBACK_SECRET, WEBHOOK_SECRET, SMILE_SECRET, *forbidden):
            assert secret.encode() not in r.body, secret


def summary(got: list[Received]) -> list[tuple[str, str, str]]:
    return [(r.type.removeprefix("onboarding."), r.data["stage"], r.data["status"]) for r in got]


# --- 1. each type fires on the journey that causes it, and only then ---------------------------


async def test_happy_path_started_stages_data_ready_completed(
    ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver
) -> None:
    issued, _ = await ops.start(StartRequest(external_metadata={"crm": "c-42"}))
    user = issued.user_id
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", providers=["abccorp"])])
    await stage_is(ops, user, Stage.ACCOUNT_CREATED)
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=1)])
    await stage_is(ops, user, Stage.CONNECTED)
    await ops.ingest(user, [event(t, accountId="a-1", at=2 + i, count=2)
                            for i, t in enumerate(DATA)])  # fmt: skip
    await stage_is(ops, user, Stage.DATA_READY)
    await env.sleep(timedelta(minutes=11))  # the settle window
    done = await result(ops.client, user)
    assert done.status is Status.COMPLETED

    got = receiver.delivered(user)
    assert summary(got) == [
        ("started", "created", "active"),
        ("stage_changed", "account_created", "active"),
        ("stage_changed", "connected", "active"),
        ("stage_changed", "data_ready", "active"),
        ("data_ready", "data_ready", "active"),
        ("completed", "data_ready", "completed"),
    ]
    assert receiver.requests(user) == got  # each accepted at the first try
    check_bodies(got, user, issued.link_token, issued.callback_token)
    started, created, connected, ready_stage, ready, completed = (r.data for r in got)
    assert started["changes"] == {} and started["externalMetadata"] == {"crm": "c-42"}
    assert created["changes"] == {"stage": {"from": "created", "to": "account_created"}}
    assert connected["changes"] == {"stage": {"from": "account_created", "to": "connected"}}
    assert ready_stage["changes"] == {"stage": {"from": "connected", "to": "data_ready"}}
    assert ready["requiredData"] == ["identity", "employments", "incomes"]
    assert set(ready["data"]) == {"identity", "employments", "incomes"}
    assert [(a["accountId"], a["status"]) for a in ready["accounts"]] == [("a-1", "connected")]
    assert completed["changes"] == {"status": {"from": "active", "to": "completed"}}
    assert completed["reason"] == "data ready and the settle window has passed"
    assert done.notices is not None
    assert (done.notices.issued, done.notices.delivered, done.notices.failed) == (6, 6, 0)


async def test_an_unhealed_stall_is_announced_then_resumed_by_progress(
    ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver, standin: Standin
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    await stage_is(ops, user, Stage.ACCOUNT_CREATED)
    await env.sleep(timedelta(hours=1))  # the stall timeout of account_created

    async def stalled_and_announced() -> None:
        assert kinds(receiver.delivered(user))[-1] == STALLED.value

    await eventually(stalled_and_announced)
    view = await ops.get(user)
    assert view.status is Status.STALLED and view.reconcile.runs == 1  # Smile was asked
    asked = [c for c in await standin.calls() if c["path"] == "/v1/accounts"]
    assert any(user in str(c["query"]) for c in asked)

    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=60)])
    await stage_is(ops, user, Stage.CONNECTED)
    await ops.cancel(user, "test over")
    await result(ops.client, user)

    got = receiver.delivered(user)
    assert summary(got) == [
        ("started", "created", "active"),
        ("stage_changed", "account_created", "active"),
        ("stalled", "account_created", "stalled"),
        ("resumed", "connected", "active"),
        ("stage_changed", "connected", "active"),
        ("cancelled", "connected", "cancelled"),
    ]
    check_bodies(got, user)
    stalled, resumed = got[2].data, got[3].data
    assert stalled["changes"] == {"status": {"from": "active", "to": "stalled"}}
    assert stalled["stalls"] == 1 and stalled["stallDeadline"] and stalled["stageEnteredAt"]
    assert resumed["changes"] == {
        "stage": {"from": "account_created", "to": "connected"},
        "status": {"from": "stalled", "to": "active"},
    }


async def test_a_stall_smiles_records_heal_is_never_announced(
    ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver, standin: Standin
) -> None:
    """The webhook for the connection was lost; the stall's reconciliation finds it: the
    customer hears of the new stage, never of a stall (nor of a resumption)."""
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-h1")])
    await stage_is(ops, user, Stage.ACCOUNT_CREATED)
    response = await standin.control.put(
        "/_control/accounts/a-h1", json={"userId": user, "connectionStatus": "CONNECTED"}
    )
    assert response.status_code == 200, response.text
    await env.sleep(timedelta(hours=1))
    view = await stage_is(ops, user, Stage.CONNECTED)
    assert view.stalls == 1 and view.reconcile.runs == 1
    await ops.cancel(user, "test over")
    await result(ops.client, user)
    got = receiver.delivered(user)
    assert kinds(got) == [STARTED, STAGE_CHANGED, STAGE_CHANGED, CANCELLED]
    check_bodies(got, user)


async def test_cancel(ops: Onboardings, receiver: NoticeReceiver) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await ops.cancel(user, "user asked to stop")
    await result(ops.client, user)
    got = receiver.delivered(user)
    assert summary(got) == [("started", "created", "active"),
                            ("cancelled", "created", "cancelled")]  # fmt: skip
    assert got[1].data["reason"] == "user asked to stop"
    check_bodies(got, user)


async def test_expiry(ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await ops.set_timeouts(user, TimeoutsChange(expire_after=3600))  # before created stalls
    await env.sleep(timedelta(hours=1))
    assert (await result(ops.client, user)).status is Status.EXPIRED
    got = receiver.delivered(user)
    assert summary(got) == [("started", "created", "active"),
                            ("expired", "created", "expired")]  # fmt: skip
    assert got[1].data["reason"] == "no progress past the created stage"
    check_bodies(got, user)


async def test_smile_saying_no_such_user_fails_it(
    ops: Onboardings, receiver: NoticeReceiver, standin: Standin
) -> None:
    user = unique_user()
    await ops.ingest(user, [event("USER_CREATED")])
    await standin.faults(failNext=1, failStatus=404, onlyPath="/v1/accounts")
    view = await ops.reconcile(user)
    assert view.status is Status.FAILED
    await result(ops.client, user)
    got = receiver.delivered(user)
    assert summary(got) == [("started", "created", "active"),
                            ("failed", "created", "failed")]  # fmt: skip
    assert got[1].data["reason"] == "Smile has no record of this user"
    check_bodies(got, user, "Injected failure", "MISSING_RESOURCE")  # never Smile's words


# --- 2. a receiver down for a while -------------------------------------------------------------


async def test_a_receiver_down_for_a_while_gets_everything_once_in_order(
    ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver
) -> None:
    user = unique_user()
    await receiver.down()
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    await stage_is(ops, user, Stage.ACCOUNT_CREATED)
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=1)])
    await stage_is(ops, user, Stage.CONNECTED)
    await ops.cancel(user, "test over")
    await env.sleep(timedelta(seconds=30))  # attempts at 5 s and 17.5 s are refused too

    notices = Notices(ops)

    async def first_retried_later_held_back() -> NoticeList:
        listed = await notices.deliveries(user)
        first, *later = listed.notices
        assert first.state is DeliveryState.PENDING and first.attempts >= 3
        assert first.last_error is not None and "ConnectError" in first.last_error
        assert [n.attempts for n in later] == [0, 0, 0]
        return listed

    listed = await eventually(first_retried_later_held_back)
    assert await execution_status(ops.client, user) is WorkflowExecutionStatus.RUNNING
    assert receiver.requests(user) == []

    await receiver.up()
    await env.sleep(timedelta(seconds=30))  # past the attempt at 48.75 s
    assert (await result(ops.client, user)).status is Status.CANCELLED
    got = receiver.delivered(user)
    assert kinds(got) == [STARTED, STAGE_CHANGED, STAGE_CHANGED, CANCELLED]
    assert [r.webhook_id for r in got] == [n.id for n in listed.notices]
    assert receiver.requests(user) == got  # nothing twice
    check_bodies(got, user)


# --- 3. refusals stop retries; redelivery; the hold ---------------------------------------------


@pytest.mark.parametrize("status", [410, 400])
async def test_a_refusal_is_not_retried_later_notices_go_on_and_redelivery_works(
    ops: Onboardings, env: WorkflowEnvironment, receiver: NoticeReceiver, status: int
) -> None:
    user = unique_user()
    receiver.answer(status, user=user, type=STARTED)
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    notices = Notices(ops)

    async def refused_then_the_next_delivered() -> NoticeList:
        listed = await notices.deliveries(user)
        assert [(n.state, n.last_status, n.attempts) for n in listed.notices] == [
            (DeliveryState.FAILED, status, 1), (DeliveryState.DELIVERED, 200, 1),
        ]  # fmt: skip
        return listed

    listed = await eventually(refused_then_the_next_delivered)
    refused = listed.notices[0]
    assert listed.counts.failed == 1 and listed.enabled
    assert [r.status for r in receiver.requests(user)] == [status, 200]

    await ops.cancel(user, "test over")
    await eventually(lambda: _delivered_kinds_are(receiver, user, [STAGE_CHANGED, CANCELLED]))
    await env.sleep(timedelta(minutes=5))  # a retry, had there been one, would have come
    # Ended, but held open: the refused notice can still be redelivered.
    assert await execution_status(ops.client, user) is WorkflowExecutionStatus.RUNNING
    assert [r.webhook_id for r in receiver.requests(user)].count(refused.id) == 1

    receiver.fix(user)
    assert await notices.redeliver(user, refused.sequence) == [1]
    assert (await result(ops.client, user)).status is Status.CANCELLED
    got = receiver.delivered(user)
    assert kinds(got) == [STAGE_CHANGED, CANCELLED, STARTED]
    assert got[-1].webhook_id == refused.id and got[-1].sequence == 1
    after = await notices.deliveries(user)
    assert [n.state for n in after.notices] == [DeliveryState.DELIVERED] * 3
    assert after.notices[0].attempts == 2


async def test_a_failed_notice_holds_the_ended_onboarding_open_for_notice_hold(
    env: WorkflowEnvironment, worker: None, api_settings: Settings, receiver: NoticeReceiver
) -> None:
    settings = notify_settings(api_settings, TASK_QUEUE, receiver.url,
                               notify_hold=timedelta(hours=2))  # fmt: skip
    ops = Onboardings(env.client, settings)
    user = unique_user()
    receiver.answer(410, user=user, type=CANCELLED)
    await ops.ingest(user, [event("USER_CREATED")])
    await ops.cancel(user, "test over")
    notices = Notices(ops)

    async def refused() -> None:
        listed = await notices.deliveries(user)
        assert [(n.type, n.state) for n in listed.notices] == [
            (STARTED, DeliveryState.DELIVERED), (CANCELLED, DeliveryState.FAILED),
        ]  # fmt: skip

    await eventually(refused)
    await env.sleep(timedelta(hours=1, minutes=59))
    assert await execution_status(ops.client, user) is WorkflowExecutionStatus.RUNNING
    await env.sleep(timedelta(minutes=2))

    async def closed() -> None:
        assert await execution_status(ops.client, user) is WorkflowExecutionStatus.COMPLETED

    await eventually(closed)
    with pytest.raises(NoticesClosed):
        await notices.redeliver(user, None)
    assert [r.status for r in receiver.requests(user)] == [200, 410]


# --- 4. a notice being retried, as an operator sees it -----------------------------------------


async def test_a_notice_being_retried_shows_its_attempts_status_and_next_attempt(
    dev_ops: Onboardings, receiver: NoticeReceiver
) -> None:
    ops = dev_ops
    user = unique_user()
    receiver.answer(503, user=user, headers={"retry-after": "2"})
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
    notices = Notices(ops)

    async def being_retried() -> NoticeList:
        listed = await notices.deliveries(user)
        first, second = listed.notices
        assert first.state is DeliveryState.PENDING and first.attempts >= 2
        # the attempts made, as the receiver counts them (not the one Temporal plans next)
        assert first.attempts == len(receiver.requests(user))
        assert first.last_status == 503 and first.next_attempt_at is not None
        assert first.last_error is not None and "503" in first.last_error
        assert (second.state, second.attempts) == (DeliveryState.PENDING, 0)  # held back
        return listed

    listed = await eventually(being_retried)
    first = listed.notices[0]
    assert first.next_attempt_at is not None and first.next_attempt_at > first.created_at
    # The receiver's Retry-After (2 s) sets the wait, not the policy's first interval (5 s).
    assert first.next_attempt_at - datetime.now(UTC) < timedelta(seconds=2.5)
    assert {r.sequence for r in receiver.requests(user)} == {1}

    receiver.fix(user)
    await ops.cancel(user, "test over")
    assert (await result(ops.client, user)).status is Status.CANCELLED
    got = receiver.delivered(user)
    assert kinds(got) == [STARTED, STAGE_CHANGED, CANCELLED]
    check_bodies(got, user)
    after = await notices.deliveries(user)
    assert after.notices[0].attempts >= 2 and after.notices[0].last_status == 200


# --- 5. secret rotation --------------------------------------------------------------------------


async def test_signed_with_both_secrets_so_old_and_new_receivers_verify(
    env: WorkflowEnvironment, standin: Standin, api_settings: Settings
) -> None:
    task_queue = f"notices-rotation-{uuid.uuid4().hex[:8]}"
    async with notice_receiver(OLD_SECRET) as old, notice_receiver(NEW_SECRET) as new:
        notices = sender(old.url, new.url, secrets=(NEW_SECRET, OLD_SECRET))
        smile = standin.client()
        settings = notify_settings(api_settings, task_queue, old.url, new.url)
        ops = Onboardings(env.client, settings)
        user = unique_user()
        async with build_worker(env.client, task_queue, smile, notices=notices):
            await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1")])
            await stage_is(ops, user, Stage.ACCOUNT_CREATED)
            await ops.cancel(user, "test over")
            await result(ops.client, user)
        await notices.aclose()
        await smile.aclose()
    for receiver, secret in ((old, OLD_SECRET), (new, NEW_SECRET)):
        got = receiver.requests(user)
        assert kinds(got) == [STARTED, STAGE_CHANGED, CANCELLED]
        assert all(r.verified_by == (secret,) and r.status == 200 for r in got)
        assert all(len(r.headers["webhook-signature"].split(" ")) == 2 for r in got)
    assert [(r.webhook_id, r.body) for r in old.received] == [
        (r.webhook_id, r.body) for r in new.received
    ]


# --- 6. only the types asked for --------------------------------------------------------------


async def test_only_the_types_asked_for_numbered_from_one(
    env: WorkflowEnvironment, worker: None, api_settings: Settings, receiver: NoticeReceiver
) -> None:
    settings = notify_settings(api_settings, TASK_QUEUE, receiver.url, notify_types=[DATA_READY])
    ops = Onboardings(env.client, settings)
    assert ops.default_options.notices == [DATA_READY]
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1")])
    await stage_is(ops, user, Stage.CONNECTED)
    await ops.ingest(user, [event(t, accountId="a-1", at=1 + i) for i, t in enumerate(DATA)])
    await stage_is(ops, user, Stage.DATA_READY)
    await ops.cancel(user, "test over")
    done = await result(ops.client, user)
    got = receiver.requests(user)
    assert summary(got) == [("data_ready", "data_ready", "active")]
    check_bodies(got, user)
    assert done.notices is not None and done.notices.issued == 1


# --- 7. notices off -------------------------------------------------------------------------------


async def test_notices_off_schedule_no_delivery_and_the_onboarding_ends_as_before(
    env: WorkflowEnvironment, worker: None, api_settings: Settings, receiver: NoticeReceiver
) -> None:
    settings = api_settings.model_copy(update={"task_queue": TASK_QUEUE})
    ops = Onboardings(env.client, settings)
    assert ops.default_options.notices is None
    user = unique_user()
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1")])
    await ops.ingest(user, [event(t, accountId="a-1", at=1 + i) for i, t in enumerate(DATA)])
    await stage_is(ops, user, Stage.DATA_READY)
    await env.sleep(timedelta(minutes=11))
    done = await result(ops.client, user)
    assert done.status is Status.COMPLETED and done.notices is None
    assert (await ops.notice_log(user)).records == []
    history = await ops.client.get_workflow_handle(workflow_id_for(user)).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "deliver_notice" not in scheduled
    assert receiver.requests(user) == []


# --- 8. continue-as-new -------------------------------------------------------------------------


async def continued(ops: Onboardings, user: str, run_id: str) -> None:
    """The run ``run_id`` continued as new (read from its history: a workflow whose task keeps
    failing answers no query; it continues within milliseconds when it can)."""
    handle = ops.client.get_workflow_handle(workflow_id_for(user), run_id=run_id)

    async def check() -> None:
        seen = {e.event_type for e in (await handle.fetch_history()).events}
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW in seen

    await eventually(check, timeout=5.0)


async def carried_and_delivered_once(
    ops: Onboardings, receiver: NoticeReceiver, user: str, first_event: str, pending: int
) -> list[Received]:
    """Start with ``first_event`` while the receiver answers 503 (Retry-After: 1) to this user,
    so that ``pending`` notices wait; two more signals make it continue as new (threshold 3);
    then the receiver recovers. Returns what it accepted."""
    receiver.answer(503, user=user, headers={"retry-after": "1"})
    await ops.ingest(user, [event(first_event, accountId="a-1")])

    async def being_retried() -> None:
        assert {r.sequence for r in receiver.requests(user)} == {1}
        assert [r.state for r in (await ops.notice_log(user)).records] == [
            DeliveryState.PENDING
        ] * pending

    await eventually(being_retried)
    first_run = (await ops.describe(user)).run_id
    for at in (1, 2):  # an unknown type changes nothing: no new notice
        await ops.ingest(user, [event("NEW_EVENT_TYPE", at=at)])
    await continued(ops, user, first_run)

    async def continued_with_the_notices_pending() -> list[NoticeRecord]:
        view = await ops.get(user)
        assert view.runs == 2 and view.events_total == 3
        log = await ops.notice_log(user)
        assert [(r.sequence, r.state) for r in log.records] == [
            (n, DeliveryState.PENDING) for n in range(1, pending + 1)
        ]
        return log.records

    carried = await eventually(continued_with_the_notices_pending)
    # The notice retried in the first run keeps its webhook-id in the next.
    assert {r.webhook_id for r in receiver.requests(user)} == {carried[0].id}
    receiver.fix(user)

    async def all_delivered() -> None:
        log = await ops.notice_log(user)
        assert [r.state for r in log.records] == [DeliveryState.DELIVERED] * pending

    await eventually(all_delivered)
    await ops.cancel(user, "test over")
    await result(ops.client, user)
    got = receiver.delivered(user)
    assert [r.webhook_id for r in got[:pending]] == [r.id for r in carried]
    assert len({r.webhook_id for r in got}) == len(got)  # each accepted once
    check_bodies(got, user)
    return got


@pytest.fixture
def can_ops(dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings,
            receiver: NoticeReceiver) -> Onboardings:  # fmt: skip
    settings = notify_settings(api_settings, DEV_TASK_QUEUE, receiver.url,
                               continue_as_new_after=3)  # fmt: skip
    return Onboardings(dev_env.client, settings)


async def test_a_pending_notice_is_carried_by_continue_as_new_and_delivered_once(
    can_ops: Onboardings, receiver: NoticeReceiver
) -> None:
    user = unique_user()
    got = await carried_and_delivered_once(can_ops, receiver, user, "USER_CREATED", pending=1)
    assert kinds(got) == [STARTED, CANCELLED]


async def test_notices_held_back_behind_a_retried_one_survive_continue_as_new(
    can_ops: Onboardings, receiver: NoticeReceiver
) -> None:
    user = unique_user()
    try:
        got = await carried_and_delivered_once(
            can_ops, receiver, user, "ACCOUNT_CREATED", pending=2
        )
        assert kinds(got) == [STARTED, STAGE_CHANGED, CANCELLED]
    finally:
        handle = can_ops.client.get_workflow_handle(workflow_id_for(user))
        if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            await handle.terminate("stuck after continue-as-new")


async def _delivered_kinds_are(receiver: NoticeReceiver, user: str, expected: list[str]) -> None:
    assert kinds(receiver.delivered(user)) == expected
