"""One user's onboarding as one durable workflow.

Signals carry events (webhooks, widget callbacks) into the pure state machine; the workflow keeps
the lifecycle around it: the stage's clock, stalls, expiry, the settle window after data is ready,
search attributes for listing, and continue-as-new before the history grows too long."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notices import StallNotice, notify_stalled
    from activities.reconcile import Reconciliation
    from activities.smile_models import LinkToken
    from onboarding import search_attributes
    from onboarding.identity import workflow_id_for
    from onboarding.models import (
        CancelRequest,
        Deadlines,
        EventBatch,
        Lifecycle,
        OnboardingInput,
        OnboardingView,
        Source,
        Stage,
        StartRequest,
        Status,
        Timeouts,
        TimeoutsChange,
        check_timeouts_change,
        stage_with_stall_timeout,
    )
    from onboarding.state_machine import (
        StateMachine,
        derive_stage,
        new_journal,
        presented_accounts,
    )
    from workflows.policies import CREATE_TOKEN, NOTICE, RECONCILE

# Timers fire on millisecond boundaries; a deadline this close counts as reached.
_CLOCK_TOLERANCE = timedelta(milliseconds=1)
# A pre-fetched token is handed out only while it has at least this long to live.
_TOKEN_MIN_LIFE = timedelta(minutes=5)


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
        self._token_refresh_wanted = False
        self._prefetched: LinkToken | None = None  # kept in memory only, never in the state

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
            if self._token_refresh_wanted and workflow.patched("refresh-token-on-expiry"):
                self._token_refresh_wanted = False
                await self._prefetch_token()
                continue
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
        if workflow.patched("reconcile-on-stall"):
            # A missed webhook is the usual cause: ask Smile before telling anyone.
            await self._reconcile()
            if life.status is not Status.STALLED:
                return
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
            start_to_close_timeout=NOTICE.start_to_close,
            retry_policy=NOTICE.retry,
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
            if self._machine.apply(event):
                changed = True
                if event.source is Source.WIDGET and event.type == "onTokenExpired":
                    self._token_refresh_wanted = True
        if changed:
            self._refresh_stage()
            self._wake = True

    @workflow.query
    def state(self) -> OnboardingView:
        return self._view()

    @workflow.update
    def set_timeouts(self, change: TimeoutsChange) -> Timeouts:
        self._apply_timeouts(change)
        return self._options.timeouts

    def _apply_timeouts(self, change: TimeoutsChange) -> None:
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

    @set_timeouts.validator
    def _validate_timeouts(self, change: TimeoutsChange) -> None:
        self._reject_if_ended()
        if not change.stall and change.expire_after is None and change.settle_window is None:
            raise ValueError("nothing to change: give stall timeouts, expireAfter or settleWindow")
        check_timeouts_change(change)

    @workflow.update
    def begin(self, start: StartRequest) -> OnboardingView:
        """Called once by ``POST /onboardings`` (update-with-start): the Smile user exists and
        its first link token was handed out; per-onboarding options apply from now."""
        self._ensure_started()
        life = self._life
        if start.external_metadata is not None:
            life.external_metadata = start.external_metadata
        if start.required_data is not None:
            self._options.required_data = list(start.required_data)
        if start.timeouts is not None:
            self._apply_timeouts(start.timeouts)
        if start.token_expires_at is not None:
            token = self._machine.journal.facts.token
            token.issued_at = workflow.now()
            token.expires_at = start.token_expires_at
        self._refresh_stage()
        self._wake = True
        return self._view()

    @begin.validator
    def _validate_begin(self, start: StartRequest) -> None:
        self._reject_if_ended()
        if start.timeouts is not None:
            check_timeouts_change(start.timeouts)
        for dtype in start.required_data or []:
            if not dtype.strip():
                raise ValueError("requiredData entries must be non-empty data type names")

    @workflow.update
    async def refresh_link_token(self) -> LinkToken:
        """A fresh single-use link token: the one pre-fetched after ``onTokenExpired`` if it is
        still good, otherwise a new one from Smile."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and prefetched.expires_at - workflow.now() > _TOKEN_MIN_LIFE:
            return prefetched
        return await self._issue_token()

    @refresh_link_token.validator
    def _validate_refresh(self) -> None:
        self._reject_if_ended()

    @workflow.update
    async def reconcile(self) -> OnboardingView:
        """Check Smile's own records now and merge what they say."""
        await self._reconcile()
        return self._view()

    @reconcile.validator
    def _validate_reconcile(self) -> None:
        self._reject_if_ended()

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

    # --- calls to Smile ---------------------------------------------------------------------

    async def _issue_token(self) -> LinkToken:
        token_state = self._machine.journal.facts.token
        try:
            token: LinkToken = await workflow.execute_activity(
                "smile_create_token",
                self._user_id,
                result_type=LinkToken,
                start_to_close_timeout=CREATE_TOKEN.start_to_close,
                schedule_to_close_timeout=CREATE_TOKEN.schedule_to_close,
                retry_policy=CREATE_TOKEN.retry,
            )
        except ActivityError as err:
            token_state.refresh_failures += 1
            token_state.last_error = _cause(err)
            raise ApplicationError(
                f"Smile did not issue a link token: {token_state.last_error}",
                type="SmileCallFailed",
                non_retryable=True,
            ) from None
        token_state.issued_at = workflow.now()
        token_state.expires_at = token.expires_at
        token_state.refresh_count += 1
        token_state.last_error = None
        return token

    async def _prefetch_token(self) -> None:
        """After ``onTokenExpired``: get the next token ready for the widget."""
        try:
            self._prefetched = await self._issue_token()
        except ApplicationError:
            self._prefetched = None  # recorded in the token state; the next request retries

    async def _reconcile(self) -> None:
        record = self._life.reconcile
        try:
            result = await workflow.execute_activity(
                "smile_reconcile",
                args=[self._user_id, list(self._options.required_data)],
                result_type=Reconciliation,
                start_to_close_timeout=RECONCILE.start_to_close,
                retry_policy=RECONCILE.retry,
            )
        except ActivityError as err:
            record.last_error = _cause(err)
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "SmileNotFound":
                self._end(Status.FAILED, "Smile has no record of this user")
            return
        added = sum(1 for event in result.events if self._machine.apply(event))
        record.runs += 1
        record.last_at = workflow.now()
        record.last_error = None
        record.accounts_seen = result.accounts
        record.archives_seen = result.archives
        record.tasks_seen = result.tasks
        record.data_seen = dict(result.data)
        record.records_skipped = result.skipped
        record.facts_added += added
        if added and not self._life.status.is_terminal:
            self._refresh_stage()
            self._wake = True

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
            user_created_at=facts.user_created_at,
            stage=life.stage,
            status=life.status,
            status_reason=life.status_reason,
            started_at=life.started_at,
            stage_entered_at=life.stage_entered_at,
            stalled_at=life.stalled_at if life.status is Status.STALLED else None,
            data_ready_at=life.data_ready_at,
            ended_at=life.ended_at,
            required_data=self._options.required_data,
            accounts=presented_accounts(facts),
            archives=sorted(facts.archives.values(), key=lambda a: a.archive_id),
            data=facts.data,
            tasks=[facts.tasks[k] for k in sorted(facts.tasks)],
            token=facts.token,
            widget=facts.widget,
            invite=facts.invite,
            session=facts.session,
            last_event_at=facts.last_event_at,
            timeouts=self._options.timeouts,
            deadlines=self._deadlines(),
            stalls=life.stalls,
            external_metadata=life.external_metadata,
            reconcile=life.reconcile,
            events=journal.history,
            events_total=journal.events_total,
            duplicates_ignored=journal.duplicates_ignored,
            unknown_types=facts.unknown_types,
            other_versions=facts.other_versions,
            runs=life.runs,
        )


def _cause(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)
