"""The run-time defaults' rules (onboarding/core/defaults.py), as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.defaults import (
    MAX_ACTOR_LENGTH,
    MAX_AUDIT,
    DefaultsChange,
    DefaultsInput,
    DefaultsState,
    apply_change,
    check_change,
    initial_state,
    reset_change,
)
from onboarding.core.models import (
    MAX_TIMEOUT_SECONDS,
    STALLABLE_STAGES,
    Stage,
    Timeouts,
    TimeoutsChange,
    check_timeouts_change,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


# Not the models themselves: st.builds would read their camelCase aliases as parameters and
# draw those too.
def _change(**fields: object) -> TimeoutsChange:
    return TimeoutsChange.model_validate(fields)


def _timeouts(**fields: object) -> Timeouts:
    return Timeouts.model_validate(fields)


seconds = st.one_of(
    st.floats(min_value=0.001, max_value=MAX_TIMEOUT_SECONDS),
    st.floats(allow_nan=True, allow_infinity=True),  # mostly invalid
    st.sampled_from([0.0, -1.0, MAX_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS * 2]),
)
stage_names = st.one_of(st.sampled_from([s.value for s in Stage]), st.text(min_size=1, max_size=12))
changes = st.builds(
    _change,
    stall=st.dictionaries(stage_names, seconds, max_size=4),
    expire_after=st.none() | seconds,
    settle_window=st.none() | seconds,
)
valid_seconds = st.floats(min_value=1, max_value=MAX_TIMEOUT_SECONDS)
stallable = st.sampled_from([s.value for s in STALLABLE_STAGES])
valid_changes = st.builds(
    _change,
    stall=st.dictionaries(stallable, valid_seconds, max_size=4),
    expire_after=st.none() | valid_seconds,
    settle_window=st.none() | valid_seconds,
).filter(lambda c: bool(c.stall) or c.expire_after is not None or c.settle_window is not None)
actors = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")), min_size=1, max_size=40
).filter(str.strip)
timeouts = st.builds(
    _timeouts,
    stall=st.fixed_dictionaries({s: valid_seconds for s in STALLABLE_STAGES}),
    expire_after=valid_seconds,
    settle_window=valid_seconds,
)


def _accepted(check: object, value: object) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


def _is_empty(change: TimeoutsChange) -> bool:
    return not change.stall and change.expire_after is None and change.settle_window is None


@given(changes, actors)
def test_a_change_is_accepted_exactly_when_an_onboardings_timeouts_change_would_be(
    change: TimeoutsChange, actor: str
) -> None:
    expected = not _is_empty(change) and _accepted(check_timeouts_change, change)
    assert _accepted(check_change, DefaultsChange(actor=actor, timeouts=change)) == expected


@given(timeouts, changes, actors)
def test_a_refused_change_leaves_the_state_as_it_was(
    initial: Timeouts, change: TimeoutsChange, actor: str
) -> None:
    state = initial_state(initial)
    before = state.model_copy(deep=True)
    try:
        after = apply_change(state, DefaultsChange(actor=actor, timeouts=change), T0)
    except ValueError:
        after = state
    assert state == before  # never altered in place
    if after is state:
        assert not _accepted(check_change, DefaultsChange(actor=actor, timeouts=change))


@given(timeouts, valid_changes, actors)
def test_a_change_sets_what_it_names_and_keeps_the_rest(
    initial: Timeouts, change: TimeoutsChange, actor: str
) -> None:
    after = apply_change(initial_state(initial), DefaultsChange(actor=actor, timeouts=change), T0)
    new = after.current.timeouts
    for stage in STALLABLE_STAGES:
        assert new.stall[stage] == change.stall.get(stage.value, initial.stall[stage])
    assert new.expire_after == (change.expire_after or initial.expire_after)
    assert new.settle_window == (change.settle_window or initial.settle_window)


@given(timeouts, st.lists(st.tuples(valid_changes, actors), min_size=1, max_size=MAX_AUDIT + 30))
def test_every_change_is_audited_and_the_audit_is_bounded(
    initial: Timeouts, steps: list[tuple[TimeoutsChange, str]]
) -> None:
    state = initial_state(initial)
    seen: list[tuple[int, str, Timeouts, Timeouts]] = []
    for n, (change, actor) in enumerate(steps, start=1):
        old = state.current.timeouts
        state = apply_change(state, DefaultsChange(actor=actor, timeouts=change),
                             T0 + timedelta(minutes=n))  # fmt: skip
        seen.append((n, actor, old, state.current.timeouts))
        assert state.current.revision == n
        assert state.current.changed_by == actor
        assert state.current.changed_at == T0 + timedelta(minutes=n)
    assert len(state.audit) == min(len(steps), MAX_AUDIT)
    assert [(e.revision, e.actor, e.old, e.new) for e in state.audit] == seen[-MAX_AUDIT:]
    # what continue-as-new carries survives its serialisation
    carried = DefaultsInput(state=state)
    assert DefaultsInput.model_validate_json(carried.model_dump_json(by_alias=True)) == carried


@given(timeouts, timeouts)
def test_a_reset_sets_every_value(current: Timeouts, environment: Timeouts) -> None:
    state = DefaultsState(current=initial_state(current).current)
    after = apply_change(state, reset_change("op", environment), T0)
    assert after.current.timeouts == environment


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        ("", "actor must name who"),
        ("   ", "actor must name who"),
        ("x" * (MAX_ACTOR_LENGTH + 1), "at most"),
        ("alice\nbob", "control characters"),
    ],
)
def test_the_actor_is_checked(actor: str, message: str) -> None:
    change = DefaultsChange(actor=actor, timeouts=TimeoutsChange(expire_after=60))
    with pytest.raises(ValueError, match=message):
        check_change(change)
