"""The Smile stand-in over HTTP: it must not hide the bugs real Smile would show (error envelope,
metadata limits, second-precision times, where the session user is, one account per journey)
and it serves what reconciliation reads (tasks, uploads, data endpoints)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request

from onboarding.tooling.serving import serving
from tests.conftest import SMILE_KEY, SMILE_SECRET, Standin, free_port, running_standin

SECOND_PRECISION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
AUTH = (SMILE_KEY, SMILE_SECRET)


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


async def new_user(standin: Standin, **body: Any) -> str:
    response = await standin.control.post("/v1/users", json=body, auth=AUTH)
    assert response.status_code == 201, response.text
    return response.json()["data"]["user"]["id"]  # type: ignore[no-any-return]


async def play(standin: Standin, user: str | None, event_type: str, *, deliver: bool = False,
               **data: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"type": event_type, "data": data, "deliver": deliver}
    if user is not None:
        body["userId"] = user
    response = await standin.control.post("/_control/webhooks", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def get(standin: Standin, path: str, **params: Any) -> dict[str, Any]:
    response = await standin.control.get(f"/v1/{path}", params=params, auth=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def times(value: Any) -> list[str]:
    """Every *At value anywhere in a JSON document."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k.endswith("At") and isinstance(v, str)]
        return found + [t for v in value.values() for t in times(v)]
    if isinstance(value, list):
        return [t for v in value for t in times(v)]
    return []


async def test_every_time_is_to_the_second(standin: Standin) -> None:
    user = await new_user(standin, externalMetadata={"ref": "x"})
    envelopes = [
        (await play(standin, user, kind))["envelope"]
        for kind in ("ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "TASK_STARTED", "TASK_FINISHED",
                     "IDENTITY_ADDED", "ARCHIVE_STARTED", "USER_SESSION_COMPLETED")
    ]  # fmt: skip
    token = (await standin.control.post("/v1/tokens", params={"userId": user}, auth=AUTH)).json()
    await standin.control.put("/_control/uploads/u-1", json={"userId": user})
    documents: list[Any] = [envelopes, token, (await standin.control.get(
        f"/v1/users/{user}", auth=AUTH)).json()]  # fmt: skip
    for path in ("accounts", "archives", "tasks", "uploads", "identities"):
        documents.append(await get(standin, path, userId=user))
    found = times(documents)
    assert len(found) > 20
    assert all(SECOND_PRECISION.match(t) for t in found), [t for t in found if "." in t]


