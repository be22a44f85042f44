"""How each call to Smile is retried, chosen per call, as ``workflow.ActivityConfig``s the
workflows pass straight to ``execute_activity``.

- Connection errors, time-outs and 5xx are retried with exponential backoff.
- 429 is retried after Smile's ``Retry-After`` (the activity sets ``next_retry_delay``).
- 400/401/403/404 and malformed answers are never retried: the types below stop at once."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from activities.notify import NOTICE_MAX_RETRY_INTERVAL, NOTICES_NOT_CONFIGURED
from activities.smile_errors import NON_RETRYABLE_TYPES

# Creating a user is not idempotent at Smile: a few attempts only, then the caller hears why.
CREATE_USER = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# Someone is waiting for a link token: retry briskly, give up after three minutes in all.
CREATE_TOKEN = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(minutes=3),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=20),
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# Reconciliation after a stall runs in the background: patient, bounded.
RECONCILE = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=2),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=8,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# Reconciliation an operator asked for: someone is waiting, so two minutes in all.
RECONCILE_NOW = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=1),
    schedule_to_close_timeout=timedelta(minutes=2),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=20),
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    ),
)

# A stall notice is a log line: cheap, retried briefly in case the worker is shutting down.
NOTICE = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=10,
    ),
)

# A notice to the customer's backend is retried the way Svix retries webhooks: soon at first,
# then at most every six hours, for three days (5s, 12.5s, 31s, 78s, 3m, 8m, 20m, 51m, 2h, 5h,
# then 6h: about twenty attempts). The activity posts to its endpoints side by side, each bounded
# by twice ONBOARDING_NOTIFY_TIMEOUT, so two minutes holds an attempt at the default 10s. A
# receiver's Retry-After (429, 503) sets the next delay, capped at the maximum interval. Without
# URLs on the worker (NoticesNotConfigured) retrying cannot help. No heartbeat_timeout: the
# activity heartbeats only to hand the endpoints it settled to its next attempt.
DELIVER_NOTICE = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=2),
    schedule_to_close_timeout=timedelta(days=3),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.5,
        maximum_interval=NOTICE_MAX_RETRY_INTERVAL,
        non_retryable_error_types=[NOTICES_NOT_CONFIGURED],
    ),
)


def longest_wait(config: workflow.ActivityConfig) -> timedelta:
    """How long a caller waiting on an activity with ``config`` may have to wait: its
    schedule-to-close bound (every policy someone waits on has one)."""
    bound = config.get("schedule_to_close_timeout")
    if bound is None:
        raise ValueError("a policy someone waits on needs a schedule_to_close_timeout")
    return bound
