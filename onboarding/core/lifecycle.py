"""The onboarding's lifecycle as a pure reducer: ``step(state, input, now) -> (state, commands)``.

The facts (``state_machine``) say what is true of a user; the lifecycle says what to do about it
over time: the stage's clock, stall and un-stall, the settle window after data is ready, expiry,
the end, and the work a stall or a token expiry asks for. No Temporal, no I/O, no clock: the
workflow feeds in what happened and runs the commands that come out, each on its own, so that no
command ever waits behind another.

Rules, each a property test in ``tests/onboarding/core/test_lifecycle.py``:
- the end is final: once the status is terminal, no input changes the lifecycle again;
- every deadline is derived from the current state (stage entry, data-ready time, timeouts),
  never stored, so a changed timeout or a stage regained moves it;
- ``data_ready_at`` is the time the stage last became ``data_ready``;
- a wish (refresh the token, reconcile a stall, notify a stall) is kept in the state until its
  outcome is reported, so it survives continue-as-new and is asked for again by ``Resumed``;
- a failed notice or reconciliation is recorded, never fatal; only Smile saying the user does
  not exist ends the onboarding as ``failed``;
- every change the customer is told of is announced exactly once, in the step that makes it:
  the start, each stage change (and reaching ``data_ready``), a stall once Smile was asked,
  the resumption of an announced stall, and the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from onboarding.core.models import (
    Change,
    Deadlines,
    Lifecycle,
    NoticeType,
    Stage,
    Status,
    Timeouts,
    TimeoutsChange,
    stage_with_stall_timeout,
)
from onboarding.core.notices import ENDING_NOTICE

# Timers fire on millisecond boundaries; a deadline this close counts as reached.
CLOCK_TOLERANCE = timedelta(milliseconds=1)


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resumed:
    """A run begins (the first, or after continue-as-new): ask again for every open wish."""


@dataclass(frozen=True)
class StageObserved:
    """The facts changed (events or a reconciliation applied); this is the stage they give."""

    stage: Stage


@dataclass(frozen=True)
class TokenExpiryReported:
    """The widget said the link token expired: get the next one ready."""


@dataclass(frozen=True)
class ClockTick:
    """The timer fired (or the workflow woke): act on every deadline that has passed."""


@dataclass(frozen=True)
class TimeoutsChanged:
    change: TimeoutsChange


@dataclass(frozen=True)
class CancelRequested:
    reason: str


@dataclass(frozen=True)
class ReconcileFinished:
    """A reconciliation's outcome; the facts it added were observed just before. ``for_stall``
    is the stall it was asked for (its number), or None when an operator asked for it."""

    for_stall: int | None = None
    error: str | None = None
    user_not_found: bool = False
    accounts: int = 0
    archives: int = 0
    tasks: int = 0
    data: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    facts_added: int = 0


@dataclass(frozen=True)
class NoticeFinished:
    stalls: int  # the stall the notice was about
    error: str | None = None


@dataclass(frozen=True)
class TokenFetchFinished:
    error: str | None = None


Input = (
    Resumed
    | StageObserved
    | TokenExpiryReported
    | ClockTick
    | TimeoutsChanged
    | CancelRequested
    | ReconcileFinished
    | NoticeFinished
    | TokenFetchFinished
)


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """Make the stage and status visible to listing (search attributes)."""

    stage: Stage
    status: Status


@dataclass(frozen=True)
class Reconcile:
    """Ask Smile for its records of the user (a missed webhook is the usual cause of a stall)."""

    stall: int  # which stall asks; a later stall asks again, an earlier answer settles nothing


@dataclass(frozen=True)
class NotifyStalled:
    stage: Stage
    stage_entered_at: datetime
    deadline: datetime
    stalls: int


@dataclass(frozen=True)
class FetchToken:
    """Get the next link token ready, after the widget reported the last one expired."""


@dataclass(frozen=True)
class Announce:
    """Tell the customer's backend: one notice (the workflow decides whether it is wanted)."""

    change: Change


Command = Publish | Reconcile | NotifyStalled | FetchToken | Announce


# --- the state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """What the lifecycle decides on: its own record and the timeouts in force."""

    life: Lifecycle
    timeouts: Timeouts


@dataclass(frozen=True)
class Decision:
    state: State
    commands: tuple[Command, ...] = ()


