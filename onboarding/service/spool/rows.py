"""Rows to values and back, the same for both backends: times are stored as epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from onboarding.service.spool.base import DeadLetter, SpooledEvent


def epoch(moment: datetime) -> float:
    if moment.utcoffset() is None:
        raise ValueError("the spool takes aware datetimes only")
    return moment.timestamp()


def utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def event_from_row(row: Any) -> SpooledEvent:
    seq, user_id, event_id, created_at, spooled_at, payload, attempts = row
    return SpooledEvent(
        seq, user_id, event_id, utc(created_at), utc(spooled_at), bytes(payload), attempts
    )


def letter_from_row(row: Any) -> DeadLetter:
    id_, received_at, reason, event_id, type_, body, replays, last_error = row
    return DeadLetter(
        id_, utc(received_at), reason, event_id, type_, bytes(body), replays, last_error
    )
