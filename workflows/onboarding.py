"""One user's onboarding as one durable workflow, thin by design.

Signals carry events (webhooks, widget callbacks) into the pure state machine; what to do over
time is decided by the pure lifecycle (``onboarding/core/lifecycle.py``). This module only feeds
both, runs the lifecycle's commands as concurrent tasks (so a slow Smile never holds up the
clock), keeps one timer armed at the next deadline (re-armed only when that deadline moves), and
continues as new with the state it carries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.notices import StallNotice, notify_stalled
    from activities.notify import NOTICE_ENDPOINT_UNAVAILABLE, NoticeSender, OutgoingNotice
    from activities.smile import SmileActivities
    from activities.smile_errors import SmileNotFound
    from activities.smile_models import LinkToken
    from onboarding.core import lifecycle, notices
    from onboarding.core.error_types import ONBOARDING_ENDED, SMILE_CALL_FAILED
    from onboarding.core.identity import workflow_id_for
    from onboarding.core.lifecycle import (
        CLOCK_TOLERANCE,
        Announce,
        CancelRequested,
        ClockTick,
        Command,
        FetchToken,
        Input,
        NoticeFinished,
        NotifyStalled,
        Publish,
        Reconcile,
        ReconcileFinished,
        Resumed,
        StageObserved,
        TimeoutsChanged,
        TokenExpiryReported,
        TokenFetchFinished,
    )
    from onboarding.core.models import (
        CancelRequest,
        Change,
        EventBatch,
        Lifecycle,
        NoticeLog,
        NoticeRecord,
        OnboardingInput,
        OnboardingView,
        RedeliverRequest,
        Source,
        Stage,
        StartRequest,
        Status,
        Timeouts,
        TimeoutsChange,
        UpdateOutcome,
        check_timeouts_change,
    )
    from onboarding.core.state_machine import (
        StateMachine,
        derive_stage,
        new_journal,
        presented_accounts,
    )
    from workflows import search_attributes
    from workflows.metrics import OnboardingMetrics
    from workflows.policies import (
        CREATE_TOKEN,
        DELIVER_NOTICE,
        NOTICE,
        RECONCILE,
        RECONCILE_NOW,
        longest_wait,
    )

# The events signal's name: signal-with-start takes a name, not a method, so both sides use this.
INGEST_SIGNAL = "ingest"
# Sending notices is a change to running workflows: histories from before it replay without.
NOTICES_PATCH = "notices"
# Publishing when the stage was entered (a search attribute) changes running workflows' upserts.
STAGE_ENTERED_PATCH = "stage-entered-at"
# How far the attribute a starter set may be from the workflow's own time and still stand.
_ENTERED_SLACK = timedelta(minutes=1)
# How long a notice is retried in all, from when it was issued (or queued again).
NOTICE_WINDOW = longest_wait(DELIVER_NOTICE)
# A notice whose window has passed while it waited its turn still gets one try.
_LAST_CHANCE = timedelta(minutes=3)
# A pre-fetched token is handed out only while it has at least this long to live.
_TOKEN_MIN_LIFE = timedelta(minutes=5)


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow:
    @workflow.init
    def __init__(self, input: OnboardingInput) -> None:
        self._user_id = input.user_id
        self._options = input.options
        journal = input.journal or new_journal(input.user_id)
        self._machine = StateMachine.for_options(journal, input.options)
        self._metrics = OnboardingMetrics()  # replay-safe counters: no commands, no history
        if input.lifecycle is None:
            self._state = lifecycle.start(self._options.timeouts, workflow.now())
            self._options.timeouts = self._state.timeouts
            self._metrics.count("onboarding_started")
        else:
            life = input.lifecycle.model_copy(deep=True)
            life.runs += 1
            self._state = lifecycle.State(life, self._options.timeouts)
        self._published = _search_attributes_at_start()
        self._entered_published = _entered_as_published(
            workflow.info().typed_search_attributes.get(search_attributes.STAGE_ENTERED_AT),
            self._state.life.stage_entered_at,
        )
        self._signals_this_run = 0
        self._tasks: dict[Command, asyncio.Task[None]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._armed_for: datetime | None = None
        self._changed = False
        # The token pre-fetched after onTokenExpired, until the next link-token request takes
        # it. Its value is in that activity's result in history, as every token's is.
        self._prefetched: LinkToken | None = None
        # Notices to the customer's backend, delivered one at a time in sequence order by
        # one task; carried by continue-as-new with what is still to deliver.
        self._notices = input.notices.model_copy(deep=True) if input.notices else NoticeLog()
        self._delivery: asyncio.Task[None] | None = None

    # --- run loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: OnboardingInput) -> OnboardingView:
        self._feed(Resumed())
        self._publish_stage_entered()
        self._deliver_notices()  # what a previous run left to deliver
        while not self._ended:
            self._arm_timer()
            # Continue-as-new waits for running handlers, but the clock keeps being served.
            await workflow.wait_condition(
                lambda: (
                    self._changed
                    or self._ended
                    or (self._timer is not None and self._timer.done())
                    or self._ready_to_continue_as_new()
                )
            )
            self._changed = False
            if self._timer is not None and self._timer.done():
                self._timer = self._armed_for = None
                self._feed(ClockTick())
            if self._ready_to_continue_as_new():
                self._stop_tasks()  # their wishes are carried in the lifecycle
                if self._delivery is not None:
                    self._delivery.cancel()  # its notice stays pending in the carried log
                workflow.continue_as_new(
                    OnboardingInput(
                        user_id=self._user_id,
                        options=self._options,
                        journal=self._machine.journal,
                        lifecycle=self._life,
                        notices=self._notices if self._options.notices is not None else None,
                    )
                )
        self._stop_tasks()
        while True:
            await self._settle_notices()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if not notices.has_pending(self._notices):
                break  # else a redelivery came in as the hold ended: deliver it first
        return self._view()

    @property
    def _life(self) -> Lifecycle:
        return self._state.life

    @property
    def _ended(self) -> bool:
        return self._life.status.is_terminal

    def _ready_to_continue_as_new(self) -> bool:
        if self._ended or not workflow.all_handlers_finished():
            return False
        return (
            self._signals_this_run >= self._options.continue_as_new_after
            or workflow.info().is_continue_as_new_suggested()
        )

    def _arm_timer(self) -> None:
        """Keep one timer armed at the next deadline; touch it only when that deadline moves."""
        due = lifecycle.next_deadline(self._state)
        if due == self._armed_for and (due is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, due
        if due is None:
            return
        delay = due - workflow.now()
        if delay <= CLOCK_TOLERANCE:
            self._feed(ClockTick())  # already due: no timer needed
            self._armed_for = None
            self._changed = True
            return
        self._timer = asyncio.create_task(asyncio.sleep(delay.total_seconds()))

    # --- the lifecycle, and its commands ------------------------------------------------------

    def _feed(self, event: Input) -> None:
        before = self._life
        stage, status, stalls = before.stage, before.status, before.stalls
        decision = lifecycle.step(self._state, event, workflow.now())
        self._state = decision.state
        self._options.timeouts = decision.state.timeouts
        self._count_changes(stage, status, stalls)
        for command in decision.commands:
            self._run(command)
        self._changed = True

    def _count_changes(self, stage: Stage, status: Status, stalls: int) -> None:
        life = self._life
        if life.stage is not stage:
            self._metrics.count(
                "onboarding_stage_transitions", {"from": stage.value, "to": life.stage.value}
            )
        if life.stalls > stalls:
            self._metrics.count("onboarding_stalls", {"stage": life.stage.value})
        if life.status is not status and life.status.is_terminal:
            self._metrics.count("onboarding_ended", {"status": life.status.value})

    def _run(self, command: Command) -> None:
        match command:
            case Publish(stage=stage, status=status):
                self._publish(stage, status)
            case Reconcile(stall=stall):
                self._spawn(command, lambda: self._reconcile_for_stall(stall))
            case FetchToken():
                self._spawn(command, self._prefetch_token)
            case NotifyStalled():
                self._spawn(command, lambda: self._notify(command))
            case Announce(change=change):
                self._announce(change)

    def _spawn(self, command: Command, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a command on its own, once while it runs (its outcome settles the wish). Commands
        for different stalls are different commands: a later stall is never held up or
        answered by an earlier one's work."""
        self._tasks = {c: t for c, t in self._tasks.items() if not t.done()}
        if command not in self._tasks:
            self._tasks[command] = asyncio.create_task(work())

    def _stop_tasks(self) -> None:
        """Stop the commands' tasks and the timer (their wishes are in the lifecycle). Notice
        delivery goes on: it is stopped only by continue-as-new, which carries the log."""
        for task in self._tasks.values():
            if not task.done():
                task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _publish(self, stage: Stage, status: Status) -> None:
        """Upsert the search attributes, only when they changed."""
        if (stage, status) == self._published:
            return
        self._published = (stage, status)
        updates: list[SearchAttributeUpdate[Any]] = [
            search_attributes.STAGE.value_set(stage.value),
            search_attributes.STATUS.value_set(status.value),
        ]
        entered = self._life.stage_entered_at
        if entered is not None and workflow.patched(STAGE_ENTERED_PATCH):
            updates.append(search_attributes.STAGE_ENTERED_AT.value_set(entered))
        workflow.upsert_search_attributes(updates)

    def _publish_stage_entered(self) -> None:
        """A run whose starter did not set when its stage was entered (one continued from a run
        older than that attribute) publishes it at once, not only at its next change."""
        entered = self._life.stage_entered_at
        if entered is None or self._entered_published:
            return
        if workflow.patched(STAGE_ENTERED_PATCH):
            self._entered_published = True
            workflow.upsert_search_attributes(
                [search_attributes.STAGE_ENTERED_AT.value_set(entered)]
            )

    def _derive_stage(self) -> Stage:
        return derive_stage(self._machine.journal.facts, self._options.required_data)

    def _observe(self) -> None:
        self._feed(StageObserved(self._derive_stage()))

    async def _reconcile_for_stall(self, stall: int) -> None:
        await self._reconcile(RECONCILE, for_stall=stall)

    async def _notify(self, command: NotifyStalled) -> None:
        workflow.logger.info("onboarding %s stalled in %s", self._user_id, command.stage.value)
        try:
            await workflow.execute_activity(
                notify_stalled,
                StallNotice(
                    user_id=self._user_id,
                    stage=command.stage,
                    stage_entered_at=command.stage_entered_at,
                    deadline=command.deadline,
                    stalls=command.stalls,
                ),
                **NOTICE,
            )
        except ActivityError as err:
            # A notice that cannot be delivered is recorded; the onboarding goes on.
            self._feed(NoticeFinished(stalls=command.stalls, error=_cause(err)))
            return
        self._feed(NoticeFinished(stalls=command.stalls))

    # --- notices to the customer's backend ----------------------------------------------------

    def _notices_on(self) -> bool:
        """Notices are on for this onboarding (fixed at its start), and this run began on code
        that sends them: a history from a worker without notices replays without them."""
        return self._options.notices is not None and workflow.patched(NOTICES_PATCH)

    def _announce(self, change: Change) -> None:
        wanted = self._options.notices
        if wanted is None or not self._notices_on():
            return  # notices are off for this onboarding
        facts = self._machine.journal.facts
        life = self._life

        def body(sequence: int) -> dict[str, Any]:
            return notices.compose(
                change,
                self._user_id,
                sequence,
                external_metadata=life.external_metadata,
                data=facts.data,
                required_data=self._options.required_data,
                accounts=presented_accounts(facts),
                stalled_since=life.stage_entered_at,
                stall_deadline=life.stall_deadline,
                stalls=life.stalls,
            )

        notice_id = f"msg_{workflow.uuid4().hex}"  # deterministic: the same on replay
        if notices.issue(self._notices, change, notice_id, body, wanted) is not None:
            self._deliver_notices()

    def _deliver_notices(self) -> None:
        """Start the one delivery task if there is something to deliver and it is not running."""
        idle = self._delivery is None or self._delivery.done()
        if idle and notices.has_pending(self._notices) and self._notices_on():
            self._delivery = asyncio.create_task(self._deliver_in_order())

    async def _deliver_in_order(self) -> None:
        """Deliver pending notices one at a time, lowest sequence first: a receiver sees one
        onboarding's notices in order, and a notice being retried holds back the later ones
        (never the onboarding: this task is all that waits)."""
        while (record := notices.next_pending(self._notices)) is not None:
            await self._deliver(record)

    async def _deliver(self, record: NoticeRecord) -> None:
        record.deliveries += 1
        try:
            report = await workflow.execute_activity_method(
                NoticeSender.deliver,
                OutgoingNotice(
                    id=record.id,
                    user_id=self._user_id,
                    sequence=record.sequence,
                    type=record.type,
                    body=notices.as_sent(record.body, self._life.external_metadata),
                ),
                **self._delivery_config(record),
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                # Stopped for continue-as-new: the notice stays pending in the carried log, and
                # nothing more may be scheduled after continue-as-new in this task.
                raise asyncio.CancelledError() from None
            status, attempts = _last_answer(err)
            notices.settle_failed(
                self._notices, record.sequence, attempts, status, _cause(err), workflow.now()
            )
            return
        notices.settle_delivered(self._notices, record.sequence, report, workflow.now())

    def _delivery_config(self, record: NoticeRecord) -> workflow.ActivityConfig:
        """``DELIVER_NOTICE``, under this notice's own id, with retries that end when its
        window does: a notice queued behind one retried for days gets only what is left."""
        config = workflow.ActivityConfig(**DELIVER_NOTICE)
        config["activity_id"] = f"notice-{record.sequence}.{record.deliveries}"
        left = notices.delivery_deadline(record, NOTICE_WINDOW) - workflow.now()
        config["schedule_to_close_timeout"] = max(left, _LAST_CHANCE)
        return config

    async def _settle_notices(self) -> None:
        """After the end: deliver what is left. Failed notices keep the workflow open for
        ``notice_hold`` so an operator can redeliver them; a redelivery restarts that wait."""
        while True:
            await workflow.wait_condition(
                lambda: (
                    not notices.has_pending(self._notices)
                    and (self._delivery is None or self._delivery.done())
                )
            )
            if not notices.failed(self._notices):
                return
            try:
                await workflow.wait_condition(
                    lambda: notices.has_pending(self._notices),
                    timeout=timedelta(seconds=self._options.notice_hold),
                )
            except TimeoutError:
                return

    async def _reconcile(
        self, policy: workflow.ActivityConfig, for_stall: int | None = None
    ) -> str | None:
        """Merge Smile's records; the error, if Smile could not be asked."""
        try:
            result = await workflow.execute_activity_method(
                SmileActivities.reconcile,
                args=[self._user_id, list(self._options.required_data)],
                **policy,
            )
        except ActivityError as err:
            cause = err.cause
            not_found = (
                isinstance(cause, ApplicationError) and cause.type == SmileNotFound.type_name
            )
            error = _cause(err)
            self._count_reconciliation(for_stall, "user_not_found" if not_found else "failed")
            self._feed(
                ReconcileFinished(for_stall=for_stall, error=error, user_not_found=not_found)
            )
            return error
        added = sum(1 for event in result.events if self._machine.apply(event))
        self._count_reconciliation(for_stall, "new_facts" if added else "no_change")
        if added:
            self._observe()
        self._feed(
            ReconcileFinished(
                for_stall=for_stall,
                accounts=result.accounts,
                archives=result.archives,
                tasks=result.tasks,
                data=dict(result.data),
                skipped=result.skipped,
                facts_added=added,
            )
        )
        return None

    def _count_reconciliation(self, for_stall: int | None, outcome: str) -> None:
        trigger = "operator" if for_stall is None else "stall"
        self._metrics.count("onboarding_reconciliations", {"trigger": trigger, "outcome": outcome})

    async def _issue_token(self) -> LinkToken:
        token_state = self._machine.journal.facts.token
        try:
            token = await workflow.execute_activity_method(
                SmileActivities.create_token, self._user_id, **CREATE_TOKEN
            )
        except ActivityError as err:
            token_state.refresh_failures += 1
            token_state.last_error = _cause(err)
            raise ApplicationError(
                f"Smile did not issue a link token: {token_state.last_error}",
                type=SMILE_CALL_FAILED,
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
        except ApplicationError as err:
            self._prefetched = None  # recorded in the token state; the next request retries
            self._feed(TokenFetchFinished(error=err.message))
            return
        self._feed(TokenFetchFinished())

    # --- handlers ----------------------------------------------------------------------------

    @workflow.signal(name=INGEST_SIGNAL)
    def ingest(self, batch: EventBatch) -> None:
        """Events for this user (usually one). Duplicates by id change nothing."""
        self._signals_this_run += 1
        if self._ended:
            workflow.logger.info(
                "onboarding %s is %s; ignoring events", self._user_id, self._life.status.value
            )
            for event in batch.events:
                self._count_event(event.source, "after_end")
            return
        changed = False
        for event in batch.events:
            if self._machine.apply(event):
                changed = True
                self._count_event(event.source, "recorded")
                if event.source is Source.WIDGET and event.type == "onTokenExpired":
                    self._feed(TokenExpiryReported())
            else:
                self._count_event(event.source, "duplicate")
        if changed:
            self._observe()

    def _count_event(self, source: Source, outcome: str) -> None:
        self._metrics.count("onboarding_events", {"source": source.value, "outcome": outcome})

    @workflow.query
    def state(self) -> OnboardingView:
        return self._view()

    @workflow.update
    def set_timeouts(self, change: TimeoutsChange) -> Timeouts:
        self._feed(TimeoutsChanged(change))
        return self._options.timeouts

    @set_timeouts.validator
    def _validate_timeouts(self, change: TimeoutsChange) -> None:
        self._reject_if_ended()
        if not change.stall and change.expire_after is None and change.settle_window is None:
            raise ValueError("nothing to change: give stall timeouts, expireAfter or settleWindow")
        check_timeouts_change(change)

    @workflow.update
    def begin(self, start: StartRequest) -> UpdateOutcome:
        """Called once by ``POST /onboardings`` (update-with-start): the Smile user exists and
        its first link token was handed out; per-onboarding options apply from now."""
        if start.external_metadata is not None:
            self._life.external_metadata = start.external_metadata
        if start.required_data is not None:
            self._options.required_data = list(start.required_data)
        if start.timeouts is not None:
            self._feed(TimeoutsChanged(start.timeouts))
        if start.token_expires_at is not None:
            token = self._machine.journal.facts.token
            token.issued_at = workflow.now()
            token.expires_at = start.token_expires_at
        self._observe()
        return self._outcome()

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
    async def reconcile(self) -> UpdateOutcome:
        """Check Smile's own records now and merge what they say; a Smile that cannot be asked
        within ``RECONCILE_NOW``'s bound is reported as such (recorded, then raised)."""
        error = await self._reconcile(RECONCILE_NOW)
        if error is not None and not self._ended:
            raise ApplicationError(
                f"Smile could not be asked: {error}", type=SMILE_CALL_FAILED, non_retryable=True
            )
        return self._outcome()

    @reconcile.validator
    def _validate_reconcile(self) -> None:
        self._reject_if_ended()

    @workflow.query
    def notice_log(self) -> NoticeLog:
        return self._notices

    @workflow.update
    def redeliver_notices(self, request: RedeliverRequest) -> list[int]:
        """Failed notices back in line (same ``webhook-id``); the sequence numbers queued."""
        queued = notices.redeliver(self._notices, request.sequence, workflow.now())
        self._deliver_notices()
        return queued

    @redeliver_notices.validator
    def _validate_redeliver(self, request: RedeliverRequest) -> None:
        if self._options.notices is None:
            raise ValueError("notices are off for this onboarding")
        notices.redeliver(self._notices.model_copy(deep=True), request.sequence, workflow.now())
        if request.sequence is None and not notices.failed(self._notices):
            raise ValueError("no failed notices to redeliver")

    @workflow.update
    def cancel(self, request: CancelRequest) -> UpdateOutcome:
        self._feed(CancelRequested(request.reason))
        return self._outcome()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._reject_if_ended()

    def _reject_if_ended(self) -> None:
        if self._state is not None and self._ended:
            raise ApplicationError(
                f"onboarding already ended as {self._life.status.value}",
                type=ONBOARDING_ENDED,
                non_retryable=True,
            )

    # --- what callers read -------------------------------------------------------------------

    def _outcome(self) -> UpdateOutcome:
        life = self._life
        return UpdateOutcome(
            user_id=self._user_id,
            stage=life.stage,
            status=life.status,
            status_reason=life.status_reason,
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
            deadlines=lifecycle.deadlines(self._state),
            stalls=life.stalls,
            external_metadata=life.external_metadata,
            reconcile=life.reconcile,
            events=journal.history,
            events_total=journal.events_total,
            duplicates_ignored=journal.duplicates_ignored,
            unknown_types=facts.unknown_types,
            other_versions=facts.other_versions,
            runs=life.runs,
            notices=(notices.counts(self._notices) if self._options.notices is not None else None),
        )


def _search_attributes_at_start() -> tuple[Stage, Status] | None:
    """The stage and status this run's search attributes already hold (set by whoever started
    it, or carried by continue-as-new), so that only a change is ever upserted."""
    attributes = workflow.info().typed_search_attributes
    stage, status = (
        attributes.get(search_attributes.STAGE),
        attributes.get(search_attributes.STATUS),
    )
    if stage in set(Stage) and status in set(Status):
        return Stage(stage), Status(status)
    return None


def _entered_as_published(published: datetime | None, entered: datetime | None) -> bool:
    """Whether the run's ``OnboardingStageEnteredAt`` already says when its stage was entered:
    set by its starter at about the start (within a minute: the starter's clock), or carried
    from a run that kept it up to date. A run continued from one that an older worker moved on
    carries a stale one, and publishes it again."""
    if published is None:
        return False
    if entered is None:
        return True
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return abs(published - entered) <= _ENTERED_SLACK


def _last_answer(err: ActivityError) -> tuple[int | None, int]:
    """The HTTP status an endpoint last answered a notice with, and how many attempts were
    made, from the delivery activity's last error (its details, see ``activities/notify.py``)."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or cause.type != NOTICE_ENDPOINT_UNAVAILABLE:
        return None, 1
    details = cause.details[0] if cause.details else {}
    if not isinstance(details, dict):
        return None, 1
    statuses = [e.get("status") for e in details.get("endpoints", []) if isinstance(e, dict)]
    status = next((s for s in reversed(statuses) if isinstance(s, int)), None)
    attempts = details.get("attempt")
    return status, attempts if isinstance(attempts, int) else 1


def _cause(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)