def start(timeouts: Timeouts, now: datetime) -> State:
    """A new onboarding: ``created`` and ``active`` from ``now``; its start is to be announced."""
    life = Lifecycle(started_at=now, stage_entered_at=now, start_announce_wanted=True)
    return State(life, timeouts.model_copy(deep=True))


def deadlines(state: State) -> Deadlines:
    """Every deadline, derived from the state alone."""
    life, timeouts = state.life, state.timeouts
    if life.status.is_terminal or life.stage_entered_at is None:
        return Deadlines()
    if life.stage is Stage.DATA_READY:
        ready = life.data_ready_at or life.stage_entered_at
        return Deadlines(settle=ready + timedelta(seconds=timeouts.settle_window))
    stall_seconds = timeouts.stall.get(life.stage)
    return Deadlines(
        stall=(
            life.stage_entered_at + timedelta(seconds=stall_seconds)
            if stall_seconds is not None
            else None
        ),
        expire=life.stage_entered_at + timedelta(seconds=timeouts.expire_after),
    )


def next_deadline(state: State) -> datetime | None:
    """When the clock next matters: the one timer the workflow keeps armed."""
    due = deadlines(state)
    stall = due.stall if state.life.status is Status.ACTIVE else None
    pending = [d for d in (stall, due.expire, due.settle) if d is not None]
    return min(pending) if pending else None


def step(state: State, event: Input, now: datetime) -> Decision:
    """The lifecycle after ``event`` at ``now``, and the commands it asks for. The input state
    is left untouched."""
    if state.life.status.is_terminal:
        return Decision(state)  # the end is final
    life = state.life.model_copy(deep=True)
    timeouts = state.timeouts.model_copy(deep=True)
    before = (life.stage, life.status)
    commands: list[Command] = []
    match event:
        case Resumed():
            commands += _wishes(life)
        case StageObserved(stage=stage):
            _observe(life, stage, now)
        case TokenExpiryReported():
            if not life.token_refresh_wanted:
                life.token_refresh_wanted = True
                commands.append(FetchToken())
        case ClockTick():
            commands += _on_clock(State(life, timeouts), now)
        case TimeoutsChanged(change=change):
            _apply_timeouts(life, timeouts, change, now)
        case CancelRequested(reason=reason):
            _end(life, Status.CANCELLED, reason, now)
        case ReconcileFinished():
            commands += _reconciled(life, event, now)
        case NoticeFinished(stalls=stalls, error=error):
            life.last_notice_error = error
            if stalls == life.stalls:
                life.stall_notice_wanted = False
        case TokenFetchFinished():
            life.token_refresh_wanted = False
    if life.status.is_terminal:
        # Nothing more is asked of a finished onboarding.
        life.token_refresh_wanted = life.stall_reconcile_wanted = False
        life.stall_notice_wanted = False
        commands = [c for c in commands if isinstance(c, Publish | Announce)]
    commands = _announcements(life, before, now) + commands
    if (life.stage, life.status) != before or isinstance(event, Resumed):
        commands.insert(0, Publish(life.stage, life.status))
    return Decision(State(life, timeouts), tuple(commands))


# --- rules -------------------------------------------------------------------------------------


def _announcements(life: Lifecycle, before: tuple[Stage, Status], now: datetime) -> list[Command]:
    """The notices a step's change of stage and status calls for, in the order they happened:
    the start, a resumption, the new stage, data ready, the end. (A stall is announced where
    it is decided: once Smile was asked, see ``_reconciled``.)"""
    stage_before, status_before = before
    changes: list[Change] = []

    def announce(kind: NoticeType) -> None:
        changes.append(
            Change(
                type=kind,
                stage=life.stage,
                status=life.status,
                previous_stage=stage_before,
                previous_status=status_before,
                # the status's reason, on the notices that change the status only
                reason=life.status_reason if life.status is not status_before else None,
                at=now,
            )
        )

    if life.start_announce_wanted:  # the first step of all, whatever it is: as it began
        life.start_announce_wanted = False
        changes.append(Change(type=NoticeType.STARTED, stage=stage_before,
                              status=status_before, at=life.started_at or now))  # fmt: skip
    if status_before is Status.STALLED and life.status is not Status.STALLED:
        if life.stall_announced and life.status is Status.ACTIVE:
            announce(NoticeType.RESUMED)
        life.stall_announced = False
    if life.stage is not stage_before:
        announce(NoticeType.STAGE_CHANGED)
        if life.stage is Stage.DATA_READY:
            announce(NoticeType.DATA_READY)
    if life.status.is_terminal and not status_before.is_terminal:
        announce(ENDING_NOTICE[life.status])
    return [Announce(change) for change in changes]


