"""The lifecycle's rules, each a property of the pure reducer over any sequence of inputs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core.lifecycle import (
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
    MAX_TIMEOUT_SECONDS,
    Lifecycle,
    NoticeType,
    Stage,
    Status,
    Timeouts,
    TimeoutsChange,
    check_timeouts_change,
)
from tests.smile_samples import BASE_TIME

TIMEOUTS = Timeouts(
    stall={Stage.CREATED: 60, Stage.ACCOUNT_CREATED: 60, Stage.CONNECTED: 120, Stage.UPLOADS: 60},
    expire_after=600,
    settle_window=30,
)

INPUTS: st.SearchStrategy[Input] = st.one_of(
    st.builds(StageObserved, st.sampled_from(list(Stage))),
    st.just(ClockTick()),
    st.just(ClockTick()),
    st.just(TokenExpiryReported()),
    st.just(TokenFetchFinished()),
    st.builds(NoticeFinished, st.integers(0, 3), st.sampled_from([None, "notice failed"])),
    st.builds(
        ReconcileFinished,
        for_stall=st.none() | st.integers(0, 3),
        error=st.sampled_from([None, "Smile is down"]),
        user_not_found=st.booleans().map(lambda b: b and False),  # not-found has its own test
        facts_added=st.integers(0, 3),
    ),
    st.builds(
        TimeoutsChanged,
        st.builds(
            TimeoutsChange,
            stall=st.dictionaries(
                st.sampled_from(["created", "account_created", "connected", "uploads"]),
                st.integers(1, 300).map(float),
                max_size=2,
            ),
            expire_after=st.none() | st.integers(1, 900).map(float),
        ),
    ),
    st.just(Resumed()),
)
CANCEL = st.builds(CancelRequested, st.just("operator"))


@st.composite
def runs(draw: st.DrawFn, inputs: st.SearchStrategy[Input] = INPUTS) -> list[tuple[Input, int]]:
    """Inputs with the seconds that pass before each (time only moves forward)."""
    return draw(st.lists(st.tuples(inputs, st.integers(0, 200)), max_size=30))


def play(
    journey: list[tuple[Input, int]], state: State | None = None
) -> tuple[State, datetime, list[tuple[Input, tuple[Command, ...]]]]:
    now = BASE_TIME
    state = state or start(TIMEOUTS, now)
    log = []
    for event, wait in journey:
        now += timedelta(seconds=wait)
        decision = step(state, event, now)
        state = decision.state
        log.append((event, decision.commands))
    return state, now, log


@settings(max_examples=300, deadline=None)
@given(before=runs(), after=runs(INPUTS | CANCEL))
def test_the_end_is_final(before: list[tuple[Input, int]], after: list[tuple[Input, int]]) -> None:
    state, _, _ = play([*before, (CancelRequested("operator"), 1)])
    assert state.life.status.is_terminal  # cancelled, or it had completed or expired before
    ended = state.life.model_dump()
    later, _, log = play([*after, (ReconcileFinished(user_not_found=True), 1)], state)
    assert later.life.model_dump() == ended  # not even Smile's "no such user" changes it
    assert all(commands == () for _, commands in log)
    assert next_deadline(later) is None


@settings(max_examples=300, deadline=None)
@given(journey=runs())
def test_every_deadline_is_derived_from_the_current_state(journey: list[tuple[Input, int]]) -> None:
    state, _, _ = play(journey)
    life, timeouts = state.life, state.timeouts
    due = deadlines(state)
    if life.status.is_terminal:
        assert next_deadline(state) is None
        return
    assert life.stage_entered_at is not None
    if life.stage is Stage.DATA_READY:
        assert life.data_ready_at is not None
        assert due.settle == life.data_ready_at + timedelta(seconds=timeouts.settle_window)
    else:
        assert due.expire == life.stage_entered_at + timedelta(seconds=timeouts.expire_after)
        assert due.stall == life.stage_entered_at + timedelta(seconds=timeouts.stall[life.stage])
    # A timeout changed now moves the deadline now.
    longer = TimeoutsChange(expire_after=timeouts.expire_after + 100, settle_window=99)
    moved = step(state, TimeoutsChanged(longer), life.stage_entered_at).state
    if life.data_ready_at is not None and life.stage is Stage.DATA_READY:
        assert deadlines(moved).settle == life.data_ready_at + timedelta(seconds=99)
    elif due.expire is not None:
        assert deadlines(moved).expire == due.expire + timedelta(seconds=100)


@settings(max_examples=300, deadline=None)
@given(journey=runs())
def test_data_ready_at_is_when_the_stage_last_became_data_ready(
    journey: list[tuple[Input, int]],
) -> None:
    now = BASE_TIME
    state = start(TIMEOUTS, now)
    expected = None
    for event, wait in journey:
        now += timedelta(seconds=wait)
        was = state.life.stage
        state = step(state, event, now).state
        if state.life.stage is Stage.DATA_READY and was is not Stage.DATA_READY:
            expected = now
    assert state.life.data_ready_at == expected


@settings(max_examples=300, deadline=None)
@given(journey=runs())
def test_every_open_wish_survives_continue_as_new(journey: list[tuple[Input, int]]) -> None:
    state, now, _ = play(journey)
    carried = Lifecycle.model_validate_json(state.life.model_dump_json())  # the next run's input
    commands = step(State(carried, state.timeouts), Resumed(), now).commands
    life = state.life
    assert (FetchToken() in commands) is life.token_refresh_wanted
    assert (Reconcile(life.stalls) in commands) is life.stall_reconcile_wanted
    notices = [c for c in commands if isinstance(c, NotifyStalled)]
    assert bool(notices) is (life.stall_notice_wanted and not life.stall_reconcile_wanted)
    assert life.status.is_terminal or commands[0] == Publish(life.stage, life.status)


@settings(max_examples=300, deadline=None)
@given(journey=runs())
def test_a_failed_notice_or_reconciliation_is_never_fatal(journey: list[tuple[Input, int]]) -> None:
    state, _, _ = play(journey)
    assert state.life.status is not Status.FAILED  # only Smile's "no such user" fails it
    if state.life.status.is_terminal:
        assert state.life.status in (Status.COMPLETED, Status.EXPIRED)


@settings(max_examples=300, deadline=None)
@given(journey=runs())
def test_each_wish_is_asked_for_once_until_its_outcome(journey: list[tuple[Input, int]]) -> None:
    _, _, log = play(journey)
    asked: dict[Command, int] = {}
    for event, commands in log:
        if isinstance(event, Resumed):
            asked = {}  # a new run: in-flight work of the old one is gone
        for command in commands:
            if not isinstance(command, Publish):
                asked[command] = asked.get(command, 0) + 1
                assert asked[command] == 1, command  # never the same work twice at once
        if isinstance(event, TokenFetchFinished):
            asked.pop(FetchToken(), None)


def test_a_stall_reconciles_first_and_notifies_only_if_still_stalled() -> None:
    state = step(start(TIMEOUTS, BASE_TIME), Resumed(), BASE_TIME).state  # its start announced
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60))
    assert stalled.state.life.status is Status.STALLED
    assert stalled.commands == (Publish(Stage.CREATED, Status.STALLED), Reconcile(1))
    # Smile's records show nothing new: now tell.
    quiet = step(stalled.state, ReconcileFinished(for_stall=1), BASE_TIME + timedelta(seconds=61))
    notice, announce = quiet.commands
    assert isinstance(notice, NotifyStalled)
    assert isinstance(announce, Announce) and announce.change.type is NoticeType.STALLED
    assert (notice.stage, notice.stalls) == (Stage.CREATED, 1)
    assert notice.deadline == BASE_TIME + timedelta(seconds=60)
    # Smile's records moved the stage: nobody needs telling.
    healed = step(stalled.state, StageObserved(Stage.CONNECTED), BASE_TIME + timedelta(seconds=61))
    assert healed.state.life.status is Status.ACTIVE
    after = step(
        healed.state,
        ReconcileFinished(for_stall=1, facts_added=1),
        BASE_TIME + timedelta(seconds=61),
    )
    assert after.commands == ()


def test_only_smile_saying_the_user_does_not_exist_fails_it_and_only_once() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    failed = step(state, ReconcileFinished(user_not_found=True), BASE_TIME).state
    assert (failed.life.status, failed.life.status_reason) == (
        Status.FAILED,
        "Smile has no record of this user",
    )
    cancelled = step(state, CancelRequested("operator"), BASE_TIME).state
    late = step(cancelled, ReconcileFinished(user_not_found=True), BASE_TIME).state
    assert late.life.status is Status.CANCELLED


def test_a_longer_stall_timeout_unstalls_and_withdraws_the_notice() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    stalled = step(state, ClockTick(), BASE_TIME + timedelta(seconds=60)).state
    extended = step(
        stalled,
        TimeoutsChanged(TimeoutsChange(stall={"created": 3600})),
        BASE_TIME + timedelta(seconds=61),
    ).state
    assert extended.life.status is Status.ACTIVE
    assert not extended.life.stall_notice_wanted
    later = BASE_TIME + timedelta(seconds=62)
    assert step(extended, ReconcileFinished(for_stall=1), later).commands == ()


def test_data_ready_regained_moves_the_settle_deadline() -> None:
    t0 = BASE_TIME
    ready = step(start(TIMEOUTS, t0), StageObserved(Stage.DATA_READY), t0).state
    more_required = step(ready, StageObserved(Stage.CONNECTED), t0 + timedelta(seconds=10)).state
    regained_at = t0 + timedelta(seconds=100)  # past the first settle deadline (t0 + 30 s)
    again = step(more_required, StageObserved(Stage.DATA_READY), regained_at).state
    assert again.life.data_ready_at == regained_at
    assert deadlines(again).settle == regained_at + timedelta(seconds=30)
    assert step(again, ClockTick(), regained_at).state.life.status is Status.ACTIVE


def test_a_stalls_wishes_are_settled_only_by_their_own_outcomes() -> None:
    t = BASE_TIME
    first = step(start(TIMEOUTS, t), ClockTick(), t + timedelta(seconds=60)).state
    # An operator's reconciliation finishing first settles nothing the stall waits for.
    on_demand = step(first, ReconcileFinished(), t + timedelta(seconds=61))
    assert on_demand.commands == ()
    assert on_demand.state.life.stall_reconcile_wanted
    notified = step(on_demand.state, ReconcileFinished(for_stall=1), t + timedelta(seconds=62))
    assert [type(c) for c in notified.commands] == [NotifyStalled, Announce]
    # Progress, then a second stall, while the first notice is still being delivered.
    moved = step(notified.state, StageObserved(Stage.ACCOUNT_CREATED), t + timedelta(seconds=63))
    second = step(moved.state, ClockTick(), t + timedelta(seconds=123))
    assert second.commands[-1] == Reconcile(2)
    late = step(second.state, NoticeFinished(stalls=1), t + timedelta(seconds=124)).state
    assert late.life.stall_notice_wanted  # the first notice's outcome is not the second's
    told = step(late, ReconcileFinished(for_stall=2), t + timedelta(seconds=125))
    notice, _announce = told.commands
    assert isinstance(notice, NotifyStalled) and notice.stalls == 2


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf"), 1e12])
def test_no_timeout_an_update_accepts_can_break_a_deadline(seconds: float) -> None:
    # Validators run check_timeouts_change; what it lets through must never overflow a deadline.
    for change in (TimeoutsChange(expire_after=seconds), TimeoutsChange(stall={"created": seconds}),
                   TimeoutsChange(settle_window=seconds)):  # fmt: skip
        with pytest.raises(ValueError, match=r"positive number of seconds|at most ten years"):
            check_timeouts_change(change)
    longest = TimeoutsChange(expire_after=MAX_TIMEOUT_SECONDS, settle_window=MAX_TIMEOUT_SECONDS)
    check_timeouts_change(longest)
    state = step(start(TIMEOUTS, BASE_TIME), TimeoutsChanged(longest), BASE_TIME).state
    assert next_deadline(state) is not None
