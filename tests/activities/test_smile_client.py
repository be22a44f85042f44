"""The Smile client against the stand-in over real HTTP: envelope, paging, error classes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.smile import SmileActivities
from activities.smile_client import SmileClient
from activities.smile_errors import (
    NON_RETRYABLE_TYPES,
    SmileBadRequest,
    SmileNotFound,
    SmileRateLimited,
    SmileServerError,
    SmileTimeout,
    SmileUnauthorized,
    SmileUnreachable,
)
from tests.conftest import SMILE_KEY, SMILE_SECRET, Standin, free_port, running_standin


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


@pytest.fixture
async def client(standin: Standin) -> AsyncIterator[SmileClient]:
    smile = standin.client(timeout=0.5)
    yield smile
    await smile.aclose()


async def test_create_user_and_token(client: SmileClient) -> None:
    created = await client.create_user({"ref": "x"})
    assert created.user.id.startswith("standin-")
    assert created.user.external_metadata == {"ref": "x"}
    assert created.token.expires_at > created.user.created_at  # type: ignore[operator]
    token = await client.create_token(created.user.id)
    assert token.access_token != created.token.access_token
    assert token.mode == "SANDBOX"


async def test_accounts_are_paged(client: SmileClient, standin: Standin) -> None:
    user = (await client.create_user(None)).user.id
    for i in range(160):  # more than one page of 150
        await standin.control.put(
            f"/_control/accounts/a-{i:04d}", json={"userId": user, "connectionStatus": "PENDING"}
        )
    accounts = await client.list_accounts(user)
    assert len(accounts) == 160
    assert {a.connection_status for a in accounts} == {"PENDING"}
    assert await client.list_archives(user) == []


@pytest.mark.parametrize(
    ("faults", "error", "retryable"),
    [
        ({"failNext": 1, "failStatus": 500}, SmileServerError, True),
        ({"failNext": 1, "failStatus": 503}, SmileServerError, True),
        ({"rateLimitNext": 1, "retryAfter": 7}, SmileRateLimited, True),
        ({"rejectCredentials": True}, SmileUnauthorized, False),
        ({"delayNext": 1, "delaySeconds": 2}, SmileTimeout, True),
    ],
)
async def test_errors_are_classified(
    client: SmileClient,
    standin: Standin,
    faults: dict[str, object],
    error: type[Exception],
    retryable: bool,
) -> None:
    await standin.faults(**faults)
    with pytest.raises(error) as caught:
        await client.create_user(None)
    assert caught.value.retryable is retryable  # type: ignore[attr-defined]
    assert SMILE_SECRET not in str(caught.value)
    if error is SmileRateLimited:
        assert caught.value.retry_after == timedelta(seconds=7)  # type: ignore[attr-defined]


async def test_unknown_user_is_not_found(client: SmileClient) -> None:
    with pytest.raises(SmileNotFound, match="MISSING_RESOURCE"):
        await client.create_token("standin-nobody")


async def test_unreachable() -> None:
    smile = SmileClient(f"http://127.0.0.1:{free_port()}/v1", SMILE_KEY, SecretStr(SMILE_SECRET))
    with pytest.raises(SmileUnreachable) as caught:
        await smile.create_user(None)
    assert caught.value.retryable
    await smile.aclose()


async def play(standin: Standin, user: str, event_type: str, **data: object) -> dict[str, Any]:
    """A webhook recorded at the stand-in as Smile would have it, and *not* delivered."""
    response = await standin.control.post(
        "/_control/webhooks",
        json={"userId": user, "type": event_type, "data": data, "deliver": False},
    )
    assert response.status_code == 200, response.text
    sent = response.json()
    assert sent["sent"] is False
    return sent["envelope"]  # type: ignore[no-any-return]


async def test_create_user_without_metadata_omits_the_key() -> None:
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(201, json={"code": "CREATED", "data": {
            "user": {"id": "u-1", "externalMetadata": {}, "createdAt": "2021-04-14T09:30:24Z"},
            "token": {"accessToken": "t", "expiresAt": "2021-04-14T14:30:24Z"},
        }})  # fmt: skip

    smile = SmileClient("http://smile.test/v1", SMILE_KEY, SecretStr(SMILE_SECRET),
                        transport=httpx.MockTransport(answer))  # fmt: skip
    await smile.create_user(None)
    await smile.create_user({"ref": "x"})
    await smile.aclose()
    assert [json.loads(b) for b in bodies] == [{}, {"externalMetadata": {"ref": "x"}}]


async def test_the_stand_in_refuses_a_null_external_metadata_as_smile_would(
    client: SmileClient, standin: Standin
) -> None:
    created = await client.create_user(None)  # the key left out: accepted
    assert standin.state.users[created.user.id]["externalMetadata"] == {}
    response = await standin.control.post(
        "/v1/users", json={"externalMetadata": None}, auth=(SMILE_KEY, SMILE_SECRET)
    )
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "requestId", "data"}


async def test_metadata_beyond_smile_s_limits_is_a_bad_request(client: SmileClient) -> None:
    with pytest.raises(SmileBadRequest, match="INVALID_PARAMETERS") as caught:
        await client.create_user({f"k{i}": "v" for i in range(6)})
    assert not caught.value.retryable


async def test_a_408_is_retryable(client: SmileClient, standin: Standin) -> None:
    await standin.faults(failNext=1, failStatus=408)
    with pytest.raises(SmileTimeout, match="HTTP 408") as caught:
        await client.create_user(None)
    assert caught.value.retryable
    assert "SmileTimeout" not in NON_RETRYABLE_TYPES


async def test_tasks_and_data_recorded_without_a_webhook(
    client: SmileClient, standin: Standin
) -> None:
    user = (await client.create_user(None)).user.id
    created = await play(standin, user, "ACCOUNT_CREATED")
    connected = await play(standin, user, "ACCOUNT_CONNECTED")
    account = created["data"]["accountId"]
    assert connected["data"]["accountId"] == account  # the same account, not a new one
    finished = await play(standin, user, "TASK_FINISHED")
    assert finished["data"]["sourceId"] == account
    await play(standin, user, "INCOMES_ADDED", count=3)
    await play(standin, user, "IDENTITY_ADDED")

    (task,) = await client.list_tasks(user)
    assert (task.status, task.type, task.datapoints) == (
        "Finished", "LINK_ACCOUNT", ["IDENTITIES", "EMPLOYMENTS", "INCOMES"]
    )  # fmt: skip
    assert task.metadata is not None and task.metadata.source_id == account
    assert task.finished_at is not None and task.finished_at.tzinfo is not None
    incomes, latest = await client.count_items("incomes", user)
    assert incomes == 3 and latest is not None
    identities, identity_at = await client.count_items("identities", user)
    assert identities == 1 and identity_at is not None and identity_at >= latest
    assert await client.count_items("employments", user) == (0, None)
    assert await client.list_tasks("standin-someone-else") == []


async def test_data_items_are_counted_across_pages(client: SmileClient, standin: Standin) -> None:
    user = (await client.create_user(None)).user.id
    await play(standin, user, "TRANSACTIONS_ADDED", count=151)
    assert (await client.count_items("transactions", user))[0] == 151
    calls = [c for c in await standin.calls() if c["path"] == "/v1/transactions"]
    assert len(calls) == 2


async def test_the_reconcile_activity_skips_a_null_status_and_returns_only_counts(
    client: SmileClient, standin: Standin
) -> None:
    user = (await client.create_user(None)).user.id
    await play(standin, user, "ACCOUNT_CREATED")
    await play(standin, user, "ACCOUNT_CONNECTED")
    await play(standin, user, "TASK_FINISHED")
    await play(standin, user, "IDENTITY_ADDED")
    await play(standin, user, "INCOMES_ADDED", count=2)
    await standin.control.put(
        "/_control/accounts/a-broken", json={"userId": user, "connectionStatus": "PENDING"}
    )
    standin.state.accounts["a-broken"]["connectionStatus"] = None
    standin.state.accounts["a-broken"]["connection"] = None

    result = await SmileActivities(client).reconcile(user, ["identity", "incomes", "employments"])
    assert (result.accounts, result.tasks, result.skipped) == (2, 1, 1)
    assert result.data == {"identity": 1, "incomes": 2, "employments": 0}
    assert sorted(e.type for e in result.events) == [
        "ACCOUNT_CONNECTED", "IDENTITY_ADDED", "INCOMES_ADDED", "TASK_FINISHED"
    ]  # fmt: skip
    dumped = result.model_dump_json()
    assert "Stand-in User" not in dumped and "fullName" not in dumped  # no user data
    queried = {c["path"] for c in await standin.calls()}
    assert {"/v1/accounts", "/v1/archives", "/v1/tasks", "/v1/identities", "/v1/incomes",
            "/v1/employments"} <= queried  # fmt: skip
    assert "/v1/transactions" not in queried  # not required, not asked


async def test_the_reconcile_activity_by_default_asks_for_the_common_types(
    client: SmileClient, standin: Standin
) -> None:
    user = (await client.create_user(None)).user.id
    result = await SmileActivities(client).reconcile(user)
    assert result.data == {"identity": 0, "employments": 0, "incomes": 0}
    assert result.events == []


async def test_the_reconcile_activity_classifies_errors(
    client: SmileClient, standin: Standin
) -> None:
    user = (await client.create_user(None)).user.id
    await standin.faults(failNext=1, failStatus=408, onlyPath="/v1/tasks")
    with pytest.raises(ApplicationError) as caught:
        await SmileActivities(client).reconcile(user)
    assert caught.value.type == "SmileTimeout" and not caught.value.non_retryable
    await standin.faults(failNext=1, failStatus=400, onlyPath="/v1/incomes")
    with pytest.raises(ApplicationError) as caught:
        await SmileActivities(client).reconcile(user)
    assert caught.value.type == "SmileBadRequest" and caught.value.non_retryable


@pytest.mark.parametrize("status", [403, 404])
async def test_a_data_endpoint_refused_skips_that_type_and_nothing_else(
    client: SmileClient, standin: Standin, status: int
) -> None:
    # A 404 anywhere else means "no such user" and ends the onboarding; not from a data endpoint.
    user = (await client.create_user(None)).user.id
    await play(standin, user, "ACCOUNT_CREATED")
    await play(standin, user, "INCOMES_ADDED", count=2)
    await standin.faults(failNext=1, failStatus=status, onlyPath="/v1/identities")
    result = await SmileActivities(client).reconcile(user, ["identity", "incomes"])
    assert result.data == {"incomes": 2}
    assert result.accounts == 1


async def test_a_task_with_null_datapoints_does_not_fail_the_reconciliation(
    client: SmileClient, standin: Standin
) -> None:
    user = (await client.create_user(None)).user.id
    await play(standin, user, "ACCOUNT_CREATED")
    await play(standin, user, "TASK_FINISHED")
    for task in standin.state.tasks.values():
        task["datapoints"] = None
    result = await SmileActivities(client).reconcile(user, [])
    assert result.tasks == 1
