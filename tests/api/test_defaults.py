"""``GET``/``PUT /defaults`` through the real FastAPI app against the real dev server and worker,
and the issue's test: a changed default applies to onboardings started after it (by
``POST /onboardings`` and by a first webhook) and not to those started before."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import OnboardingView
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, eventually, unique_user
from tests.smile_samples import webhook_body
from workflows.onboarding import OnboardingWorkflow

HOUR = 3600.0
DAY = 86400.0


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    """The shared test settings with a second admin token and defaults of this test's own."""
    from pydantic import SecretStr

    return api_settings.model_copy(
        update={
            "defaults_id": f"defaults-test-{uuid.uuid4().hex}",
            "admin_tokens": [SecretStr("another-admin-token"), SecretStr(ADMIN_TOKEN)],
        }
    )


@pytest.fixture
async def app_client(
    dev_env: WorkflowEnvironment, dev_worker: None, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, dev_env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def start(api: httpx.AsyncClient, admin: dict[str, str]) -> str:
    response = await api.post("/onboardings", headers=admin, json={})
    assert response.status_code == 201, response.text
    return str(response.json()["userId"])


async def start_by_webhook(api: httpx.AsyncClient, user: str) -> None:
    body = webhook_body("ACCOUNT_CREATED", user)
    headers = {"Smile-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"}
    response = await api.post("/webhooks/smile", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "signalled"


async def workflow_timeouts(dev_env: WorkflowEnvironment, user: str) -> dict[str, Any]:
    """The onboarding's own timeouts, from its workflow state (the ``state`` query)."""

    async def check() -> OnboardingView:
        handle = dev_env.client.get_workflow_handle_for(
            OnboardingWorkflow.run, workflow_id_for(user)
        )
        return await handle.query(OnboardingWorkflow.state)

    view = await eventually(check)
    return view.timeouts.model_dump(mode="json", by_alias=True)


async def test_a_changed_default_applies_to_onboardings_started_after_it_and_not_before(
    app_client: httpx.AsyncClient,
    admin: dict[str, str],
    dev_env: WorkflowEnvironment,
    settings: Settings,
) -> None:
    before = await start(app_client, admin)
    before_by_webhook = unique_user()
    await start_by_webhook(app_client, before_by_webhook)
    old = (await app_client.get("/defaults", headers=admin)).json()["current"]["timeouts"]
    assert old["stall"]["connected"] == 6 * HOUR and old["expireAfter"] == 7 * DAY

    changed = await app_client.put(
        "/defaults", headers=admin, json={"stall": {"connected": "2d"}, "expireAfter": "10d"}
    )
    assert changed.status_code == 200, changed.text

    after = await start(app_client, admin)
    after_by_webhook = unique_user()
    await start_by_webhook(app_client, after_by_webhook)
    for user in (before, before_by_webhook):
        timeouts = await workflow_timeouts(dev_env, user)
        assert timeouts["stall"]["connected"] == 6 * HOUR, user
        assert timeouts["expireAfter"] == 7 * DAY, user
    for user in (after, after_by_webhook):
        timeouts = await workflow_timeouts(dev_env, user)
        assert timeouts["stall"]["connected"] == 2 * DAY, user
        assert timeouts["expireAfter"] == 10 * DAY, user
        assert timeouts["stall"]["created"] == old["stall"]["created"]  # not changed: kept
    # what the operator reads back says the same
    view = (await app_client.get(f"/onboardings/{after}", headers=admin)).json()
    assert view["timeouts"]["stall"]["connected"] == 2 * DAY
    view = (await app_client.get(f"/onboardings/{before}", headers=admin)).json()
    assert view["timeouts"]["stall"]["connected"] == 6 * HOUR


async def test_get_and_put_answer_the_defaults_and_their_audit(
    app_client: httpx.AsyncClient, admin: dict[str, str], settings: Settings
) -> None:
    fresh = await app_client.get("/defaults", headers=admin)
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert body["current"]["revision"] == 0 and body["audit"] == []
    assert body["current"]["timeouts"] == settings.default_options().timeouts.model_dump(
        mode="json", by_alias=True
    )

    first = await app_client.put(
        "/defaults", headers={**admin, "X-Onboarding-Actor": "alice"}, json={"settleWindow": "5m"}
    )
    assert first.status_code == 200, first.text
    second = await app_client.put("/defaults", headers=admin, json={"stall": {"created": 7200}})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["current"]["revision"] == 2
    assert body["current"]["changedBy"] == "admin token #2"
    assert body["current"]["timeouts"]["settleWindow"] == 300
    assert body["current"]["timeouts"]["stall"]["created"] == 7200
    one, two = body["audit"]
    # who: the credential by its position, never its value; the operator's own name beside it
    assert one["actor"] == "alice (admin token #2)" and two["actor"] == "admin token #2"
    assert ADMIN_TOKEN not in second.text
    assert one["old"]["settleWindow"] == 600 and one["new"]["settleWindow"] == 300
    assert two["old"]["stall"]["created"] == 24 * HOUR and two["new"]["stall"]["created"] == 7200
    assert one["at"] <= two["at"]
    assert (await app_client.get("/defaults", headers=admin)).json() == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stall": {"nowhere": "1h"}}, "unknown stage 'nowhere'"),
        ({"stall": {"data_ready": "1h"}}, "has no stall timeout"),
        ({"stall": {"created": "0s"}}, "must be a positive number"),
        ({"expireAfter": "later"}, "invalid duration"),
        ({"settleWindow": "4000d"}, "too large"),
        ({}, "nothing to change"),
    ],
)
async def test_a_bad_change_is_422_and_changes_nothing(
    app_client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], message: str
) -> None:
    before = (await app_client.get("/defaults", headers=admin)).json()
    response = await app_client.put("/defaults", headers=admin, json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert (await app_client.get("/defaults", headers=admin)).json() == before


async def test_an_unusable_actor_header_is_refused(
    app_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await app_client.put(
        "/defaults", headers={**admin, "X-Onboarding-Actor": "x" * 500}, json={"settleWindow": 60}
    )
    assert response.status_code == 422, response.text
    assert (await app_client.get("/defaults", headers=admin)).json()["audit"] == []


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_the_defaults_need_the_admin_token(
    app_client: httpx.AsyncClient, method: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = await app_client.request(
            method, "/defaults", headers=headers, json={"settleWindow": "1m"}
        )
        assert response.status_code == 401, response.text


async def defaults_cli(
    dev_env: WorkflowEnvironment, settings: Settings, tmp_path: Path, *args: str
) -> tuple[int, str]:
    """``onboarding defaults …`` as a separate process, against the test's defaults workflow."""
    address = dev_env.client.service_client.config.target_host
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONBOARDING_", "TEMPORAL_"))}
    env |= {
        "ONBOARDING_DATA_DIR": str(tmp_path),  # no `onboarding dev` to find there
        "ONBOARDING_TASK_QUEUE": settings.task_queue,
        "ONBOARDING_DEFAULTS_ID": settings.defaults_id,
        "ONBOARDING_EXPIRE_AFTER": "5d",  # this shell's environment: used by --reset only
    }
    keys = [key.get_secret_value() for key in getattr(settings, "encryption_keys", [])]
    if keys:  # the payloads the tests' servers hold are encrypted
        env["ONBOARDING_ENCRYPTION_KEYS"] = json.dumps(keys)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onboarding.cli.main", "defaults", *args,
        "--temporal-address", address,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_the_defaults_command_shows_changes_and_resets(
    app_client: httpx.AsyncClient,
    admin: dict[str, str],
    dev_env: WorkflowEnvironment,
    settings: Settings,
    tmp_path: Path,
) -> None:
    assert (await app_client.get("/defaults", headers=admin)).status_code == 200  # created here
    code, text = await defaults_cli(dev_env, settings, tmp_path)
    assert code == 0, text
    assert "revision 0" in text and "expireAfter           7d" in text

    code, text = await defaults_cli(
        dev_env, settings, tmp_path, "--set", "connected=2d,expire_after=10d", "--actor", "dana"
    )
    assert code == 0, text
    assert "stall connected       2d" in text and "expireAfter           10d" in text
    assert "dana: connected 6h→2d, expireAfter 7d→10d" in text
    body = (await app_client.get("/defaults", headers=admin)).json()
    assert body["current"]["timeouts"]["stall"]["connected"] == 2 * DAY
    assert body["audit"][-1]["actor"] == "dana"

    code, text = await defaults_cli(dev_env, settings, tmp_path, "--set", "nowhere=1h")
    assert code == 1 and "unknown stage 'nowhere'" in text

    code, text = await defaults_cli(dev_env, settings, tmp_path, "--reset", "--json")
    assert code == 0, text
    state = json.loads(text)
    assert state["current"]["revision"] == 2
    assert state["current"]["timeouts"]["expireAfter"] == 5 * DAY  # the shell's environment
    assert state["current"]["timeouts"]["stall"]["connected"] == 6 * HOUR
    assert state["audit"][-1]["actor"].endswith("(cli)")
