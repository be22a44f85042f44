"""How long the spool's drainer waits before trying one user's events again."""

from __future__ import annotations


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Exponential from ``base`` (attempt 0) doubling up to ``cap``, less up to a ``jitter``
    fraction (a random number in ``[0, 1)`` chosen by the caller), so replicas that failed
    together do not retry together."""
    if attempt < 0 or base <= 0 or cap < base or not 0 <= jitter < 1:
        raise ValueError("retry_delay needs attempt >= 0, 0 < base <= cap, 0 <= jitter < 1")
    exponent = min(attempt, 62)  # 2**62 * base is far past any cap; avoids a huge float
    return min(cap, base * 2.0**exponent) * (1.0 - jitter)
