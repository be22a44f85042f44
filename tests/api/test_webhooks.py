"""``POST /webhooks/smile`` through the real FastAPI app, against a real Temporal dev server.
Every refusal also checks that nothing reached Temporal."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.compact import without_dropped_fields
from onboarding.core.models import Stage
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect
from tests.conftest import (
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    eventually,
    unique_user,
    workflow_exists,
)
from tests.smile_samples import BASE_TIME, EXAMPLE_USER, example_body, webhook_body

URL = "/webhooks/smile"


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Smile-Signature": sign(body, secret), "Content-Type": "application/json"}


async def state(api: httpx.AsyncClient, admin: dict[str, str], user: str) -> dict:  # type: ignore[type-arg]
    async def check() -> dict:  # type: ignore[type-arg]
        response = await api.get(f"/onboardings/{user}", headers=admin)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    return await eventually(check)


async def test_documented_example_is_accepted_and_visible(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = example_body("ACCOUNT_CONNECTED")  # byte for byte as Smile documents it
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    ack = response.json()
    assert ack["outcome"] == "signalled"
    assert ack["workflowId"] == f"onboarding-{EXAMPLE_USER}"

    view = await state(api, admin, EXAMPLE_USER)
    assert view["userId"] == EXAMPLE_USER
    assert view["stage"] == "connected"
    assert view["status"] == "active"
    assert view["accounts"][0]["accountId"] == "a-123abc456def789abc123def456abc78"
    assert view["accounts"][0]["reportedBy"] == "webhook"
    (record,) = view["events"]
    assert record["type"] == "ACCOUNT_CONNECTED"
    assert record["id"] == "et-123abc456def789abc123def456abc78"
    assert record["createdAt"].startswith("2021-04-14T09:30:24")
    assert "receivedAt" in record
    assert "userLoginName" not in json.dumps(view)  # loginName is never stored


async def test_a_journey_reaches_data_ready(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    user = unique_user()
    journey = (
        "USER_CREATED",
        "ACCOUNT_CREATED",
        "ACCOUNT_CONNECTED",
        "IDENTITY_ADDED",
        "EMPLOYMENTS_ADDED",
        "INCOMES_ADDED",
    )
    for at, event_type in enumerate(journey):
        body = webhook_body(event_type, user, created_at=BASE_TIME + timedelta(seconds=at))
        assert (await api.post(URL, content=body, headers=signed(body))).status_code == 202

    async def data_ready() -> None:
        view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
        assert view["stage"] == Stage.DATA_READY.value
        assert view["eventsTotal"] == 6

    await eventually(data_ready)


async def test_duplicates_are_acknowledged_and_counted_once(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    body = webhook_body("ACCOUNT_CREATED", user)
    for _ in range(3):
        assert (await api.post(URL, content=body, headers=signed(body))).status_code == 202

    async def deduped() -> None:
        view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
        assert (view["eventsTotal"], view["duplicatesIgnored"]) == (1, 2)

    await eventually(deduped)


async def test_unknown_event_type_is_accepted_and_recorded(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    body = webhook_body("SOMETHING_SMILE_ADDS_LATER", user, widget="x")
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202
    view = await state(api, admin, user)
    assert view["unknownTypes"] == ["SOMETHING_SMILE_ADDS_LATER"]
    assert view["events"][0]["known"] is False
    assert view["stage"] == "created"


@pytest.mark.parametrize("event_type", ["RECORD_CREATED", "RECORD_COMPLETED"])
async def test_events_without_a_user_match_no_onboarding(
    api: httpx.AsyncClient, event_type: str
) -> None:
    body = example_body(event_type)
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202
    assert response.json()["outcome"] == "no_user"
    assert "matched no onboarding" in response.json()["detail"]


async def test_session_events_reach_the_user_named_in_the_session(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    completed = {
        "id": "et-" + "1" * 32,
        "version": 1,
        "type": "USER_SESSION_COMPLETED",
        "createdAt": "2021-04-14T09:30:24Z",
        "data": {
            "session": {"userId": user, "channel": "WinkSite", "status": "COMPLETED"},
            "payload": {"forms": [{"id": "form-1", "data": {"ssn": "123-45-6789"}}]},
        },
    }
    body = json.dumps(completed).encode()
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "signalled"
    view = await state(api, admin, user)
    assert view["session"]["status"] == "COMPLETED"
    assert view["session"]["channel"] == "WinkSite"
    assert "123-45-6789" not in json.dumps(view)  # the session's payload is never stored


async def test_envelope_tolerance_naive_time_no_data_and_other_versions(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    naive = json.loads(webhook_body("ACCOUNT_CREATED", user))
    naive["createdAt"] = "2021-04-14T09:30:24"  # no time zone: read as UTC
    version_two = json.loads(webhook_body("ACCOUNT_CONNECTED", user))
    version_two["version"] = 2
    version_two["createdAt"] = "2021-04-14T09:30:25+00:00"
    for envelope in (naive, version_two):
        body = json.dumps(envelope).encode()
        response = await api.post(URL, content=body, headers=signed(body))
        assert response.status_code == 202, response.text

    async def applied() -> dict:  # type: ignore[type-arg]
        view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
        assert view["eventsTotal"] == 2
        return view  # type: ignore[no-any-return]

    view = await eventually(applied)
    assert view["stage"] == "connected"  # the version-2 event applied where its fields parse
    assert view["otherVersions"] == {"2": 1}
    versions = {e["type"]: e["version"] for e in view["events"]}
    assert versions == {"ACCOUNT_CREATED": 1, "ACCOUNT_CONNECTED": 2}
    created = next(e for e in view["events"] if e["type"] == "ACCOUNT_CREATED")
    assert created["createdAt"] in ("2021-04-14T09:30:24Z", "2021-04-14T09:30:24+00:00")

    bare = {"id": "et-nodata", "version": 1, "type": "RECORD_CREATED",
            "createdAt": "2021-04-14T09:30:24Z"}  # fmt: skip
    for envelope in (bare, {**bare, "data": None}, {**bare, "data": {}}):
        body = json.dumps(envelope).encode()
        response = await api.post(URL, content=body, headers=signed(body))
        assert response.status_code == 202, response.text
        assert response.json()["outcome"] == "no_user"


async def test_rotation_accepts_either_configured_secret(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    for secret in (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET):
        user = unique_user()
        body = webhook_body("USER_CREATED", user)
        assert (await api.post(URL, content=body, headers=signed(body, secret))).status_code == 202
        assert await workflow_exists(dev_env.client, user)


def _reserialized(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=2).encode()


@pytest.mark.parametrize(
    "headers_for",
    [
        pytest.param(lambda body: {}, id="missing header"),
        pytest.param(lambda body: {"Smile-Signature": ""}, id="empty header"),
        pytest.param(lambda body: signed(body, "a wrong secret"), id="wrong secret"),
        pytest.param(
            lambda body: {"Smile-Signature": sign(_reserialized(body), WEBHOOK_SECRET)},
            id="signature of a re-serialized body",
        ),
        pytest.param(
            lambda body: {"Smile-Signature": sign(body, WEBHOOK_SECRET).upper()}, id="uppercase hex"
        ),
        pytest.param(
            lambda body: {"Smile-Signature": sign(body, WEBHOOK_SECRET)[:-2]}, id="wrong length"
        ),
        pytest.param(lambda body: {"Smile-Signature": "z" * 128}, id="not hex"),
    ],
)
async def test_bad_signatures_are_401_and_nothing_is_signalled(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, headers_for: object
) -> None:
    user = unique_user()
    body = webhook_body("ACCOUNT_CONNECTED", user)
    response = await api.post(URL, content=body, headers=headers_for(body))  # type: ignore[operator]
    assert response.status_code == 401
    problem = response.json()
    assert problem["status"] == 401 and problem["title"] == "Unauthorized"
    assert WEBHOOK_SECRET not in response.text
    assert not await workflow_exists(dev_env.client, user)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda env: b"{not json", "the body is not JSON"),
        (lambda env: b"", "the body is not JSON"),
        (lambda env: b"\xff\xfe\x00garbage", "the body is not JSON"),
        (lambda env: json.dumps([env]).encode(), "the body is not a JSON object"),
        (
            lambda env: json.dumps({k: v for k, v in env.items() if k != "id"}).encode(),
            "id: Field required",
        ),
        (
            lambda env: json.dumps({k: v for k, v in env.items() if k != "type"}).encode(),
            "type: Field required",
        ),
        (
            lambda env: json.dumps({k: v for k, v in env.items() if k != "version"}).encode(),
            "version: Field required",
        ),
        (lambda env: json.dumps({**env, "createdAt": "yesterday"}).encode(), "createdAt"),
        (
            lambda env: json.dumps({**env, "data": "nope"}).encode(),
            "data: Input should be an object",
        ),
        (lambda env: json.dumps({**env, "id": 12}).encode(), "id: Input should be a valid string"),
        (
            lambda env: json.dumps(
                {**env, "data": {**env["data"], "userId": "bad user/../x"}}
            ).encode(),
            "data.userId",
        ),
    ],
)
async def test_signed_but_unusable_bodies_are_kept_as_dead_letters_naming_the_problem(
    api: httpx.AsyncClient,
    admin: dict[str, str],
    dev_env: WorkflowEnvironment,
    mutate: object,
    expected: str,
) -> None:
    """Smile signed it, so it is never thrown away: 2xx (Smile stops retrying what would fail
    again), kept with the reason for an operator, and never signalled."""
    user = unique_user()
    envelope = json.loads(webhook_body("ACCOUNT_CONNECTED", user))
    body = mutate(envelope)  # type: ignore[operator]
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    ack = response.json()
    assert ack["outcome"] == "dead_lettered" and expected in ack["detail"]
    kept = await api.get(f"/dead-letters/{ack['deadLetterId']}", headers=admin)
    assert kept.status_code == 200, kept.text
    assert expected in kept.json()["reason"]
    # As received, less what is never stored (the fixture's loginName).
    assert kept.json()["body"] == without_dropped_fields(body).decode("utf-8", "backslashreplace")
    if body.startswith(b"{") and b'"data": {' in body:
        assert "userLoginName" not in kept.json()["body"]
    assert not await workflow_exists(dev_env.client, user)


async def test_oversize_body_is_413(api_settings: Settings, dev_env: WorkflowEnvironment) -> None:
    settings = api_settings.model_copy(update={"webhook_max_bytes": 2048})
    app = create_app(settings, dev_env.client)
    user = unique_user()
    body = webhook_body("ACCOUNT_CONNECTED", user, padding="x" * 4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post(URL, content=body, headers=signed(body))
    assert response.status_code == 413
    assert not await workflow_exists(dev_env.client, user)


async def test_event_for_an_ended_onboarding_is_acknowledged_and_starts_nothing(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    body = webhook_body("USER_CREATED", user)
    await api.post(URL, content=body, headers=signed(body))
    await state(api, admin, user)
    assert (await api.post(f"/onboardings/{user}/cancel", headers=admin)).status_code == 200

    late = webhook_body("ACCOUNT_CREATED", user)
    response = await api.post(URL, content=late, headers=signed(late))
    assert response.status_code == 200
    assert response.json()["outcome"] == "onboarding_ended"
    view = await state(api, admin, user)
    assert (view["status"], view["eventsTotal"]) == ("cancelled", 1)


async def test_temporal_unreachable_spools_and_other_calls_are_503(
    api_settings: Settings, tmp_path: Path
) -> None:
    """Webhooks are kept in the spool (202, ``spooled``); what needs Temporal's answer (reads,
    operator actions) is 503 with Retry-After."""
    client = await connect("127.0.0.1:1", lazy=True, use_environment=False)
    settings = api_settings.model_copy(update={"rpc_timeout": 2, "data_dir": tmp_path})
    app = create_app(settings, client)
    body = webhook_body("USER_CREATED", unique_user())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post(URL, content=body, headers=signed(body))
        assert response.status_code == 202, response.text
        assert response.json()["outcome"] == "spooled"
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["temporal"] == "unreachable"
        assert ready.json()["spool"]["depth"] == 1
        assert (await c.get("/healthz")).status_code == 200
        admin = {"Authorization": "Bearer admin-token-for-tests"}
        for path in ("/onboardings", "/onboardings/stats", "/onboardings/someone"):
            answer = await c.get(path, headers=admin)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["Retry-After"] == "5"


async def test_ten_thousand_duplicates_have_one_effect(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    body = webhook_body("ACCOUNT_CONNECTED", user)
    headers = signed(body)
    gate = asyncio.Semaphore(50)

    async def deliver() -> int:
        async with gate:
            return (await api.post(URL, content=body, headers=headers)).status_code

    statuses = await asyncio.gather(*(deliver() for _ in range(10_000)))
    assert Counter(statuses) == {202: 10_000}

    async def one_effect() -> None:
        view = (await api.get(f"/onboardings/{user}", headers=admin)).json()
        assert (view["eventsTotal"], view["duplicatesIgnored"]) == (1, 9_999)
        assert view["stage"] == "connected"

    await eventually(one_effect, timeout=180)
