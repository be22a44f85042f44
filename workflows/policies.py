"""How each call to Smile is retried, chosen per call.

- Connection errors, time-outs and 5xx are retried with exponential backoff.
- 429 is retried after Smile's ``Retry-After`` (the activity sets ``next_retry_delay``).
- 400/401/403/404 and malformed answers are never retried: the types below stop at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from activities.smile_errors import NON_RETRYABLE_TYPES


@dataclass(frozen=True)
class CallOptions:
    start_to_close: timedelta
    retry: RetryPolicy
    schedule_to_close: timedelta | None = None


# Creating a user is not idempotent at Smile: a few attempts only, then the caller hears why.
CREATE_USER = CallOptions(
    start_to_close=timedelta(seconds=30),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# Someone is waiting for a link token: retry briskly, give up after three minutes in all.
CREATE_TOKEN = CallOptions(
    start_to_close=timedelta(seconds=30),
    schedule_to_close=timedelta(minutes=3),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=20),
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# Reconciliation runs in the background when a user stalls: patient, bounded.
RECONCILE = CallOptions(
    start_to_close=timedelta(minutes=2),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=8,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# A stall notice is a log line: cheap, retried briefly in case the worker is shutting down.
NOTICE = CallOptions(
    start_to_close=timedelta(seconds=30),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=10,
    ),
)
