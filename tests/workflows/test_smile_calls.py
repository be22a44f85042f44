"""Calls to Smile through the real activities, against the stand-in over HTTP, on the
time-skipping server: retries, Retry-After, no retry on 401, time-outs, token refresh after
onTokenExpired, and reconciliation un-stalling a user whose webhook never came."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from onboarding.cli.logging_setup import cap_payload_loggers
from onboarding.core.models import (
    ConnectionStatus,
    Event,
    OnboardingView,
    SmileWebhook,
    Source,
    Stage,
    StartRequest,
    Status,
)
from onboarding.service.onboardings import Onboardings, SmileCallFailed
from onboarding.service.settings import Settings
from onboarding.service.worker import build_worker
from tests.conftest import (
    CALLBACK_SECRET,
    SMILE_SECRET,
    Standin,
    eventually,
    running_standin,
    start_time_skipping,
)
from tests.smile_samples import event

TASK_QUEUE = f"smile-{uuid.uuid4().hex[:8]}"
CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own test server: Smile's tokens expire by the wall clock, so this clock
    must not carry the days skipped by other modules."""
    async with await start_time_skipping() as env:
        yield env


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


@pytest.fixture(scope="module")
async def worker(time_skipping_env: WorkflowEnvironment, standin: Standin) -> AsyncIterator[None]:
    smile = standin.client(timeout=CLIENT_TIMEOUT)
    async with build_worker(time_skipping_env.client, TASK_QUEUE, smile):
        yield
    await smile.aclose()


@pytest.fixture
async def ops(
    time_skipping_env: WorkflowEnvironment, worker: None, standin: Standin
) -> Onboardings:
    await standin.reset()
    settings = Settings(task_queue=TASK_QUEUE, callback_secret=SecretStr(CALLBACK_SECRET))
    return Onboardings(time_skipping_env.client, settings)


def statuses(calls: list[dict[str, object]], path: str) -> list[object]:
    return [c["status"] for c in calls if c["path"] == path]


async def test_start_creates_the_user_and_returns_its_first_token(
    ops: Onboardings, standin: Standin
) -> None:
    issued, view = await ops.start(StartRequest(external_metadata={"applicant": "42"}))
    assert issued.user_id in standin.state.users
    assert standin.state.users[issued.user_id]["externalMetadata"] == {"applicant": "42"}
    assert issued.link_token.startswith("standin.")
    assert issued.callback_token.startswith("cbt1.")
    assert view.token.expires_at == issued.expires_at
    assert view.external_metadata == {"applicant": "42"}
    assert issued.link_token not in view.model_dump_json()  # the value is never kept


async def test_retries_then_succeeds_after_500s(ops: Onboardings, standin: Standin) -> None:
    await standin.faults(failNext=3, failStatus=503, onlyPath="/v1/users")
    issued, _ = await ops.start(StartRequest())
    assert issued.user_id
    assert statuses(await standin.calls(), "/v1/users") == [503, 503, 503, 201]


async def test_429_waits_at_least_retry_after_on_the_servers_clock(
    ops: Onboardings, standin: Standin, time_skipping_env: WorkflowEnvironment
) -> None:
    await standin.faults(rateLimitNext=1, retryAfter=90, onlyPath="/v1/users")
    before = await time_skipping_env.get_current_time()
    await ops.start(StartRequest())
    waited = await time_skipping_env.get_current_time() - before
    assert statuses(await standin.calls(), "/v1/users") == [429, 201]
    # The retry policy alone would have retried after 1s.
    assert waited >= timedelta(seconds=90)


async def test_401_fails_at_once_without_retrying(ops: Onboardings, standin: Standin) -> None:
    await standin.faults(rejectCredentials=True, onlyPath="/v1/users")
    with pytest.raises(SmileCallFailed, match="HTTP 401 INVALID_CREDENTIALS") as caught:
        await ops.start(StartRequest())
    assert SMILE_SECRET not in str(caught.value)
    assert statuses(await standin.calls(), "/v1/users") == [401]


async def test_a_time_out_is_retried(ops: Onboardings, standin: Standin) -> None:
    await standin.faults(delayNext=1, delaySeconds=CLIENT_TIMEOUT * 3, onlyPath="/v1/users")
    issued, _ = await ops.start(StartRequest())
    assert issued.user_id
    # The first call was still answered by the stand-in after our client had given up.
    assert len(statuses(await standin.calls(), "/v1/users")) == 2


async def test_a_failed_token_refresh_is_recorded(ops: Onboardings, standin: Standin) -> None:
    issued, _ = await ops.start(StartRequest())
    await standin.faults(failNext=1, failStatus=404, onlyPath="/v1/tokens")
    with pytest.raises(SmileCallFailed, match="HTTP 404"):
        await ops.link_token(issued.user_id)
    view = await ops.get(issued.user_id)
    assert view.token.refresh_failures == 1
    assert view.token.last_error is not None and "404" in view.token.last_error


async def test_reconciliation_unstalls_a_user_whose_webhook_was_never_delivered(
    ops: Onboardings, standin: Standin, time_skipping_env: WorkflowEnvironment
) -> None:
    issued, _ = await ops.start(StartRequest())
    user = issued.user_id
    await ops.ingest(user, [event("ACCOUNT_CREATED", accountId="a-missed", providers=["abccorp"])])
    # Smile's records move on; the ACCOUNT_CONNECTED webhook is lost.
    response = await standin.control.put(
        "/_control/accounts/a-missed",
        json={"userId": user, "providerId": "abccorp", "connectionStatus": "CONNECTED"},
    )
    assert response.status_code == 200

    await time_skipping_env.sleep(timedelta(hours=1))  # account_created stalls after 1h

    async def recovered() -> OnboardingView:
        view = await ops.get(user)
        assert view.reconcile.runs == 1
        assert view.stage is Stage.CONNECTED
        assert view.status is Status.ACTIVE
        return view

    view = await eventually(recovered)
    (account,) = view.accounts
    assert (account.status, account.reported_by) == (ConnectionStatus.CONNECTED, Source.RECONCILE)
    assert view.stalls == 1
    assert view.reconcile.facts_added == 1