def _wishes(life: Lifecycle) -> list[Command]:
    wanted: list[Command] = []
    if life.token_refresh_wanted:
        wanted.append(FetchToken())
    if life.stall_reconcile_wanted:
        wanted.append(Reconcile(life.stalls))
    elif life.stall_notice_wanted:
        wanted.append(_notice(life))
    return wanted


def _observe(life: Lifecycle, stage: Stage, now: datetime) -> None:
    if stage is life.stage:
        return
    life.stage = stage
    life.stage_entered_at = now
    if stage is Stage.DATA_READY:
        life.data_ready_at = now  # each time: the settle window runs from the latest
    if life.status is Status.STALLED:
        life.status = Status.ACTIVE
        life.status_reason = f"progress to {stage.value}"
        life.stall_notice_wanted = False  # progress answers the stall; nobody need be told


def _on_clock(state: State, now: datetime) -> list[Command]:
    life = state.life
    reached = now + CLOCK_TOLERANCE
    due = deadlines(state)
    if due.settle is not None and reached >= due.settle:
        _end(life, Status.COMPLETED, "data ready and the settle window has passed", now)
    elif due.expire is not None and reached >= due.expire:
        _end(life, Status.EXPIRED, f"no progress past the {life.stage.value} stage", now)
    elif life.status is Status.ACTIVE and due.stall is not None and reached >= due.stall:
        life.status = Status.STALLED
        life.status_reason = f"in stage {life.stage.value} past its stall timeout"
        life.stalled_at = now
        life.stall_deadline = due.stall
        life.stalls += 1
        # A missed webhook is the usual cause: ask Smile before telling anyone.
        life.stall_reconcile_wanted = True
        life.stall_notice_wanted = True
        return [Reconcile(life.stalls)]
    return []


def _reconciled(life: Lifecycle, outcome: ReconcileFinished, now: datetime) -> list[Command]:
    record = life.reconcile
    record.runs += 1
    record.last_at = now
    record.last_error = outcome.error
    if outcome.error is None:
        record.accounts_seen = outcome.accounts
        record.archives_seen = outcome.archives
        record.tasks_seen = outcome.tasks
        record.data_seen = dict(outcome.data)
        record.records_skipped = outcome.skipped
        record.facts_added += outcome.facts_added
    if outcome.user_not_found:
        _end(life, Status.FAILED, "Smile has no record of this user", now)
        return []
    if outcome.for_stall != life.stalls or not life.stall_reconcile_wanted:
        return []  # on demand, or for an earlier stall: nothing waits on it
    life.stall_reconcile_wanted = False
    if life.status is Status.STALLED and life.stall_notice_wanted:
        life.stall_announced = True
        stalled = Change(
            type=NoticeType.STALLED,
            stage=life.stage,
            status=life.status,
            previous_stage=life.stage,
            previous_status=Status.ACTIVE,
            reason=life.status_reason,
            at=now,
        )
        return [_notice(life), Announce(stalled)]
    life.stall_notice_wanted = False
    return []


def _notice(life: Lifecycle) -> NotifyStalled:
    entered = life.stage_entered_at or life.started_at or life.stalled_at
    stalled = life.stall_deadline or life.stalled_at or entered
    if entered is None or stalled is None:  # a stall always has these; never without them
        raise ValueError("a stall notice needs the time the stage was entered")
    return NotifyStalled(stage=life.stage, stage_entered_at=entered, deadline=stalled,
                         stalls=life.stalls)  # fmt: skip


def _apply_timeouts(
    life: Lifecycle, timeouts: Timeouts, change: TimeoutsChange, now: datetime
) -> None:
    for name, seconds in change.stall.items():
        timeouts.stall[stage_with_stall_timeout(name)] = seconds
    if change.expire_after is not None:
        timeouts.expire_after = change.expire_after
    if change.settle_window is not None:
        timeouts.settle_window = change.settle_window
    stall = deadlines(State(life, timeouts)).stall
    if life.status is Status.STALLED and stall is not None and now < stall:
        life.status = Status.ACTIVE
        life.status_reason = "stall timeout extended"
        life.stall_notice_wanted = False


def _end(life: Lifecycle, status: Status, reason: str, now: datetime) -> None:
    if life.status.is_terminal:
        return
    life.status = status
    life.status_reason = reason
    life.ended_at = now
