"""The lifecycle reducer against an oracle: a second, deliberately plain model of the stage, the
status and their times, written from the rules in ``lifecycle.py``'s docstring, run over any
sequence of inputs (cancellation and Smile's "no such user" included); and each rule's details
(what a stall records, what a reconciliation records, the order of the commands) pinned by
examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core.lifecycle import (
    CLOCK_TOLERANCE,
    Announce,
    CancelRequested,
    ClockTick,
    FetchToken,
    Input,
    NoticeFinished,
    NotifyStalled,
    Publish,
    Reconcile,
    ReconcileFinished,
    Resumed,
    StageObserved,
    State,
    TimeoutsChanged,
    TokenExpiryReported,
    TokenFetchFinished,
    deadlines,
    next_deadline,
    start,
    step,
)
from onboarding.core.models import (
    Lifecycle,
    NoticeType,
    ReconcileState,
    Stage,
    Status,
    Timeouts,
    TimeoutsChange,
)
from tests.onboarding.core.test_lifecycle import INPUTS, TIMEOUTS
from tests.smile_samples import BASE_TIME

ENDS = st.sampled_from(
    [CancelRequested("operator"), ReconcileFinished(user_not_found=True), ReconcileFinished()]
)


@dataclass
class Model:
    """What the lifecycle should be, by the rules, nothing else."""

    timeouts: Timeouts
    stage: Stage = Stage.CREATED
    entered: datetime = BASE_TIME
    status: Status = Status.ACTIVE
    ready_at: datetime | None = None
    stalls: int = 0
    ended_at: datetime | None = None
    reasons: list[str] = field(default_factory=list)

    def stall_deadline(self) -> datetime | None:
        seconds = self.timeouts.stall.get(self.stage)
        if self.stage is Stage.DATA_READY or seconds is None:
            return None
        return self.entered + timedelta(seconds=seconds)

    def end(self, status: Status, now: datetime) -> None:
        self.status, self.ended_at = status, now

    def feed(self, event: Input, now: datetime) -> None:
        if self.status not in (Status.ACTIVE, Status.STALLED):
            return  # the end is final
        reached = now + timedelta(milliseconds=1)
        match event:
            case StageObserved(stage=stage) if stage is not self.stage:
                self.stage, self.entered = stage, now
                if stage is Stage.DATA_READY:
                    self.ready_at = now
                if self.status is Status.STALLED:
                    self.status = Status.ACTIVE
            case ClockTick():
                stall = self.stall_deadline()
                if self.stage is Stage.DATA_READY:
                    settle = (self.ready_at or self.entered) + timedelta(
                        seconds=self.timeouts.settle_window
                    )
                    if reached >= settle:
                        self.end(Status.COMPLETED, now)
                elif reached >= self.entered + timedelta(seconds=self.timeouts.expire_after):
                    self.end(Status.EXPIRED, now)
                elif self.status is Status.ACTIVE and stall is not None and reached >= stall:
                    self.status = Status.STALLED
                    self.stalls += 1
            case TimeoutsChanged(change=change):
                for name, seconds in change.stall.items():
                    self.timeouts.stall[Stage(name)] = seconds
                if change.expire_after is not None:
                    self.timeouts.expire_after = change.expire_after
                if change.settle_window is not None:
                    self.timeouts.settle_window = change.settle_window
                stall = self.stall_deadline()
                if self.status is Status.STALLED and stall is not None and now < stall:
                    self.status = Status.ACTIVE
            case CancelRequested():
                self.end(Status.CANCELLED, now)
            case ReconcileFinished(user_not_found=True):
                self.end(Status.FAILED, now)
            case _:
                pass


ALL_INPUTS = INPUTS | ENDS | st.just(ClockTick())


@settings(max_examples=200, deadline=None)
@given(
    journey=st.lists(
        st.tuples(ALL_INPUTS, st.sampled_from([0, 1, 30, 59, 60, 61, 120, 400])), max_size=25
    )
)
def test_the_stage_status_and_their_times_are_what_the_rules_say(
    journey: list[tuple[Input, int]],
) -> None:
    now = BASE_TIME
    state = start(TIMEOUTS, now)
    model = Model(TIMEOUTS.model_copy(deep=True))
    for event, wait in journey:
        now += timedelta(seconds=wait)
        before = (state.life.stage, state.life.status)
        decision = step(state, event, now)
        state = decision.state
        model.feed(event, now)
        life = state.life
        assert (life.stage, life.status) == (model.stage, model.status)
        assert (life.stage_entered_at, life.data_ready_at) == (model.entered, model.ready_at)
        assert (life.stalls, life.ended_at) == (model.stalls, model.ended_at)
        assert state.timeouts == model.timeouts
        # Published first whenever the stage or the status changed (and on every resumption).
        changed = (life.stage, life.status) != before
        published = [c for c in decision.commands if isinstance(c, Publish)]
        if changed or (isinstance(event, Resumed) and not before[1].is_terminal):
            assert decision.commands[0] == Publish(life.stage, life.status)
            assert len(published) == 1
        else:
            assert published == []
        # A stall asks Smile first; only a finished onboarding asks for nothing at all.
        if life.status is Status.STALLED and before[1] is Status.ACTIVE:
            assert decision.commands[-1] == Reconcile(life.stalls)
            assert (life.stalled_at, life.stall_reconcile_wanted) == (now, True)
        if life.status.is_terminal:
            assert not (life.token_refresh_wanted or life.stall_reconcile_wanted)
            assert not life.stall_notice_wanted
            assert all(isinstance(c, Publish | Announce) for c in decision.commands)


# --- deadlines --------------------------------------------------------------------------------


def test_a_deadline_within_a_millisecond_counts_as_reached() -> None:
    assert timedelta(milliseconds=1) == CLOCK_TOLERANCE
    state = start(TIMEOUTS, BASE_TIME)
    stall = BASE_TIME + timedelta(seconds=60)
    early = step(state, ClockTick(), stall - timedelta(microseconds=1001)).state
    assert early.life.status is Status.ACTIVE
    late = step(state, ClockTick(), stall - timedelta(microseconds=1000)).state
    assert late.life.status is Status.STALLED
    assert late.life.stall_deadline == stall


def test_next_deadline_is_the_earliest_and_a_stall_only_while_active() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    assert deadlines(state).model_dump() == {
        "stall": BASE_TIME + timedelta(seconds=60),
        "expire": BASE_TIME + timedelta(seconds=600),
        "settle": None,
    }
    assert next_deadline(state) == BASE_TIME + timedelta(seconds=60)
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    assert next_deadline(stalled) == BASE_TIME + timedelta(seconds=600)  # only expiry is left
    no_stall = State(state.life, Timeouts(stall={}, expire_after=10, settle_window=5))
    assert deadlines(no_stall).stall is None
    assert next_deadline(no_stall) == BASE_TIME + timedelta(seconds=10)


def test_settling_runs_from_data_ready_or_else_from_the_stage_entry() -> None:
    ready = step(start(TIMEOUTS, BASE_TIME), StageObserved(Stage.DATA_READY), BASE_TIME).state
    assert deadlines(ready).model_dump() == {
        "stall": None,
        "expire": None,
        "settle": BASE_TIME + timedelta(seconds=30),
    }
    # A lifecycle carried over from before data_ready_at existed settles from the stage entry.
    older = State(
        ready.life.model_copy(
            update={"data_ready_at": None, "stage_entered_at": BASE_TIME + timedelta(seconds=5)}
        ),
        ready.timeouts,
    )
    assert deadlines(older).settle == BASE_TIME + timedelta(seconds=35)
    done = step(ready, ClockTick(), BASE_TIME + timedelta(seconds=30)).state
    assert (done.life.status, done.life.status_reason, done.life.ended_at) == (
        Status.COMPLETED,
        "data ready and the settle window has passed",
        BASE_TIME + timedelta(seconds=30),
    )
    assert deadlines(done).model_dump() == {"stall": None, "expire": None, "settle": None}
    assert deadlines(State(Lifecycle(), TIMEOUTS)).model_dump()["expire"] is None  # not started


def test_expiry_ends_it_with_its_reason_and_wins_over_a_stall() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    expired = step(state, ClockTick(), BASE_TIME + timedelta(seconds=600))
    life = expired.state.life
    assert (life.status, life.status_reason, life.stalls) == (
        Status.EXPIRED,
        "no progress past the created stage",
        0,
    )
    assert expired.commands[0] == Publish(Stage.CREATED, Status.EXPIRED)
    assert Reconcile(1) not in expired.commands


# --- a stall, a reconciliation, a notice ------------------------------------------------------


def test_a_stall_records_when_why_and_which_deadline() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    at = BASE_TIME + timedelta(seconds=75)
    stalled = step(state, ClockTick(), at)
    life = stalled.state.life
    assert (life.status, life.stalled_at, life.stall_deadline, life.stalls) == (
        Status.STALLED,
        at,
        BASE_TIME + timedelta(seconds=60),
        1,
    )
    assert life.status_reason == "in stage created past its stall timeout"
    assert (life.stall_reconcile_wanted, life.stall_notice_wanted) == (True, True)
    assert stalled.commands == (Publish(Stage.CREATED, Status.STALLED), Reconcile(1))
    # The next tick does not stall it again.
    assert step(stalled.state, ClockTick(), at + timedelta(seconds=1)).commands == ()


def test_a_reconciliation_records_what_smile_had() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    at = BASE_TIME + timedelta(seconds=5)
    outcome = ReconcileFinished(
        accounts=2, archives=1, tasks=3, data={"incomes": 4}, skipped=1, facts_added=2
    )
    once = step(state, outcome, at).state
    again = step(once, outcome, at + timedelta(seconds=1)).state
    assert again.life.reconcile == ReconcileState(
        runs=2,
        last_at=at + timedelta(seconds=1),
        last_error=None,
        accounts_seen=2,
        archives_seen=1,
        tasks_seen=3,
        data_seen={"incomes": 4},
        records_skipped=1,
        facts_added=4,  # summed over runs
    )
    failed = step(again, ReconcileFinished(error="Smile is down", accounts=9), at).state
    assert failed.life.reconcile.model_dump() == {
        **again.life.reconcile.model_dump(),
        "runs": 3,
        "last_at": at,
        "last_error": "Smile is down",
    }  # a failed run keeps what the last good one saw
    assert failed.life.status is Status.ACTIVE


def test_the_stall_notice_says_what_stalled_and_resumed_asks_again() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=61)).state
    told = step(stalled, ReconcileFinished(for_stall=1), BASE_TIME + timedelta(seconds=62))
    notice, announce = told.commands
    assert notice == NotifyStalled(
        stage=Stage.CREATED,
        stage_entered_at=BASE_TIME,
        deadline=BASE_TIME + timedelta(seconds=60),
        stalls=1,
    )
    assert isinstance(announce, Announce)
    assert announce.change.model_dump() == {
        "type": NoticeType.STALLED,
        "stage": Stage.CREATED,
        "status": Status.STALLED,
        "previous_stage": Stage.CREATED,
        "previous_status": Status.ACTIVE,
        "reason": "in stage created past its stall timeout",
        "at": BASE_TIME + timedelta(seconds=62),
    }
    life = told.state.life
    assert (life.stall_reconcile_wanted, life.stall_notice_wanted, life.stall_announced) == (
        False,
        True,
        True,
    )
    # A new run asks again for the notice (not the reconciliation, which is done) ...
    resumed = step(told.state, Resumed(), BASE_TIME + timedelta(seconds=63)).commands
    assert resumed == (Publish(Stage.CREATED, Status.STALLED), notice)
    # ... until its outcome, failed or not, is reported.
    failed = step(told.state, NoticeFinished(stalls=1, error="503"), BASE_TIME).state
    assert (failed.life.stall_notice_wanted, failed.life.last_notice_error) == (False, "503")
    earlier = step(told.state, NoticeFinished(stalls=0), BASE_TIME).state
    assert earlier.life.stall_notice_wanted
    assert step(failed, Resumed(), BASE_TIME).commands == (Publish(Stage.CREATED, Status.STALLED),)


def test_progress_resumes_a_stall_with_its_reason_and_announces_it() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    told = step(stalled, ReconcileFinished(for_stall=1), BASE_TIME + timedelta(seconds=61)).state
    at = BASE_TIME + timedelta(seconds=70)
    moved = step(told, StageObserved(Stage.CONNECTED), at)
    life = moved.state.life
    assert (life.status, life.status_reason, life.stall_notice_wanted) == (
        Status.ACTIVE,
        "progress to connected",
        False,
    )
    assert moved.commands[0] == Publish(Stage.CONNECTED, Status.ACTIVE)
    types = [c.change.type for c in moved.commands if isinstance(c, Announce)]
    assert types == [NoticeType.RESUMED, NoticeType.STAGE_CHANGED]
    resumed = moved.commands[1]
    assert isinstance(resumed, Announce)
    assert (resumed.change.previous_stage, resumed.change.previous_status) == (
        Stage.CREATED,
        Status.STALLED,
    )
    assert (resumed.change.reason, resumed.change.at) == ("progress to connected", at)
    assert not life.stall_announced


def test_an_unannounced_stall_resumes_silently() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    moved = step(stalled, StageObserved(Stage.CONNECTED), BASE_TIME + timedelta(seconds=61))
    types = [c.change.type for c in moved.commands if isinstance(c, Announce)]
    assert types == [NoticeType.STAGE_CHANGED]
    changed = moved.commands[1]
    assert isinstance(changed, Announce) and changed.change.reason == "progress to connected"


def test_a_longer_timeout_resumes_only_if_the_new_deadline_is_ahead() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    at = BASE_TIME + timedelta(seconds=90)
    stalled = step(state, ClockTick(), at).state
    still = step(stalled, TimeoutsChanged(TimeoutsChange(stall={"created": 90})), at).state
    assert still.life.status is Status.STALLED  # the new deadline is now: not ahead
    assert still.timeouts.stall[Stage.CREATED] == 90
    ahead = step(stalled, TimeoutsChanged(TimeoutsChange(stall={"created": 91})), at).state
    assert (ahead.life.status, ahead.life.status_reason) == (
        Status.ACTIVE,
        "stall timeout extended",
    )
    other = step(stalled, TimeoutsChanged(TimeoutsChange(stall={"connected": 999})), at).state
    assert other.life.status is Status.STALLED
    assert other.timeouts.stall[Stage.CONNECTED] == 999
    settle = step(state, TimeoutsChanged(TimeoutsChange(settle_window=7)), at).state
    assert (settle.timeouts.settle_window, settle.timeouts.expire_after) == (7, 600)


def test_a_token_expiry_asks_for_one_token_until_it_is_fetched() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    asked = step(state, TokenExpiryReported(), BASE_TIME)
    assert FetchToken() in asked.commands and asked.state.life.token_refresh_wanted
    again = step(asked.state, TokenExpiryReported(), BASE_TIME)
    assert FetchToken() not in again.commands
    assert step(again.state, Resumed(), BASE_TIME).commands[-1] == FetchToken()
    fetched = step(again.state, TokenFetchFinished(error="boom"), BASE_TIME).state
    assert not fetched.life.token_refresh_wanted
    assert FetchToken() in step(fetched, TokenExpiryReported(), BASE_TIME).commands


# --- announcements ---------------------------------------------------------------------------


def test_the_first_step_announces_the_start_as_it_began() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    assert state.life.model_dump() == {
        **Lifecycle().model_dump(),
        "started_at": BASE_TIME,
        "stage_entered_at": BASE_TIME,
        "start_announce_wanted": True,
    }
    assert state.timeouts == TIMEOUTS and state.timeouts is not TIMEOUTS
    later = BASE_TIME + timedelta(seconds=3)
    first = step(state, StageObserved(Stage.DATA_READY), later)
    assert [type(c) for c in first.commands] == [Publish, Announce, Announce, Announce]
    started, changed, ready = (c.change for c in first.commands[1:])  # type: ignore[union-attr]
    assert started.model_dump() == {
        "type": NoticeType.STARTED,
        "stage": Stage.CREATED,
        "status": Status.ACTIVE,
        "previous_stage": None,
        "previous_status": None,
        "reason": None,
        "at": BASE_TIME,
    }
    assert (changed.type, changed.stage, changed.previous_stage, changed.at) == (
        NoticeType.STAGE_CHANGED,
        Stage.DATA_READY,
        Stage.CREATED,
        later,
    )
    assert (changed.reason, ready.type, ready.stage) == (
        None,
        NoticeType.DATA_READY,
        Stage.DATA_READY,
    )
    assert not first.state.life.start_announce_wanted
    assert step(first.state, Resumed(), later).commands == (
        Publish(Stage.DATA_READY, Status.ACTIVE),
    )


def test_the_end_is_announced_once_with_its_reason() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    state = step(state, TokenExpiryReported(), BASE_TIME).state
    at = BASE_TIME + timedelta(seconds=1)
    failed = step(state, ReconcileFinished(user_not_found=True, error="404"), at)
    assert failed.commands[0] == Publish(Stage.CREATED, Status.FAILED)
    (ending,) = [c.change for c in failed.commands if isinstance(c, Announce)]
    assert (ending.type, ending.reason, ending.previous_status, ending.at) == (
        NoticeType.FAILED,
        "Smile has no record of this user",
        Status.ACTIVE,
        at,
    )
    assert not failed.state.life.token_refresh_wanted
    assert failed.state.life.reconcile.last_error == "404"
    assert step(failed.state, CancelRequested("x"), at).commands == ()


# --- purity, defaults, guards -----------------------------------------------------------------


def test_start_and_step_leave_their_inputs_untouched() -> None:
    timeouts = TIMEOUTS.model_copy(deep=True)
    state = start(timeouts, BASE_TIME)
    timeouts.stall[Stage.CREATED] = 1  # the caller's object, changed afterwards
    assert state.timeouts.stall[Stage.CREATED] == 60
    snapshot = (state.life.model_copy(deep=True), state.timeouts.model_copy(deep=True))
    for event in (
        ReconcileFinished(accounts=3, data={"incomes": 1}, facts_added=1),
        TimeoutsChanged(TimeoutsChange(stall={"created": 5})),
        ClockTick(),
    ):
        step(state, event, BASE_TIME + timedelta(seconds=600))
        assert (state.life, state.timeouts) == snapshot


def test_a_bare_reconciliation_outcome_saw_nothing() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    seen = step(state, ReconcileFinished(accounts=1, skipped=1), BASE_TIME).state
    bare = step(seen, ReconcileFinished(), BASE_TIME).state.life.reconcile
    assert (bare.accounts_seen, bare.archives_seen, bare.tasks_seen) == (0, 0, 0)
    assert (bare.data_seen, bare.records_skipped, bare.facts_added, bare.runs) == ({}, 0, 0, 2)


def test_next_deadline_in_data_ready_is_the_settle_deadline() -> None:
    ready = step(start(TIMEOUTS, BASE_TIME), StageObserved(Stage.DATA_READY), BASE_TIME).state
    assert next_deadline(ready) == BASE_TIME + timedelta(seconds=30)


def test_a_reconciliation_after_the_stall_healed_owes_no_notice() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    healed = step(stalled, StageObserved(Stage.CONNECTED), BASE_TIME + timedelta(seconds=61)).state
    answered = step(healed, ReconcileFinished(for_stall=1), BASE_TIME + timedelta(seconds=62))
    life = answered.state.life
    assert (life.stall_reconcile_wanted, life.stall_notice_wanted) == (False, False)
    resumed = step(answered.state, Resumed(), BASE_TIME + timedelta(seconds=63)).commands
    assert resumed == (Publish(Stage.CONNECTED, Status.ACTIVE),)


def test_a_stall_notice_without_its_times_fails_loudly() -> None:
    """A stall always records when its stage was entered; a lifecycle without it (corrupt) must
    not send a notice with no times."""
    for deadline in (None, BASE_TIME):
        corrupt = Lifecycle(stall_notice_wanted=True, stalls=1, stall_deadline=deadline)
        try:
            step(State(corrupt, TIMEOUTS), Resumed(), BASE_TIME)
        except ValueError as error:
            assert "time the stage was entered" in str(error)
        else:
            raise AssertionError("a notice without times was asked for")


def test_expiry_and_settling_count_a_deadline_within_a_millisecond_as_reached() -> None:
    almost = timedelta(milliseconds=1)
    state = start(Timeouts(stall={}, expire_after=600, settle_window=30), BASE_TIME)
    expire = BASE_TIME + timedelta(seconds=600)
    assert step(state, ClockTick(), expire - almost).state.life.status is Status.EXPIRED
    assert step(state, ClockTick(), expire - 2 * almost).state.life.status is Status.ACTIVE
    ready = step(state, StageObserved(Stage.DATA_READY), BASE_TIME).state
    settle = BASE_TIME + timedelta(seconds=30)
    assert step(ready, ClockTick(), settle - almost).state.life.status is Status.COMPLETED
    assert step(ready, ClockTick(), settle - 2 * almost).state.life.status is Status.ACTIVE


def test_a_stall_notice_already_reported_is_not_sent_when_smile_answers() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    reported = step(stalled, NoticeFinished(stalls=1), BASE_TIME + timedelta(seconds=61)).state
    answered = step(reported, ReconcileFinished(for_stall=1), BASE_TIME + timedelta(seconds=62))
    assert answered.commands == ()
    assert not answered.state.life.stall_announced
