"""``/onboardings/{id}/notices`` and ``onboarding notices`` through the real app and CLI, against
a real dev server, a worker that sends notices and a real receiver that verifies each one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from activities.notify import NoticeSender, NotifyConfig
from api.app import create_app
from onboarding.core.models import NoticeType
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings, new_notify_secret
from onboarding.service.worker import build_worker
from tests.conftest import ENCRYPTION_KEY, WEBHOOK_SECRET, Standin, eventually, unique_user
from tests.notice_receiver import NoticeReceiver, notice_receiver
from tests.smile_samples import webhook_body

SECRET = new_notify_secret()


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[NoticeReceiver]:
    async with notice_receiver(SECRET) as receiving:
        yield receiving


@pytest.fixture(scope="module")
def notify_settings(api_settings: Settings, receiver: NoticeReceiver) -> Settings:
    return api_settings.model_copy(
        update={
            "task_queue": f"notices-{uuid.uuid4().hex[:8]}",
            "notify_urls": [SecretStr(receiver.url)],
            "notify_secrets": [SecretStr(SECRET)],
        }
    )


@pytest.fixture(scope="module")
async def notices_api(
    dev_env: WorkflowEnvironment,
    notify_settings: Settings,
    shared_standin: Standin,
    receiver: NoticeReceiver,
) -> AsyncIterator[httpx.AsyncClient]:
    smile = shared_standin.client()
    sender = NoticeSender(NotifyConfig.from_settings(notify_settings))
    async with build_worker(dev_env.client, notify_settings.task_queue, smile, sender):
        app = create_app(notify_settings, dev_env.client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    await sender.aclose()
    await smile.aclose()


async def webhook(api: httpx.AsyncClient, event_type: str, user: str, **data: Any) -> None:
    body = webhook_body(event_type, user, **data)
    headers = {"Smile-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"}
    response = await api.post("/webhooks/smile", content=body, headers=headers)
    assert response.status_code == 202, response.text


async def listing(api: httpx.AsyncClient, admin: dict[str, str], user: str) -> dict[str, Any]:
    response = await api.get(f"/onboardings/{user}/notices", headers=admin)
    assert response.status_code == 200, response.text
    listed: dict[str, Any] = response.json()
    return listed


async def test_deliveries_are_listed_with_their_answers(
    notices_api: httpx.AsyncClient, admin: dict[str, str], receiver: NoticeReceiver
) -> None:
    user = unique_user()
    await webhook(notices_api, "ACCOUNT_CONNECTED", user, accountId="a-1")

    async def delivered() -> dict[str, Any]:
        listed = await listing(notices_api, admin, user)
        assert [(n["type"], n["state"]) for n in listed["notices"]] == [
            ("onboarding.started", "delivered"),
            ("onboarding.stage_changed", "delivered"),
        ]
        return listed

    listed = await eventually(delivered)
    assert listed["enabled"] is True
    assert listed["counts"] == {"issued": 2, "pending": 0, "delivered": 2, "failed": 0}
    first = listed["notices"][0]
    assert (first["sequence"], first["attempts"], first["lastStatus"]) == (1, 1, 200)
    assert [n["id"] for n in listed["notices"]] == [r.webhook_id for r in receiver.delivered(user)]
    assert "body" not in first  # an operator's list, not the notices themselves


async def test_a_refused_notice_is_failed_and_redelivered_with_its_id(
    notices_api: httpx.AsyncClient, admin: dict[str, str], receiver: NoticeReceiver
) -> None:
    user = unique_user()
    receiver.answer(410, user=user, type=NoticeType.STAGE_CHANGED)
    await webhook(notices_api, "ACCOUNT_CONNECTED", user, accountId="a-1")

    async def refused() -> dict[str, Any]:
        (_, second) = (await listing(notices_api, admin, user))["notices"]
        assert (second["state"], second["lastStatus"]) == ("failed", 410)
        return dict(second)

    second = await eventually(refused)
    assert second["lastError"] == "HTTP 410 Gone"
    assert len(receiver.requests(user)) == 2  # a 410 is not retried

    url = f"/onboardings/{user}/notices/redeliver"
    wrong = await notices_api.post(url, json={"sequence": 1}, headers=admin)
    assert wrong.status_code == 422, wrong.text
    assert "notice 1 is delivered; only failed notices are redelivered" in wrong.json()["detail"]
    unknown = await notices_api.post(url, json={"sequence": 9}, headers=admin)
    assert unknown.status_code == 422

    receiver.fix(user)
    again = await notices_api.post(url, json={}, headers=admin)
    assert again.status_code == 200, again.text
    assert again.json() == {"userId": user, "sequences": [2]}

    async def redelivered() -> None:
        (_, notice) = (await listing(notices_api, admin, user))["notices"]
        assert (notice["state"], notice["attempts"], notice["lastStatus"]) == (
            "delivered",
            2,
            200,
        )

    await eventually(redelivered)
    ids = [r.webhook_id for r in receiver.requests(user)]
    assert ids[1] == ids[2] == second["id"]  # the same webhook-id: receivers dedupe


async def test_the_notices_of_an_onboarding_started_without_them(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    await webhook(api, "ACCOUNT_CONNECTED", user, accountId="a-1")
    listed = await eventually(lambda: listing(api, admin, user))
    assert (listed["enabled"], listed["notices"]) == (False, [])
    response = await api.post(f"/onboardings/{user}/notices/redeliver", json={}, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"] == "notices are off for this onboarding"


async def test_notices_need_the_admin_token_and_an_onboarding(
    notices_api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    assert (await notices_api.get(f"/onboardings/{user}/notices")).status_code == 401
    missing = await notices_api.get(f"/onboardings/{user}/notices", headers=admin)
    assert missing.status_code == 404


async def onboarding_cli(dev_env: WorkflowEnvironment, *args: str) -> tuple[int, str]:
    address = dev_env.client.service_client.config.target_host
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONBOARDING_", "TEMPORAL_"))}
    env["ONBOARDING_ENCRYPTION_KEYS"] = ENCRYPTION_KEY  # dev_env's payloads are encrypted
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onboarding.cli.main", *args, "--temporal-address", address,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_the_notices_command_lists_and_redelivers(
    notices_api: httpx.AsyncClient,
    admin: dict[str, str],
    receiver: NoticeReceiver,
    dev_env: WorkflowEnvironment,
) -> None:
    user = unique_user()
    receiver.answer(400, user=user, type=NoticeType.STARTED)
    await webhook(notices_api, "ACCOUNT_CREATED", user, accountId="a-1")

    async def settled() -> None:
        states = [n["state"] for n in (await listing(notices_api, admin, user))["notices"]]
        assert states == ["failed", "delivered"]

    await eventually(settled)
    code, text = await onboarding_cli(dev_env, "notices", user)
    assert code == 0, text
    lines = text.splitlines()
    assert lines[1].split()[:5] == ["1", "onboarding.started", "failed", "1", "400"]
    assert lines[2].strip() == "HTTP 400 Bad Request"
    assert lines[3].split()[:5] == ["2", "onboarding.stage_changed", "delivered", "1", "200"]
    assert lines[-1] == "2 issued: 1 delivered, 0 pending, 1 failed"

    code, text = await onboarding_cli(dev_env, "notices", user, "--redeliver", "2")
    assert code == 1 and "notice 2 is delivered" in text

    receiver.fix(user)
    code, text = await onboarding_cli(dev_env, "notices", user, "--redeliver-failed", "--json")
    assert code == 0, text
    assert json.loads(text) == {"userId": user, "sequences": [1]}
    await eventually(lambda: _all_delivered(notices_api, admin, user))


async def _all_delivered(api: httpx.AsyncClient, admin: dict[str, str], user: str) -> None:
    states = [n["state"] for n in (await listing(api, admin, user))["notices"]]
    assert states == ["delivered", "delivered"]
