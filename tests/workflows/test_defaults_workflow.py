"""The defaults workflow on the real dev server, through the service layer: started on demand
with the environment's values, validated and audited changes, the stored value winning over the
environment, continue-as-new carrying the state, a terminated one reset to the environment, and
the cache's staleness bound. Each test has its own defaults workflow id."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from onboarding.core.defaults import (
    CurrentDefaults,
    DefaultsChange,
    DefaultsInput,
    initial_state,
)
from onboarding.core.models import Stage, TimeoutsChange
from onboarding.service.onboardings import InvalidChange, Onboardings
from onboarding.service.settings import Settings
from tests.conftest import eventually
from workflows.defaults import DEFAULTS_MEMO, DEFAULTS_WORKFLOW_TYPE, DefaultsWorkflow


def settings_for(api_settings: Settings, defaults_id: str, **update: object) -> Settings:
    return api_settings.model_copy(update={"defaults_id": defaults_id, **update})


def new_id() -> str:
    return f"defaults-test-{uuid.uuid4().hex}"


async def test_the_first_read_starts_it_with_the_environment_values(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    settings = settings_for(api_settings, new_id(), expire_after=timedelta(days=3))
    ops = Onboardings(dev_env.client, settings)

    current = await ops.defaults.current()

    assert current.revision == 0 and current.changed_by is None
    assert current.timeouts == settings.default_options().timeouts
    assert current.timeouts.expire_after == 3 * 86400
    description = await dev_env.client.get_workflow_handle(settings.defaults_id).describe()
    assert description.workflow_type == DEFAULTS_WORKFLOW_TYPE
    state = await ops.defaults.state()
    assert state.current == current and state.audit == []


async def test_a_change_is_audited_and_published_in_the_memo(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    ops = Onboardings(dev_env.client, settings_for(api_settings, new_id()))
    before = await ops.defaults.timeouts()

    state = await ops.defaults.change(TimeoutsChange(stall={"connected": 2 * 86400}), "alice")
    state = await ops.defaults.change(TimeoutsChange(settle_window=60), "bob")

    assert state.current.revision == 2 and state.current.changed_by == "bob"
    assert state.current.timeouts.stall[Stage.CONNECTED] == 2 * 86400
    assert state.current.timeouts.settle_window == 60
    assert state.current.timeouts.stall[Stage.CREATED] == before.stall[Stage.CREATED]
    first, second = state.audit
    assert (first.revision, first.actor, second.revision, second.actor) == (1, "alice", 2, "bob")
    assert first.old == before and first.new == second.old
    assert second.new == state.current.timeouts
    assert first.at <= second.at == state.current.changed_at
    description = await dev_env.client.get_workflow_handle(ops.settings.defaults_id).describe()
    memo = await description.memo_value(DEFAULTS_MEMO, type_hint=CurrentDefaults)
    assert memo == state.current
    # this process sees its own change at once, without waiting for the cache
    assert (await ops.defaults.timeouts()) == state.current.timeouts


@pytest.mark.parametrize(
    ("change", "actor", "message"),
    [
        (TimeoutsChange(stall={"sleeping": 60}), "alice", "unknown stage 'sleeping'"),
        (TimeoutsChange(stall={"data_ready": 60}), "alice", "has no stall timeout"),
        (TimeoutsChange(expire_after=-1), "alice", "expireAfter must be a positive number"),
        (TimeoutsChange(settle_window=0), "alice", "settleWindow must be a positive number"),
        (TimeoutsChange(expire_after=1e12), "alice", "at most ten years"),
        (TimeoutsChange(), "alice", "nothing to change"),
        (TimeoutsChange(expire_after=60), " ", "actor must name who"),
    ],
)
async def test_the_validator_refuses_a_bad_change_and_nothing_changes(
    dev_env: WorkflowEnvironment,
    dev_worker: None,
    api_settings: Settings,
    change: TimeoutsChange,
    actor: str,
    message: str,
) -> None:
    ops = Onboardings(dev_env.client, settings_for(api_settings, new_id()))
    before = await ops.defaults.state()
    # straight to the workflow, past the service's own check: the validator refuses it
    handle = dev_env.client.get_workflow_handle_for(DefaultsWorkflow.run, ops.settings.defaults_id)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            DefaultsWorkflow.change, DefaultsChange(actor=actor, timeouts=change)
        )
    assert message in str(refused.value.cause)
    # and the service refuses it before sending it
    with pytest.raises(InvalidChange, match=message):
        await ops.defaults.change(change, actor)
    assert await ops.defaults.state() == before
    history = await handle.fetch_history()
    assert not any(e.HasField("workflow_execution_update_accepted_event_attributes")
                   for e in history.events)  # fmt: skip


async def test_the_stored_value_wins_over_the_environment(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    defaults_id = new_id()
    first = Onboardings(dev_env.client, settings_for(api_settings, defaults_id))
    await first.defaults.change(TimeoutsChange(expire_after=86400), "alice")
    # another process, another environment: the stored defaults are what it starts with
    other_env = settings_for(api_settings, defaults_id, expire_after=timedelta(days=30))
    second = Onboardings(dev_env.client, other_env)
    assert (await second.defaults.timeouts()).expire_after == 86400
    # until it resets them to its own environment's values, an audited change like any other
    state = await second.defaults.reset("carol")
    assert state.current.timeouts == other_env.default_options().timeouts
    assert state.audit[-1].actor == "carol" and state.audit[-1].old.expire_after == 86400


async def test_a_terminated_defaults_workflow_starts_again_from_the_environment(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    ops = Onboardings(dev_env.client, settings_for(api_settings, new_id()))
    await ops.defaults.change(TimeoutsChange(expire_after=86400), "alice")
    await dev_env.client.get_workflow_handle(ops.settings.defaults_id).terminate("reset")
    ops.defaults.forget()
    current = await ops.defaults.current()
    assert current.revision == 0
    assert current.timeouts == ops.settings.default_options().timeouts


async def test_after_a_restart_the_new_run_is_cached_again(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    """Terminated after a change here (revision 1 cached), the workflow starts again at
    revision 0: once the cache expires, that value must be cached, not read on every start."""
    settings = settings_for(api_settings, new_id(), defaults_ttl=timedelta(seconds=5))
    ops = Onboardings(dev_env.client, settings)
    await ops.defaults.change(TimeoutsChange(expire_after=86400), "alice")
    await dev_env.client.get_workflow_handle(settings.defaults_id).terminate("reset")
    reads = 0
    describe = ops.defaults._describe

    async def counted(rpc_timeout: timedelta) -> CurrentDefaults | None:
        nonlocal reads
        reads += 1
        return await describe(rpc_timeout)

    ops.defaults._describe = counted  # type: ignore[method-assign]

    async def restarted() -> None:
        assert (await ops.defaults.current()).revision == 0

    await eventually(restarted)
    reads = 0
    for _ in range(5):
        assert (await ops.defaults.current()).revision == 0
    assert reads == 0, "the restarted run's defaults were not kept in the cache"


async def test_continue_as_new_carries_the_defaults_and_the_audit(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    ops = Onboardings(dev_env.client, settings_for(api_settings, new_id()))
    initial = initial_state(ops.default_options.timeouts)
    handle = await dev_env.client.start_workflow(
        DefaultsWorkflow.run,
        DefaultsInput(state=initial, changes_per_run=2),
        id=ops.settings.defaults_id,
        task_queue=ops.settings.task_queue,
        memo={DEFAULTS_MEMO: initial.current},
    )
    for hours in range(1, 6):
        await ops.defaults.change(TimeoutsChange(stall={"created": hours * 3600}), f"op{hours}")

    async def continued_twice() -> None:
        runs = [
            run
            async for run in dev_env.client.list_workflows(
                f"WorkflowId = '{ops.settings.defaults_id}'"
            )
        ]
        assert len(runs) >= 3, len(runs)

    await eventually(continued_twice)
    latest = await dev_env.client.get_workflow_handle(ops.settings.defaults_id).describe()
    assert latest.run_id != handle.result_run_id
    state = await ops.defaults.state()
    assert state.current.revision == 5
    assert state.current.timeouts.stall[Stage.CREATED] == 5 * 3600
    assert [e.actor for e in state.audit] == [f"op{n}" for n in range(1, 6)]
    ops.defaults.forget()  # the new run's memo, read with no cache
    assert (await ops.defaults.current()) == state.current


async def test_another_process_sees_a_change_within_the_ttl(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    defaults_id = new_id()
    changer = Onboardings(dev_env.client, settings_for(api_settings, defaults_id))
    reader = Onboardings(
        dev_env.client,
        settings_for(api_settings, defaults_id, defaults_ttl=timedelta(milliseconds=300)),
    )
    assert (await reader.defaults.current()).revision == 0
    await changer.defaults.change(TimeoutsChange(expire_after=7200), "alice")

    async def seen() -> None:
        assert (await reader.defaults.timeouts()).expire_after == 7200

    await eventually(seen, timeout=5)


async def test_a_change_after_a_termination_starts_it_again_and_applies(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    ops = Onboardings(dev_env.client, settings_for(api_settings, new_id()))
    await ops.defaults.change(TimeoutsChange(expire_after=86400), "alice")
    await dev_env.client.get_workflow_handle(ops.settings.defaults_id).terminate("reset")
    # this process still holds the terminated run's value in its cache
    state = await ops.defaults.change(TimeoutsChange(settle_window=60), "bob")
    assert state.current.revision == 1 and [e.actor for e in state.audit] == ["bob"]
    assert state.current.timeouts.expire_after == ops.settings.expire_after.total_seconds()
