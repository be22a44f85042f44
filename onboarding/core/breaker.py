"""The circuit breaker in front of Temporal on the webhook path, as pure rules.

A hung Temporal (connections accepted, no answers) costs every caller the whole ingest
time-out. After ``threshold`` failures in a row the breaker opens: callers go straight to the
spool for ``cooldown`` seconds. Then one caller is let through as a probe (half-open); its
success closes the breaker, its failure opens it again. A probe that never reports back (its
caller went away) is replaced after another ``cooldown``. Times are monotonic seconds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"  # Temporal is asked first
    OPEN = "open"  # straight to the spool
    HALF_OPEN = "half_open"  # one probe is asking Temporal; everyone else spools


@dataclass(frozen=True)
class Breaker:
    threshold: int = 3
    cooldown: float = 5.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # in a row, while closed
    since: float = 0.0  # when it opened, or when the probe was let through


def admit(breaker: Breaker, now: float) -> tuple[bool, Breaker]:
    """May this caller ask Temporal? The breaker as it is after the answer."""
    if breaker.state is BreakerState.CLOSED:
        return True, breaker
    if now - breaker.since < breaker.cooldown:
        return False, breaker
    # Open long enough, or the last probe went quiet: this caller is the probe.
    return True, replace(breaker, state=BreakerState.HALF_OPEN, since=now)


def succeeded(breaker: Breaker) -> Breaker:
    return replace(breaker, state=BreakerState.CLOSED, failures=0, since=0.0)


def failed(breaker: Breaker, now: float) -> Breaker:
    if breaker.state is BreakerState.CLOSED and breaker.failures + 1 < breaker.threshold:
        return replace(breaker, failures=breaker.failures + 1)
    return replace(breaker, state=BreakerState.OPEN, failures=0, since=now)
