"""Bursts for one user are committed as fewer signals, and every request is still answered only
once its event is durable."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.identity import workflow_id_for
from onboarding.service.settings import Settings
from tests.api.test_webhooks import signed
from tests.conftest import ADMIN_TOKEN, eventually, unique_user
from tests.smile_samples import BASE_TIME, webhook_body

BURST = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED", "DOCUMENTS_ADDED",
         "CONTRIBUTIONS_ADDED", "LIABILITIES_ADDED", "RATING_ADDED")  # fmt: skip


async def signals_for(env: WorkflowEnvironment, user: str) -> int:
    history = await env.client.get_workflow_handle(workflow_id_for(user)).fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )


@pytest.mark.parametrize("batch", [True, False])
async def test_a_burst_for_one_user(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, batch: bool
) -> None:
    app = create_app(api_settings.model_copy(update={"batch_signals": batch}), dev_env.client)
    user = unique_user()
    bodies = [
        webhook_body(t, user, accountId="a-1", created_at=BASE_TIME + timedelta(seconds=i))
        for i, t in enumerate(BURST)
    ]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(
            *(client.post("/webhooks/smile", content=b, headers=signed(b)) for b in bodies)
        )
        assert [r.status_code for r in responses] == [202] * len(BURST)

        async def all_recorded() -> None:
            view = (await client.get(f"/onboardings/{user}", headers=admin)).json()
            assert view["eventsTotal"] == len(BURST)
            assert view["stage"] == "data_ready"

        await eventually(all_recorded)
    signals = await signals_for(dev_env, user)
    if batch:
        assert signals < len(BURST)  # the first goes alone, the rest ride together
        assert app.state.ingest.deliver.batcher.events_sent == len(BURST)
    else:
        assert signals == len(BURST)