async def test_errors_come_in_smile_s_envelope(standin: Standin) -> None:
    cases = [
        ("GET", "/v1/accounts", {"size": 999}, 400, "INVALID_PARAMETERS"),
        ("GET", "/v1/nowhere", {}, 404, "MISSING_RESOURCE"),
        ("DELETE", "/v1/accounts", {}, 501, "UNSUPPORTED_METHOD"),
        ("POST", "/v1/tokens", {}, 400, "INVALID_PARAMETERS"),
        ("POST", "/v1/tokens", {"userId": "standin-nobody"}, 404, "MISSING_RESOURCE"),
    ]
    for method, path, params, status, code in cases:
        response = await standin.control.request(method, path, params=params, auth=AUTH)
        assert response.status_code == status, (path, response.text)
        body = response.json()
        assert set(body) == {"code", "message", "requestId", "data"}, body
        assert body["code"] == code
    unauthorized = await standin.control.get("/v1/accounts")
    assert (unauthorized.status_code, unauthorized.json()["code"]) == (401, "INVALID_CREDENTIALS")
    await standin.faults(failNext=1, failStatus=408)
    timed_out = await standin.control.get("/v1/accounts", auth=AUTH)
    assert timed_out.status_code == 408 and set(timed_out.json()) >= {"code", "requestId"}


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {f"k{i}": "v" for i in range(6)},
        {"k" * 51: "v"},
        {"k": "v" * 501},
        {"k": 1},
        {"k": {"nested": "no"}},
        {"k": "café"},
    ],
)
async def test_metadata_beyond_the_limits_is_refused(
    standin: Standin, metadata: dict[str, Any] | None
) -> None:
    before = len(standin.state.users)
    response = await standin.control.post(
        "/v1/users", json={"externalMetadata": metadata}, auth=AUTH
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_PARAMETERS"
    assert len(standin.state.users) == before


async def test_metadata_at_the_limits_is_kept(standin: Standin) -> None:
    metadata = {f"{i}".ljust(50, "k"): "v" * 500 for i in range(5)}
    user = await new_user(standin, externalMetadata=metadata)
    assert standin.state.users[user]["externalMetadata"] == metadata
    assert standin.state.users[await new_user(standin)]["externalMetadata"] == {}


async def test_a_journey_played_by_hand_stays_on_one_account(standin: Standin) -> None:
    user = await new_user(standin)
    created = (await play(standin, user, "ACCOUNT_CREATED"))["envelope"]["data"]
    connected = (await play(standin, user, "ACCOUNT_CONNECTED"))["envelope"]["data"]
    assert connected["accountId"] == created["accountId"]
    (account,) = (await get(standin, "accounts", userId=user))["items"]
    assert (account["id"], account["connectionStatus"]) == (created["accountId"], "CONNECTED")
    # A second ACCOUNT_CREATED is a second account, and later events are about it.
    second = (await play(standin, user, "ACCOUNT_CREATED"))["envelope"]["data"]["accountId"]
    assert second != created["accountId"]
    failed = (await play(standin, user, "ACCOUNT_FAILED"))["envelope"]["data"]
    assert failed["accountId"] == second
    # Archives likewise.
    started = (await play(standin, user, "ARCHIVE_STARTED"))["envelope"]["data"]["archiveId"]
    analyzed = (await play(standin, user, "ARCHIVE_ANALYZED"))["envelope"]["data"]["archiveId"]
    assert analyzed == started


async def test_session_events_carry_the_user_in_the_session(standin: Standin) -> None:
    user = await new_user(standin)
    completed = (await play(standin, user, "USER_SESSION_COMPLETED"))["envelope"]["data"]
    assert "userId" not in completed
    assert completed["session"]["userId"] == user
    assert completed["session"]["status"] == "COMPLETED"
    assert "payload" in completed
    reset = (await play(standin, user, "USER_SESSION_RESET"))["envelope"]["data"]
    assert "userId" not in reset
    assert (reset["session"]["userId"], reset["session"]["status"]) == (user, "IN_PROGRESS")


async def test_tasks_are_recorded_as_smile_lists_them(standin: Standin) -> None:
    user = await new_user(standin)
    account = (await play(standin, user, "ACCOUNT_CREATED"))["envelope"]["data"]["accountId"]
    await play(standin, user, "TASK_STARTED")
    (running,) = (await get(standin, "tasks", userId=user))["items"]
    assert (running["status"], running["finishedAt"]) == ("Started", None)
    finished = (await play(standin, user, "TASK_FINISHED", status="FAILED",
                           errorCode="ACCOUNT_DISABLED"))["envelope"]["data"]  # fmt: skip
    assert finished["sourceId"] == account and finished["datapoints"] == []
    (task,) = (await get(standin, "tasks", userId=user))["items"]
    assert task["id"] == running["id"]  # the started task finished
    assert (task["status"], task["datapoints"], task["type"]) == ("Finished", [], "LINK_ACCOUNT")
    assert task["metadata"]["sourceId"] == account
    assert task["metadata"]["sourceType"] == "ACCOUNT"
    # A finish without a start records a finished task; sourceId filters.
    await play(standin, user, "TASK_FINISHED")
    assert len((await get(standin, "tasks", userId=user))["items"]) == 2
    assert (await get(standin, "tasks", userId=user, sourceId="a-other"))["items"] == []


async def test_data_items_are_recorded_and_paged(standin: Standin) -> None:
    user = await new_user(standin)
    account = (await play(standin, user, "ACCOUNT_CREATED"))["envelope"]["data"]["accountId"]
    await play(standin, user, "EMPLOYMENTS_ADDED", count=12)
    identity = (await play(standin, user, "IDENTITY_ADDED"))["envelope"]["data"]
    first = await get(standin, "employments", userId=user)
    assert len(first["items"]) == 10 and first["nextCursor"]
    rest = await get(standin, "employments", userId=user, cursor=first["nextCursor"])
    assert len(rest["items"]) == 2 and rest["nextCursor"] is None
    (item,) = (await get(standin, "identities", userId=user))["items"]
    assert item["id"] == identity["identityId"]
    assert item["metadata"]["sourceId"] == account == identity["accountId"]
    for path in ("ratings", "documents", "incomes", "contributions", "liabilities",
                 "transactions", "eincomes", "insights", "links"):  # fmt: skip
        assert (await get(standin, path, userId=user))["items"] == []


async def test_uploads_are_served(standin: Standin) -> None:
    user = await new_user(standin)
    await standin.control.put("/_control/uploads/u-1", json={"userId": user, "status": "ANALYZED"})
    (upload,) = (await get(standin, "uploads", userId=user))["items"]
    assert (upload["id"], upload["state"]["status"], upload["rawFiles"]) == ("u-1", "ANALYZED", [])


async def test_deliver_false_sends_nothing_and_deliver_true_sends() -> None:
    received: list[bytes] = []
    sink = FastAPI()

    @sink.post("/hook", status_code=202)
    async def hook(request: Request) -> dict[str, str]:
        received.append(await request.body())
        return {"status": "accepted"}

    port = free_port()
    async with (
        serving(sink, "127.0.0.1", port),
        running_standin(
            webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret="s"
        ) as standin,  # fmt: skip
    ):
        user = await new_user(standin)
        lost = await play(standin, user, "ACCOUNT_CREATED", deliver=False)
        assert lost["sent"] is False and received == []
        assert lost["envelope"]["data"]["accountId"] in standin.state.accounts
        sent = await play(standin, user, "ACCOUNT_CONNECTED", deliver=True)
        assert (sent["sent"], sent["status"]) == (True, 202)
        assert len(received) == 1
