"""Operator endpoints through the real FastAPI app against a real dev server."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from tests.conftest import WEBHOOK_SECRET, eventually, unique_user
from tests.smile_samples import BASE_TIME, webhook_body


async def deliver(api: httpx.AsyncClient, event_type: str, user: str, at: int = 0) -> None:
    body = webhook_body(event_type, user, created_at=BASE_TIME + timedelta(seconds=at))
    response = await api.post(
        "/webhooks/smile", content=body, headers={"Smile-Signature": sign(body, WEBHOOK_SECRET)}
    )
    assert response.status_code == 202, response.text


async def started(api: httpx.AsyncClient, admin: dict[str, str], *types: str) -> str:
    user = unique_user()
    for at, event_type in enumerate(types or ("USER_CREATED",)):
        await deliver(api, event_type, user, at)  # in createdAt order, as Smile sends them

    async def visible() -> None:
        response = await api.get(f"/onboardings/{user}", headers=admin)
        assert response.status_code == 200
        assert response.json()["eventsTotal"] == len(types or ("USER_CREATED",))

    await eventually(visible)
    return user


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/onboardings"),
        ("GET", "/onboardings/stats"),
        ("GET", "/onboardings/someone"),
        ("PUT", "/onboardings/someone/timeouts"),
        ("POST", "/onboardings/someone/cancel"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong token"),
        pytest.param({"Authorization": "Basic YWRtaW46YWRtaW4="}, id="basic auth"),
    ],
)
async def test_operator_endpoints_need_the_admin_token(
    api: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await api.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"type", "title", "status", "detail"}


async def test_unknown_user_is_404(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await api.get(f"/onboardings/{unique_user()}", headers=admin)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no onboarding for user")


async def test_invalid_user_id_is_422(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await api.get("/onboardings/-bad'id", headers=admin)
    assert response.status_code == 422
    assert "user_id" in response.json()["detail"]


async def test_set_timeouts(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    user = await started(api, admin)
    response = await api.put(
        f"/onboardings/{user}/timeouts",
        headers=admin,
        json={"stall": {"created": "2h", "connected": 600}, "expireAfter": "3d"},
    )
    assert response.status_code == 200, response.text
    timeouts = response.json()
    assert timeouts["stall"]["created"] == 7200
    assert timeouts["stall"]["connected"] == 600
    assert timeouts["expireAfter"] == 3 * 86400
    view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
    assert view["timeouts"] == timeouts


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stall": {"sleeping": "1h"}}, "unknown stage 'sleeping'"),
        ({"stall": {"created": "0s"}}, "must be a positive number"),
        ({"stall": {"created": "soon"}}, "invalid duration"),
        ({}, "nothing to change"),
    ],
)
async def test_bad_timeouts_are_422_and_change_nothing(
    api: httpx.AsyncClient, admin: dict[str, str], body: dict[str, object], message: str
) -> None:
    user = await started(api, admin)
    before = (await api.get(f"/onboardings/{user}", headers=admin)).json()["timeouts"]
    response = await api.put(f"/onboardings/{user}/timeouts", headers=admin, json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert (await api.get(f"/onboardings/{user}", headers=admin)).json()["timeouts"] == before


async def test_cancel(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    user = await started(api, admin)
    response = await api.post(
        f"/onboardings/{user}/cancel", headers=admin, json={"reason": "duplicate applicant"}
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["statusReason"]) == (
        "cancelled",
        "duplicate applicant",
    )
    again = await api.post(f"/onboardings/{user}/cancel", headers=admin)
    assert again.status_code == 409
    timeouts = await api.put(
        f"/onboardings/{user}/timeouts", headers=admin, json={"stall": {"created": "1h"}}
    )
    assert timeouts.status_code == 409
    assert (
        await api.post(f"/onboardings/{unique_user()}/cancel", headers=admin)
    ).status_code == 404


async def test_list_by_stage_and_status_with_paging(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    users = {await started(api, admin, "ACCOUNT_CREATED", "ACCOUNT_CONNECTED") for _ in range(3)}

    async def listed() -> None:
        seen: set[str] = set()
        token = None
        for _ in range(100):
            params = {"stage": "connected", "status": "active", "pageSize": "2"}
            if token:
                params["pageToken"] = token
            response = await api.get("/onboardings", headers=admin, params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            for item in page["items"]:
                assert (item["stage"], item["status"]) == ("connected", "active")
                seen.add(item["userId"])
            token = page["nextPageToken"]
            if not token:
                break
        assert users <= seen

    await eventually(listed)

    async def excluded() -> None:
        response = await api.get("/onboardings", headers=admin, params={"stage": "data_ready"})
        assert not users & {item["userId"] for item in response.json()["items"]}

    await eventually(excluded)


async def test_bad_list_parameters(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    assert (await api.get("/onboardings?stage=nowhere", headers=admin)).status_code == 422
    assert (await api.get("/onboardings?pageSize=0", headers=admin)).status_code == 422
    for token in ("%%%", "Z2FyYmFnZQ=="):  # not base64; base64 of something not a token
        bad_token = await api.get("/onboardings", params={"pageToken": token}, headers=admin)
        assert bad_token.status_code == 400, bad_token.text
        assert "pageToken" in bad_token.json()["detail"]


async def test_stats_count_the_funnel(
    api: httpx.AsyncClient, admin: dict[str, str], dev_env: WorkflowEnvironment
) -> None:
    await started(api, admin, "ARCHIVE_STARTED")

    async def counted() -> None:
        response = await api.get("/onboardings/stats", headers=admin)
        assert response.status_code == 200
        funnel = response.json()
        assert set(funnel["byStage"]) == {
            "created",
            "account_created",
            "connected",
            "uploads",
            "data_ready",
        }
        assert funnel["byStage"]["uploads"] >= 1
        assert sum(funnel["byStage"].values()) == funnel["total"]
        # Every onboarding has one status, except those terminated from outside Temporal's
        # UI: still "active" in their search attribute, but not running, so not counted.
        terminated = await dev_env.client.count_workflows(
            "WorkflowType = 'OnboardingWorkflow' AND ExecutionStatus = 'Terminated'"
        )
        assert sum(funnel["byStatus"].values()) == funnel["total"] - terminated.count

    await eventually(counted)


async def test_an_update_that_runs_out_of_time_is_503_not_500(
    api: httpx.AsyncClient,
    admin: dict[str, str],
    api_settings: Settings,
    dev_env: WorkflowEnvironment,
) -> None:
    user = await started(api, admin)
    hurried = create_app(api_settings.model_copy(update={"rpc_timeout": timedelta(microseconds=1)}),
                         dev_env.client)  # fmt: skip
    transport = httpx.ASGITransport(app=hurried)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.put(f"/onboardings/{user}/timeouts", headers=admin,
                                    json={"stall": {"created": "2h"}})  # fmt: skip
        started_response = await client.post("/onboardings", headers=admin)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert started_response.status_code == 503, started_response.text


async def test_a_workflow_terminated_from_outside_is_neither_active_nor_counted_as_such(
    api: httpx.AsyncClient, admin: dict[str, str], dev_env: WorkflowEnvironment
) -> None:
    user = await started(api, admin, "ACCOUNT_CREATED")
    await dev_env.client.get_workflow_handle(f"onboarding-{user}").terminate("by hand")

    async def not_listed_as_active() -> None:
        response = await api.get(
            "/onboardings", headers=admin, params={"status": "active", "pageSize": 500}
        )
        assert user not in {item["userId"] for item in response.json()["items"]}

    await eventually(not_listed_as_active)
