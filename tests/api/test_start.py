"""Starting onboardings, fresh link tokens and reconciliation through the real app."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from onboarding.core import callback_tokens
from tests.conftest import CALLBACK_SECRET, Standin, unique_user


async def start(api: httpx.AsyncClient, admin: dict[str, str], **body: object) -> dict:  # type: ignore[type-arg]
    response = await api.post("/onboardings", headers=admin, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_start_returns_what_the_front_end_needs(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    started = await start(
        api, admin, externalMetadata={"loanId": "L-1"}, requiredData=["incomes"],
        timeouts={"stall": {"created": "2h"}, "expireAfter": "3d"},
    )  # fmt: skip
    user = started["userId"]
    assert set(started) >= {"userId", "linkToken", "expiresAt", "callbackToken", "onboarding"}
    assert shared_standin.state.users[user]["externalMetadata"] == {"loanId": "L-1"}
    from datetime import UTC, datetime

    assert (
        callback_tokens.verify(
            started["callbackToken"], SecretStr(CALLBACK_SECRET), datetime.now(UTC)
        )
        == user
    )
    view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
    assert view["externalMetadata"] == {"loanId": "L-1"}
    assert view["requiredData"] == ["incomes"]
    assert view["timeouts"]["stall"]["created"] == 7200
    assert view["timeouts"]["expireAfter"] == 3 * 86400
    assert view["token"]["expiresAt"] is not None
    assert started["linkToken"] not in str(view)


async def test_an_idempotency_key_reused_after_the_onboarding_ended_is_409(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    headers = {**admin, "Idempotency-Key": unique_user()}
    first = await api.post("/onboardings", headers=headers, json={})
    assert first.status_code == 201, first.text
    user = first.json()["userId"]
    assert (await api.post(f"/onboardings/{user}/cancel", headers=admin)).status_code == 200
    again = await api.post("/onboardings", headers=headers, json={})
    assert again.status_code == 409, again.text
    assert user in again.json()["detail"] and "already ended" in again.json()["detail"]


async def test_an_idempotency_key_makes_a_retry_safe(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    headers = {**admin, "Idempotency-Key": unique_user()}
    users_before = len(shared_standin.state.users)
    first = await api.post("/onboardings", headers=headers, json={})
    second = await api.post("/onboardings", headers=headers, json={})
    assert first.status_code == second.status_code == 201
    assert first.json()["userId"] == second.json()["userId"]
    assert len(shared_standin.state.users) == users_before + 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"timeouts": {"stall": {"nowhere": "1h"}}}, "unknown stage 'nowhere'"),
        ({"timeouts": {"stall": {"created": "0s"}}}, "must be a positive number"),
        ({"timeouts": {"expireAfter": "later"}}, "invalid duration"),
        ({"requiredData": [""]}, "requiredData"),
        ({"externalMetadata": "not an object"}, "externalMetadata"),
    ],
)
async def test_bad_start_options_are_422_and_create_nothing(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin,
    body: dict[str, object], message: str,
) -> None:  # fmt: skip
    users_before = len(shared_standin.state.users)
    response = await api.post("/onboardings", headers=admin, json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert len(shared_standin.state.users) == users_before


async def test_fresh_link_token(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    started = await start(api, admin)
    response = await api.post(f"/onboardings/{started['userId']}/link-token", headers=admin)
    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["userId"] == started["userId"]
    assert fresh["linkToken"] != started["linkToken"]
    assert fresh["callbackToken"].startswith("cbt1.")
    view = (await api.get(f"/onboardings/{started['userId']}", headers=admin)).json()
    assert view["token"]["refreshCount"] == 1
    missing = await api.post(f"/onboardings/{unique_user()}/link-token", headers=admin)
    assert missing.status_code == 404


async def test_reconcile_on_demand(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    started = await start(api, admin)
    user = started["userId"]
    await shared_standin.control.put(
        "/_control/accounts/a-api-1", json={"userId": user, "connectionStatus": "CONNECTED"}
    )
    response = await api.post(f"/onboardings/{user}/reconcile", headers=admin)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["stage"] == "connected"
    assert view["accounts"][0]["reportedBy"] == "reconcile"
    assert view["reconcile"]["runs"] == 1


async def test_a_reconcile_smile_refuses_is_502_and_recorded(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin
) -> None:
    user = (await start(api, admin))["userId"]
    await shared_standin.faults(failNext=1, failStatus=403, onlyPath="/v1/accounts")
    try:
        response = await api.post(f"/onboardings/{user}/reconcile", headers=admin)
    finally:
        await shared_standin.reset()
    assert response.status_code == 502, response.text
    assert "Smile could not be asked" in response.json()["detail"]
    view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
    assert view["status"] == "active"  # recorded, and nothing else changed
    assert "HTTP 403" in view["reconcile"]["lastError"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/onboardings"), ("POST", "/onboardings/u-1/link-token"),
     ("POST", "/onboardings/u-1/reconcile")],
)  # fmt: skip
async def test_these_need_the_admin_token(api: httpx.AsyncClient, method: str, path: str) -> None:
    response = await api.request(method, path, json={})
    assert response.status_code == 401


async def test_start_with_no_body_at_all(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await api.post("/onboardings", headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["onboarding"]["stage"] == "created"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({f"k{i}": "v" for i in range(6)}, "at most 5 keys"),
        ({"k" * 51: "v"}, "at most 50"),
        ({"loanId": "v" * 501}, "at most 500"),
        ({"loanId": 42}, "must be a string, not a number"),
        ({"loanId": {"nested": "x"}}, "must be a string, not an object"),
        ({"loanId": "ñ"}, "non-ASCII"),
    ],
)
async def test_metadata_beyond_smile_s_limits_is_a_400_and_smile_is_never_called(
    api: httpx.AsyncClient, admin: dict[str, str], shared_standin: Standin,
    metadata: dict[str, object], message: str,
) -> None:  # fmt: skip
    users_before = len(shared_standin.state.users)
    await shared_standin.control.delete("/_control/calls")
    response = await api.post("/onboardings", headers=admin, json={"externalMetadata": metadata})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("externalMetadata: ")
    assert message in response.json()["detail"]
    assert len(shared_standin.state.users) == users_before
    assert [c for c in await shared_standin.calls() if c["path"] == "/v1/users"] == []
