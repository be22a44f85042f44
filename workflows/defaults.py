"""The default timeouts for new onboardings, as one small long-lived workflow.

One execution per deployment (id ``ONBOARDING_DEFAULTS_ID``, ``smile-onboarding-defaults`` by
default), started on demand by the service with the environment's values as its initial state.
It holds the current defaults and their audit (``onboarding/core/defaults.py``), answers the
``state`` query, and changes them through the validated ``change`` update: the validator refuses
a bad change before it is written to history, so a refused change changes nothing.

The current defaults are also published in the workflow's memo (``DEFAULTS_MEMO``), which
Temporal serves from a describe call without any worker: so starting an onboarding (the webhook
path's signal-with-start included) never waits for a worker to answer a query.

It never ends on its own: it continues as new, carrying its state and memo, once a run has taken
``changes_per_run`` changes or Temporal suggests it."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from onboarding.core.defaults import (
        CurrentDefaults,
        DefaultsChange,
        DefaultsInput,
        DefaultsState,
        apply_change,
        check_change,
    )

DEFAULTS_WORKFLOW_TYPE = "OnboardingDefaults"
# The memo key under which the workflow publishes its CurrentDefaults.
DEFAULTS_MEMO = "defaults"


def memo_for(current: CurrentDefaults) -> dict[str, CurrentDefaults]:
    return {DEFAULTS_MEMO: current}


@workflow.defn(name=DEFAULTS_WORKFLOW_TYPE)
class DefaultsWorkflow:
    @workflow.init
    def __init__(self, input: DefaultsInput) -> None:
        self._state = input.state.model_copy(deep=True)
        self._changes_per_run = max(1, input.changes_per_run)
        self._changes_this_run = 0

    @workflow.run
    async def run(self, input: DefaultsInput) -> None:
        await workflow.wait_condition(
            lambda: (
                self._changes_this_run >= self._changes_per_run
                or workflow.info().is_continue_as_new_suggested()
            )
        )
        # Let a change still being handled finish, so its caller gets its answer.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            DefaultsInput(state=self._state, changes_per_run=self._changes_per_run),
            memo=memo_for(self._state.current),
        )

    @workflow.query
    def state(self) -> DefaultsState:
        return self._state

    @workflow.update
    def change(self, change: DefaultsChange) -> CurrentDefaults:
        """Apply one change, audited; answers the new defaults (not the audit: an update's
        result stays in history)."""
        self._state = apply_change(self._state, change, workflow.now())
        self._changes_this_run += 1
        workflow.upsert_memo(memo_for(self._state.current))
        return self._state.current

    @change.validator
    def _validate_change(self, change: DefaultsChange) -> None:
        check_change(change)