async def test_reconcile_on_demand(ops: Onboardings, standin: Standin) -> None:
    issued, _ = await ops.start(StartRequest())
    await standin.control.put(
        "/_control/accounts/a-mfa",
        json={"userId": issued.user_id, "connectionStatus": "AWAITING_MFA"},
    )
    view = await ops.reconcile(issued.user_id)
    assert view.reconcile.last_error is None, view.reconcile
    assert [(a.account_id, a.status) for a in view.accounts] == [
        ("a-mfa", ConnectionStatus.AWAITING_MFA)
    ]
    assert view.stage is Stage.ACCOUNT_CREATED
    again = await ops.reconcile(issued.user_id)
    assert (again.reconcile.runs, again.reconcile.facts_added) == (2, 1)  # deduplicated


async def test_no_secret_or_token_in_the_logs(
    ops: Onboardings, standin: Standin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, as an operator debugging would ask
    cap_payload_loggers()  # what every onboarding process does at startup
    issued, _ = await ops.start(StartRequest())
    fresh = await ops.link_token(issued.user_id)
    await standin.faults(rejectCredentials=True, onlyPath="/v1/tokens")
    with pytest.raises(SmileCallFailed):
        await ops.link_token(issued.user_id)
    assert caplog.records, "nothing was logged, so nothing was checked"
    for secret in (SMILE_SECRET, issued.link_token, fresh.link_token, CALLBACK_SECRET,
                   issued.callback_token):  # fmt: skip
        assert secret not in caplog.text


# --- reconciliation heals lost TASK_FINISHED and data webhooks ------------------------------


async def play(standin: Standin, user: str, event_type: str, **data: object) -> Event:
    """Smile's records move as on a real journey, but the webhook is *not* delivered; the
    envelope it would have sent comes back, for the tests that deliver it themselves."""
    response = await standin.control.post(
        "/_control/webhooks",
        json={"userId": user, "type": event_type, "data": data, "deliver": False},
    )
    assert response.status_code == 200, response.text
    hook = SmileWebhook.model_validate(response.json()["envelope"])
    return Event(id=hook.id, type=hook.type, source=Source.WEBHOOK, created_at=hook.created_at,
                 received_at=hook.created_at, data=hook.data)  # fmt: skip


async def connect_account(ops: Onboardings, standin: Standin, user: str) -> None:
    """ACCOUNT_CREATED and ACCOUNT_CONNECTED delivered: the onboarding is ``connected``."""
    delivered = [await play(standin, user, "ACCOUNT_CREATED"),
                 await play(standin, user, "ACCOUNT_CONNECTED")]  # fmt: skip
    await ops.ingest(user, delivered)

    async def connected() -> None:
        assert (await ops.get(user)).stage is Stage.CONNECTED

    await eventually(connected)


async def test_reconcile_on_demand_heals_a_lost_task_finished_and_lost_data(
    ops: Onboardings, standin: Standin
) -> None:
    issued, _ = await ops.start(StartRequest())  # requires identity, employments, incomes
    user = issued.user_id
    await connect_account(ops, standin, user)
    # Smile finished the sync and stored the data; none of those webhooks arrived.
    await play(standin, user, "TASK_FINISHED")
    await play(standin, user, "IDENTITY_ADDED")
    await play(standin, user, "EMPLOYMENTS_ADDED", count=2)
    await play(standin, user, "INCOMES_ADDED", count=3)
    assert (await ops.get(user)).stage is Stage.CONNECTED

    view = await ops.reconcile(user)
    assert view.reconcile.last_error is None, view.reconcile
    assert view.stage is Stage.DATA_READY
    assert {d: r.items for d, r in view.data.items()} == {
        "identity": 1, "employments": 2, "incomes": 3
    }  # fmt: skip
    (task,) = view.tasks
    assert (task.status, task.succeeded) == ("SUCCEEDED", True)
    assert (view.reconcile.tasks_seen, view.reconcile.records_skipped) == (1, 0)
    assert view.reconcile.data_seen == {"identity": 1, "employments": 2, "incomes": 3}
    again = await ops.reconcile(user)
    assert again.reconcile.facts_added == view.reconcile.facts_added  # all deduplicated
    assert {d: r.items for d, r in again.data.items()} == {
        "identity": 1, "employments": 2, "incomes": 3
    }  # fmt: skip


async def test_a_stall_reconciles_and_finds_the_required_data_whose_webhooks_were_lost(
    ops: Onboardings, standin: Standin, time_skipping_env: WorkflowEnvironment
) -> None:
    issued, _ = await ops.start(StartRequest(required_data=["incomes"]))
    user = issued.user_id
    await connect_account(ops, standin, user)
    await play(standin, user, "INCOMES_ADDED", count=4)  # lost; no task reported either

    await time_skipping_env.sleep(timedelta(hours=6, minutes=1))  # connected stalls after 6h

    async def healed() -> OnboardingView:
        view = await ops.get(user)
        assert view.reconcile.runs >= 1
        assert view.stage is Stage.DATA_READY
        return view

    view = await eventually(healed)
    assert view.data["incomes"].items == 4
    assert view.tasks == []
    # Only what is required is asked for (other onboardings on this server stall too).
    calls = {c["path"] for c in await standin.calls() if f"userId={user}" in str(c["query"])}
    assert "/v1/incomes" in calls and "/v1/identities" not in calls
