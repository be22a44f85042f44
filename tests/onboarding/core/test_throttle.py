from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.throttle import FailureThrottle

T0 = datetime(2026, 11, 30, tzinfo=UTC)
WINDOW = timedelta(seconds=60)

steps = st.lists(
    st.tuples(st.sampled_from(["fail", "ok", "ask"]), st.sampled_from(["a", "b", "c"]),
              st.integers(min_value=0, max_value=40)),
    max_size=80,
)  # fmt: skip


@given(steps)
def test_the_throttle_agrees_with_a_plain_list_of_failures(
    plan: list[tuple[str, str, int]],
) -> None:
    """Model: every failure kept with its time; waiting is due once ``limit`` fall in the window,
    until the oldest of the last ``limit`` leaves it; a success forgets the caller."""
    throttle = FailureThrottle(limit=3, window=WINDOW)
    failures: dict[str, list[datetime]] = {}
    now = T0
    for action, caller, advance in plan:
        now += timedelta(seconds=advance)
        recent = [t for t in failures.get(caller, []) if t + WINDOW > now]
        expected = recent[-3] + WINDOW - now if len(recent) >= 3 else None
        assert throttle.retry_after(caller, now) == expected
        if action == "fail":
            failures.setdefault(caller, []).append(now)
            throttle.failed(caller, now)
        elif action == "ok":
            failures.pop(caller, None)
            throttle.succeeded(caller)


def test_waiting_ends_when_the_oldest_failure_leaves_the_window() -> None:
    throttle = FailureThrottle(limit=2, window=WINDOW)
    throttle.failed("a", T0)
    throttle.failed("a", T0 + timedelta(seconds=10))
    assert throttle.retry_after("a", T0 + timedelta(seconds=20)) == timedelta(seconds=40)
    assert throttle.retry_after("a", T0 + WINDOW) is None
    assert throttle.retry_after("b", T0) is None


def test_it_remembers_a_bounded_number_of_callers() -> None:
    throttle = FailureThrottle(limit=1, window=WINDOW, max_callers=3)
    for caller in "abcd":
        throttle.failed(caller, T0)
    assert len(throttle) == 3
    assert throttle.retry_after("a", T0) is None  # the least recent was forgotten
    assert throttle.retry_after("d", T0) == WINDOW


@pytest.mark.parametrize("bad", [{"limit": 0}, {"window": timedelta(0)}, {"max_callers": 0}])
def test_nonsense_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        FailureThrottle(**bad)  # type: ignore[arg-type]
