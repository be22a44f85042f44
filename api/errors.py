"""The service layer's errors as HTTP statuses: one table for the JSON API and the console."""

from __future__ import annotations

from onboarding.service.bulk import BulkNotFound
from onboarding.service.dead_letters import DeadLetterNotFound, StillUnusable
from onboarding.service.notices import NoticesClosed
from onboarding.service.onboardings import (
    BadPageToken,
    CallbacksNotConfigured,
    EventRefused,
    InvalidChange,
    InvalidRequest,
    OnboardingEnded,
    OnboardingError,
    OnboardingNotFound,
    SmileCallFailed,
    TemporalUnavailable,
)

_STATUS_FOR: dict[type[OnboardingError], int] = {
    OnboardingNotFound: 404,
    OnboardingEnded: 409,
    InvalidChange: 422,
    InvalidRequest: 400,
    BadPageToken: 400,
    TemporalUnavailable: 503,
    EventRefused: 422,
    DeadLetterNotFound: 404,
    StillUnusable: 422,
    SmileCallFailed: 502,
    CallbacksNotConfigured: 500,
    NoticesClosed: 409,
    BulkNotFound: 404,
}


def status_for(err: OnboardingError) -> int:
    """The status an error of the service answers with; 500 for one not in the table."""
    return _STATUS_FOR.get(type(err), 500)
