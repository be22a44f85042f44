"""Link tokens on the real dev server, whose clock is the wall clock that Smile's token expiry
is written in: a refresh after onTokenExpired, handed out on the next request."""

from __future__ import annotations

from urllib.parse import parse_qs

from temporalio.testing import WorkflowEnvironment

from onboarding.core.models import OnboardingView, Source, StartRequest
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from tests.conftest import Standin, eventually
from tests.smile_samples import event


async def token_calls(standin: Standin, user_id: str) -> list[object]:
    return [
        call["status"]
        for call in await standin.calls()
        if call["path"] == "/v1/tokens" and parse_qs(str(call["query"])).get("userId") == [user_id]
    ]


async def test_token_expired_callback_refreshes_the_token(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings, shared_standin: Standin
) -> None:
    ops = Onboardings(dev_env.client, api_settings)
    issued, first = await ops.start(StartRequest())
    assert first.token.refresh_count == 0
    await ops.ingest(issued.user_id, [event("onTokenExpired", source=Source.WIDGET)])

    async def refreshed() -> OnboardingView:
        view = await ops.get(issued.user_id)
        assert view.token.refresh_count == 1
        assert view.token.expired_reports == 1
        return view

    view = await eventually(refreshed)
    assert view.token.expires_at is not None and view.token.last_error is None
    assert await token_calls(shared_standin, issued.user_id) == [201]

    # The pre-fetched token is what the front end gets next: no second call to Smile.
    fresh = await ops.link_token(issued.user_id)
    assert fresh.link_token != issued.link_token
    assert await token_calls(shared_standin, issued.user_id) == [201]
    again = await ops.link_token(issued.user_id)
    assert again.link_token != fresh.link_token
    assert await token_calls(shared_standin, issued.user_id) == [201, 201]
    assert (await ops.get(issued.user_id)).token.refresh_count == 2
