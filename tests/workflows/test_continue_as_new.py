"""Continue-as-new on the real dev server (the time-skipping test server does not answer queries
across a continue-as-new): state and the dedupe window are carried into each new run."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from onboarding.core.models import OnboardingView, Source
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from tests.conftest import eventually, unique_user
from tests.smile_samples import event


async def test_continue_as_new_keeps_state_and_dedupe(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    settings = api_settings.model_copy(update={"continue_as_new_after": 3})
    ops = Onboardings(dev_env.client, settings)
    user = unique_user()

    async def total_is(expected: int) -> OnboardingView:
        async def check() -> OnboardingView:
            view = await ops.get(user)
            assert view.events_total == expected
            return view

        return await eventually(check)

    events = [event("IDENTITY_ADDED", event_id=f"et-{i}", at=i, count=1) for i in range(7)]
    first_run = None
    for count, e in enumerate(events, start=1):
        await ops.ingest(user, [e])
        await total_is(count)  # one signal per workflow task, so the threshold is crossed
        if first_run is None:
            first_run = (
                await ops.client.get_workflow_handle(f"onboarding-{user}").describe()
            ).run_id
    await ops.ingest(user, [events[0]])  # a duplicate from before the first continue-as-new
    await ops.ingest(user, [event("onClose", source=Source.WIDGET, reason="close", at=9)])
    view = await total_is(8)
    assert view.duplicates_ignored == 1
    assert view.runs >= 3
    assert view.data["identity"].events == 7
    assert view.widget.state == "closed"
    latest = await ops.client.get_workflow_handle(f"onboarding-{user}").describe()
    assert latest.run_id != first_run


async def test_ten_thousand_events_with_the_longest_ids_carry_under_256_kb(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    # The API accepts ids of 256 characters; 10,000 of them once made continue-as-new's input
    # pass Temporal's 2 MB limit, and the onboarding was stuck.
    settings = api_settings.model_copy(update={"continue_as_new_after": 10})
    ops = Onboardings(dev_env.client, settings)
    user = unique_user()
    for batch in range(50):
        events = [
            event("INCOMES_UPDATED", event_id=f"{batch:03d}{i:03d}".ljust(256, "x"), at=i)
            for i in range(200)
        ]
        await ops.ingest(user, events)

    async def all_applied() -> OnboardingView:
        view = await ops.get(user)
        assert view.events_total == 10_000
        return view

    view = await eventually(all_applied, timeout=60.0)
    assert view.runs >= 2
    handle = ops.client.get_workflow_handle(f"onboarding-{user}")
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    carried = sum(len(p.data) for p in started.input.payloads)
    assert started.continued_execution_run_id  # this run was continued from another
    assert 0 < carried < 256 * 1024, carried
