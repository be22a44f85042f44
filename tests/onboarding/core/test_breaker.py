"""The circuit breaker's rules, as a model: what it admits and when it opens and closes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.breaker import Breaker, BreakerState, admit, failed, succeeded


def test_closed_admits_everyone_until_threshold_failures_in_a_row() -> None:
    breaker = Breaker(threshold=3, cooldown=5.0)
    for n in range(2):
        admitted, breaker = admit(breaker, 10.0 + n)
        assert admitted
        breaker = failed(breaker, 10.0 + n)
        assert breaker.state is BreakerState.CLOSED
    breaker = failed(breaker, 12.0)
    assert (breaker.state, breaker.since) == (BreakerState.OPEN, 12.0)


def test_a_success_resets_the_count() -> None:
    breaker = failed(failed(Breaker(threshold=3), 1.0), 2.0)
    breaker = succeeded(breaker)
    breaker = failed(failed(breaker, 3.0), 4.0)
    assert breaker.state is BreakerState.CLOSED


def test_open_refuses_until_the_cooldown_then_lets_one_probe_through() -> None:
    breaker = failed(Breaker(threshold=1, cooldown=5.0), 100.0)
    assert admit(breaker, 104.9) == (False, breaker)
    admitted, probing = admit(breaker, 105.0)
    assert admitted and probing.state is BreakerState.HALF_OPEN and probing.since == 105.0
    # Everyone else spools while the probe is out.
    assert admit(probing, 106.0)[0] is False
    assert succeeded(probing).state is BreakerState.CLOSED
    reopened = failed(probing, 107.0)
    assert (reopened.state, reopened.since) == (BreakerState.OPEN, 107.0)


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    _, probing = admit(failed(Breaker(threshold=1, cooldown=5.0), 0.0), 5.0)
    assert admit(probing, 9.9)[0] is False
    admitted, again = admit(probing, 10.0)
    assert admitted and again.state is BreakerState.HALF_OPEN and again.since == 10.0


_steps = st.lists(st.tuples(st.sampled_from(["admit", "ok", "fail"]), st.floats(0, 3)), max_size=60)


@given(st.integers(1, 5), st.floats(0.5, 10), _steps)
def test_against_a_simple_model(
    threshold: int, cooldown: float, steps: list[tuple[str, float]]
) -> None:
    """A second, plain description: admitted iff closed, or the cooldown since it opened (or
    since the last probe) has passed; opens after ``threshold`` failures in a row while
    closed, or on any failure otherwise; closes on any success."""
    breaker = Breaker(threshold=threshold, cooldown=cooldown)
    closed, in_a_row, since, now = True, 0, 0.0, 0.0
    for action, elapsed in steps:
        now += elapsed
        if action == "admit":
            expected = closed or now - since >= cooldown
            admitted, breaker = admit(breaker, now)
            assert admitted is expected
            if admitted and not closed:
                since = now
        elif action == "ok":
            breaker = succeeded(breaker)
            closed, in_a_row = True, 0
        else:
            breaker = failed(breaker, now)
            in_a_row += 1
            if not closed or in_a_row >= threshold:
                closed, in_a_row, since = False, 0, now
        assert (breaker.state is BreakerState.CLOSED) is closed
