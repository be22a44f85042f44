"""One user's onboarding as one durable workflow.

Signals carry events (webhooks, widget callbacks) into the pure state machine; the workflow keeps
the lifecycle around it: the stage's clock, stalls, expiry, the settle window after data is ready,
search attributes for listing, and continue-as-new before the history grows too long."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.notices import StallNotice, notify_stalled
    from onboarding import search_attributes
    from onboarding.identity import workflow_id_for
    from onboarding.models import (
        CancelRequest,
        Deadlines,
        EventBatch,
        Lifecycle,
        OnboardingInput,
        OnboardingView,
        Stage,
        Status,
        Timeouts,
        TimeoutsChange,
        stage_with_stall_timeout,
    )
    from onboarding.state_machine import StateMachine, derive_stage, new_journal

# Timers fire on millisecond boundaries; a deadline this close counts as reached.
_CLOCK_TOLERANCE = timedelta(milliseconds=1)
_NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow:
    @workflow.init
    def __init__(self, input: OnboardingInput) -> None:
        self._user_id = input.user_id
        self._options = input.options
        journal = input.journal or new_journal(input.user_id)
        self._machine = StateMachine(
            journal, input.options.dedupe_window, input.options.history_limit
        )
        self._life = input.lifecycle.model_copy(deep=True) if input.lifecycle else Lifecycle()
        if input.lifecycle is not None:
            self._life.runs += 1
        self._signals_this_run = 0
        self._wake = False
        self._published: tuple[Stage, Status] | None = None

    # --- run loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: OnboardingInput) -> OnboardingView:
        self._ensure_started()
        self._publish()
        while not self._life.status.is_terminal:
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    OnboardingInput(
                        user_id=self._user_id,
                        options=self._options,
                        journal=self._machine.journal,
                        lifecycle=self._life,
                    )
                )
            self._wake = False
            remaining = self._time_to_next_deadline()
            if remaining is None or remaining > _CLOCK_TOLERANCE:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._wake or self._should_continue_as_new(), timeout=remaining
                    )
            await self._on_clock()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    def _should_continue_as_new(self) -> bool:
        if self._life.status.is_terminal:
            return False
        return (
            self._signals_this_run >= self._options.continue_as_new_after
            or workflow.info().is_continue_as_new_suggested()
        )

    def _time_to_next_deadline(self) -> timedelta | None:
        due = [d for d in self._pending_deadlines() if d is not None]
        if not due:
            return None
        return max(min(due) - workflow.now(), timedelta(0))

    def _pending_deadlines(self) -> list[datetime | None]:
        deadlines = self._deadlines()
        stall = deadlines.stall if self._life.status is Status.ACTIVE else None
        return [stall, deadlines.expire, deadlines.settle]

    async def _on_clock(self) -> None:
        now = workflow.now() + _CLOCK_TOLERANCE
        deadlines = self._deadlines()
        if deadlines.settle is not None and now >= deadlines.settle:
            self._end(Status.COMPLETED, "data ready and the settle window has passed")
        elif deadlines.expire is not None and now >= deadlines.expire:
            self._end(Status.EXPIRED, f"no progress past the {self._life.stage.value} stage")
        elif (
            self._life.status is Status.ACTIVE
            and deadlines.stall is not None
            and now >= deadlines.stall
        ):
            await self._stall(deadlines.stall)

    async def _stall(self, deadline: datetime) -> None:
        life = self._life
        life.status = Status.STALLED
        life.status_reason = f"in stage {life.stage.value} past its stall timeout"
        life.stalled_at = workflow.now()
        life.stalls += 1
        self._publish()
        workflow.logger.info("onboarding %s stalled in %s", self._user_id, life.stage.value)
        assert life.stage_entered_at is not None
        await workflow.execute_activity(
            notify_stalled,
            StallNotice(
                user_id=self._user_id,
                stage=life.stage,
                stage_entered_at=life.stage_entered_at,
                deadline=deadline,
                stalls=life.stalls,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_NOTICE_RETRY,
        )

    # --- handlers ----------------------------------------------------------------------------

    @workflow.signal
    def ingest(self, batch: EventBatch) -> None:
        """Events for this user (usually one). Duplicates by id change nothing."""
        self._ensure_started()
        self._signals_this_run += 1
        if self._life.status.is_terminal:
            workflow.logger.info(
                "onboarding %s is %s; ignoring events", self._user_id, self._life.status.value
            )
            return
        changed = False
        for event in batch.events:
            changed = self._machine.apply(event) or changed
        if changed:
            self._refresh_stage()
            self._wake = True

    @workflow.query
    def state(self) -> OnboardingView:
        return self._view()

    @workflow.update
    def set_timeouts(self, change: TimeoutsChange) -> Timeouts:
        timeouts = self._options.timeouts
        for name, seconds in change.stall.items():
            timeouts.stall[stage_with_stall_timeout(name)] = seconds
        if change.expire_after is not None:
            timeouts.expire_after = change.expire_after
        if change.settle_window is not None:
            timeouts.settle_window = change.settle_window
        life = self._life
        stall = self._deadlines().stall
        if life.status is Status.STALLED and stall is not None and workflow.now() < stall:
            life.status = Status.ACTIVE
            life.status_reason = "stall timeout extended"
            self._publish()
        self._wake = True
        return timeouts

    @set_timeouts.validator
    def _validate_timeouts(self, change: TimeoutsChange) -> None:
        self._reject_if_ended()
        if not change.stall and change.expire_after is None and change.settle_window is None:
            raise ValueError("nothing to change: give stall timeouts, expireAfter or settleWindow")
        for name, seconds in change.stall.items():
            stage_with_stall_timeout(name)
            if seconds <= 0:
                raise ValueError(f"stall timeout for {name} must be positive, got {seconds}")
        for label, value in (
            ("expireAfter", change.expire_after),
            ("settleWindow", change.settle_window),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be positive, got {value}")

    @workflow.update
    def cancel(self, request: CancelRequest) -> OnboardingView:
        self._end(Status.CANCELLED, request.reason)
        return self._view()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._reject_if_ended()

    def _reject_if_ended(self) -> None:
        if self._life.status.is_terminal:
            raise ValueError(f"onboarding already ended as {self._life.status.value}")

    # --- lifecycle ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._life.started_at is None:
            now = workflow.now()
            self._life.started_at = now
            self._life.stage_entered_at = now
            self._refresh_stage()

    def _refresh_stage(self) -> None:
        life = self._life
        stage = derive_stage(self._machine.journal.facts, self._options.required_data)
        if stage is not life.stage:
            now = workflow.now()
            life.stage = stage
            life.stage_entered_at = now
            if stage is Stage.DATA_READY and life.data_ready_at is None:
                life.data_ready_at = now
            if life.status is Status.STALLED:
                life.status = Status.ACTIVE
                life.status_reason = f"progress to {stage.value}"
        self._publish()

    def _end(self, status: Status, reason: str) -> None:
        self._life.status = status
        self._life.status_reason = reason
        self._life.ended_at = workflow.now()
        self._wake = True
        self._publish()

    def _deadlines(self) -> Deadlines:
        life, timeouts = self._life, self._options.timeouts
        if life.status.is_terminal or life.stage_entered_at is None:
            return Deadlines()
        if life.stage is Stage.DATA_READY:
            assert life.data_ready_at is not None
            return Deadlines(settle=life.data_ready_at + timedelta(seconds=timeouts.settle_window))
        stall_seconds = timeouts.stall.get(life.stage)
        return Deadlines(
            stall=(
                life.stage_entered_at + timedelta(seconds=stall_seconds)
                if stall_seconds is not None
                else None
            ),
            expire=life.stage_entered_at + timedelta(seconds=timeouts.expire_after),
        )

    def _publish(self) -> None:
        """Upsert the search attributes, only when they changed."""
        current = (self._life.stage, self._life.status)
        if current == self._published:
            return
        self._published = current
        workflow.upsert_search_attributes(
            [
                search_attributes.STAGE.value_set(current[0].value),
                search_attributes.STATUS.value_set(current[1].value),
            ]
        )

    def _view(self) -> OnboardingView:
        journal, life = self._machine.journal, self._life
        facts = journal.facts
        return OnboardingView(
            user_id=self._user_id,
            workflow_id=workflow_id_for(self._user_id),
            stage=life.stage,
            status=life.status,
            status_reason=life.status_reason,
            started_at=life.started_at,
            stage_entered_at=life.stage_entered_at,
            stalled_at=life.stalled_at if life.status is Status.STALLED else None,
            data_ready_at=life.data_ready_at,
            ended_at=life.ended_at,
            required_data=self._options.required_data,
            accounts=sorted(facts.accounts.values(), key=lambda a: a.account_id),
            archives=sorted(facts.archives.values(), key=lambda a: a.archive_id),
            data=facts.data,
            tasks=[facts.tasks[k] for k in sorted(facts.tasks)],
            token=facts.token,
            widget=facts.widget,
            invite=facts.invite,
            last_event_at=facts.last_event_at,
            timeouts=self._options.timeouts,
            deadlines=self._deadlines(),
            stalls=life.stalls,
            events=journal.history,
            events_total=journal.events_total,
            duplicates_ignored=journal.duplicates_ignored,
            unknown_types=facts.unknown_types,
            runs=life.runs,
        )
