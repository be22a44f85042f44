"""Notice deliveries as an operator sees them: the onboarding's own log (what was sent, to
whom, with what answer) joined with what Temporal knows of the delivery in flight (its attempt,
the last failure, when it runs next); and redelivery of failed notices."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.exceptions import ApplicationError

from activities.notify import NOTICE_ENDPOINT_UNAVAILABLE
from onboarding.core import notices
from onboarding.core.models import (
    CamelModel,
    DeliveryState,
    EndpointOutcome,
    NoticeCounts,
    NoticeRecord,
    NoticeType,
)
from onboarding.service.onboardings import OnboardingEnded, OnboardingError, Onboardings


class NoticeDelivery(CamelModel):
    id: str  # the webhook-id
    type: NoticeType
    sequence: int
    created_at: datetime
    state: DeliveryState
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None  # while it is being retried
    settled_at: datetime | None = None
    endpoints: list[EndpointOutcome] = Field(default_factory=list)


class NoticeList(CamelModel):
    user_id: str
    enabled: bool  # notices were on when this onboarding started
    counts: NoticeCounts
    notices: list[NoticeDelivery]  # by sequence; the oldest delivered ones may be forgotten


class NoticesClosed(OnboardingError):
    def __init__(self, user_id: str) -> None:
        super().__init__(
            f"the onboarding for user {user_id!r} has ended and closed: its notices can no "
            "longer be redelivered (an ended onboarding with failed notices stays open for "
            "ONBOARDING_NOTIFY_HOLD)"
        )


class Notices:
    def __init__(self, onboardings: Onboardings) -> None:
        self._onboardings = onboardings

    async def deliveries(self, user_id: str) -> NoticeList:
        log = await self._onboardings.notice_log(user_id)
        view = await self._onboardings.get(user_id)
        in_flight = await self._in_flight(user_id) if notices.has_pending(log) else {}
        rows = []
        for record in sorted(log.records, key=lambda r: r.sequence):
            row = _row(record)
            pending = in_flight.get(f"notice-{record.sequence}.{record.deliveries}")
            if pending is not None and record.state is DeliveryState.PENDING:
                row = await self._with_attempt(row, record, pending)
            rows.append(row)
        return NoticeList(
            user_id=user_id,
            enabled=view.notices is not None,
            counts=notices.counts(log),
            notices=rows,
        )

    async def redeliver(self, user_id: str, sequence: int | None) -> list[int]:
        try:
            return await self._onboardings.redeliver_notices(user_id, sequence)
        except OnboardingEnded:
            raise NoticesClosed(user_id) from None

    async def _in_flight(self, user_id: str) -> dict[str, PendingActivityInfo]:
        description = await self._onboardings.describe(user_id)
        pending = description.raw_description.pending_activities
        return {activity.activity_id: activity for activity in pending}

    async def _with_attempt(
        self, row: NoticeDelivery, record: NoticeRecord, pending: PendingActivityInfo
    ) -> NoticeDelivery:
        """The attempts made so far (the one running included), and how the last one ended.
        While it waits to be retried, Temporal's ``attempt`` is already the next one's."""
        waiting = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        made = pending.attempt - 1 if waiting else pending.attempt
        update: dict[str, object] = {"attempts": record.attempts + max(made, 0)}
        if pending.HasField("next_attempt_schedule_time"):
            update["next_attempt_at"] = pending.next_attempt_schedule_time.ToDatetime(UTC)
        if pending.HasField("last_failure"):
            converter = self._onboardings.client.data_converter
            failure = await converter.decode_failure(pending.last_failure)
            update["last_error"] = (
                failure.message if isinstance(failure, ApplicationError) else str(failure)
            )
            update["last_status"] = _status_of(failure)
        return row.model_copy(update=update)


def _row(record: NoticeRecord) -> NoticeDelivery:
    return NoticeDelivery(
        id=record.id,
        type=record.type,
        sequence=record.sequence,
        created_at=record.created_at,
        state=record.state,
        attempts=record.attempts,
        last_status=record.last_status,
        last_error=record.last_error,
        settled_at=record.settled_at,
        endpoints=record.endpoints,
    )


def _status_of(failure: BaseException) -> int | None:
    if not isinstance(failure, ApplicationError) or failure.type != NOTICE_ENDPOINT_UNAVAILABLE:
        return None
    details = failure.details[0] if failure.details else None
    if not isinstance(details, dict):
        return None
    statuses = [e.get("status") for e in details.get("endpoints", []) if isinstance(e, dict)]
    return next((s for s in reversed(statuses) if isinstance(s, int)), None)
