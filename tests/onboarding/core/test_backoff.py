from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.backoff import retry_delay


def test_doubles_from_base_up_to_the_cap() -> None:
    delays = [retry_delay(n, base=1.0, cap=30.0, jitter=0.0) for n in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_takes_off_its_fraction() -> None:
    assert retry_delay(2, base=1.0, cap=30.0, jitter=0.25) == 3.0


@given(
    st.integers(0, 10_000),
    st.floats(0.01, 10),
    st.floats(0, 100),
    st.floats(0, 0.99),
)
def test_always_within_bounds_and_never_shorter_for_a_later_attempt(
    attempt: int, base: float, extra: float, jitter: float
) -> None:
    cap = base + extra
    delay = retry_delay(attempt, base=base, cap=cap, jitter=jitter)
    assert 0 < delay <= cap
    assert delay <= retry_delay(attempt + 1, base=base, cap=cap, jitter=jitter)


@pytest.mark.parametrize(
    "attempt, base, cap, jitter", [(-1, 1, 2, 0), (0, 0, 2, 0), (0, 3, 2, 0), (0, 1, 2, 1.0)]
)
def test_nonsense_is_refused(attempt: int, base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="retry_delay needs"):
        retry_delay(attempt, base=base, cap=cap, jitter=jitter)
