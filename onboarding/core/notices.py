"""Notices to the customer's backend, as pure data and pure rules: which notice a change of the
lifecycle announces, what its body says, and the per-onboarding log that delivers them one at a
time, in sequence order. No Temporal and no I/O: the workflow keeps the log, an activity sends.

A notice's body follows the Standard Webhooks convention ``{type, timestamp, data}``. ``data``
carries the user id, the sequence number (1, 2, 3 … per onboarding, over the types the receiver
chose, so a gap means something is missing), the stage and status after the change, and what
changed. It never carries a link token, a callback token, a secret or a provider's error text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from onboarding.core.models import (
    Account,
    Change,
    DataReceived,
    DeliveryReport,
    DeliveryState,
    NoticeCounts,
    NoticeLog,
    NoticeRecord,
    NoticeType,
    Status,
)

# The notice for each way an onboarding ends.
ENDING_NOTICE: dict[Status, NoticeType] = {
    Status.COMPLETED: NoticeType.COMPLETED,
    Status.EXPIRED: NoticeType.EXPIRED,
    Status.FAILED: NoticeType.FAILED,
    Status.CANCELLED: NoticeType.CANCELLED,
}

# Beyond this many records the oldest delivered ones are forgotten (the log travels in every
# continue-as-new input, so it is bounded); notices to deliver and failed ones are always kept.
MAX_RECORDS = 100


def notice_type(name: str) -> NoticeType:
    """``onboarding.data_ready`` or just ``data_ready``; else a clear error naming the choices."""
    text = name.strip()
    wanted = text if text.startswith("onboarding.") else f"onboarding.{text}"
    try:
        return NoticeType(wanted)
    except ValueError:
        choices = ", ".join(t.value.removeprefix("onboarding.") for t in NoticeType)
        raise ValueError(f"unknown notice type {name!r}; choose from: {choices}") from None


# --- what a notice says -----------------------------------------------------------------------


def compose(
    change: Change,
    user_id: str,
    sequence: int,
    *,
    external_metadata: Mapping[str, Any] | None = None,
    data: Mapping[str, DataReceived] | None = None,
    required_data: Iterable[str] = (),
    accounts: Iterable[Account] = (),
    stalled_since: datetime | None = None,
    stall_deadline: datetime | None = None,
    stalls: int = 0,
) -> dict[str, Any]:
    """A notice's body. Only the facts that matter to its type are included."""
    changes: dict[str, Any] = {}
    if change.previous_stage is not None and change.previous_stage is not change.stage:
        changes["stage"] = {"from": change.previous_stage.value, "to": change.stage.value}
    if change.previous_status is not None and change.previous_status is not change.status:
        changes["status"] = {"from": change.previous_status.value, "to": change.status.value}
    body: dict[str, Any] = {
        "userId": user_id,
        "sequence": sequence,
        "stage": change.stage.value,
        "status": change.status.value,
        "reason": change.reason,
        "changes": changes,
        "externalMetadata": dict(external_metadata) if external_metadata is not None else None,
    }
    if change.type is NoticeType.DATA_READY:
        body["requiredData"] = list(required_data)
        body["data"] = {
            name: {"events": got.events, "items": got.items} for name, got in sorted(
                (data or {}).items()
            )
        }  # fmt: skip
        body["accounts"] = [
            {"accountId": a.account_id, "providers": list(a.providers), "status": a.status.value}
            for a in accounts
        ]
    if change.type is NoticeType.STALLED:
        body["stageEnteredAt"] = _iso(stalled_since)
        body["stallDeadline"] = _iso(stall_deadline)
        body["stalls"] = stalls
    return {"type": change.type.value, "timestamp": _iso(change.at), "data": body}


def as_sent(body: dict[str, Any], external_metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body to send now: with the onboarding's ``externalMetadata`` as it is now, so that a
    notice issued before ``POST /onboardings`` gave it (a webhook can start the onboarding
    first) still carries it. Everything else is as issued."""
    data = body.get("data")
    if external_metadata is None or not isinstance(data, dict):
        return body
    return {**body, "data": {**data, "externalMetadata": dict(external_metadata)}}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


# --- the log ----------------------------------------------------------------------------------


def issue(
    log: NoticeLog, change: Change, notice_id: str, body_for: Any, wanted: Iterable[NoticeType]
) -> NoticeRecord | None:
    """Add the notice for ``change`` if its type is ``wanted``: the next sequence number, the
    body ``body_for(sequence)`` builds. Returns the record, or None when not wanted."""
    if change.type not in set(wanted):
        return None
    log.issued += 1
    record = NoticeRecord(
        id=notice_id,
        type=change.type,
        sequence=log.issued,
        created_at=change.at,
        window_start=change.at,
        body=body_for(log.issued),
    )
    log.records.append(record)
    _trim(log)
    return record


def next_pending(log: NoticeLog) -> NoticeRecord | None:
    """The notice to deliver next: the pending one with the lowest sequence number."""
    pending = [r for r in log.records if r.state is DeliveryState.PENDING]
    return min(pending, key=lambda r: r.sequence) if pending else None


def counts(log: NoticeLog) -> NoticeCounts:
    kept = [r.state for r in log.records]
    return NoticeCounts(
        issued=log.issued,
        pending=kept.count(DeliveryState.PENDING),
        delivered=kept.count(DeliveryState.DELIVERED),
        failed=kept.count(DeliveryState.FAILED),
    )


def has_pending(log: NoticeLog) -> bool:
    return any(r.state is DeliveryState.PENDING for r in log.records)


def failed(log: NoticeLog) -> list[NoticeRecord]:
    return [r for r in log.records if r.state is DeliveryState.FAILED]


def settle_delivered(log: NoticeLog, sequence: int, report: DeliveryReport, at: datetime) -> None:
    """The activity finished with ``report``: delivered, or refused for good by an endpoint."""
    record = _record(log, sequence)
    record.attempts += report.attempts
    record.endpoints = list(report.endpoints)
    last = report.endpoints[-1] if report.endpoints else None
    refused = next((e for e in report.endpoints if not e.delivered), None)
    shown = refused or last
    record.last_status = shown.status if shown is not None else None
    record.last_error = shown.error if shown is not None else None
    record.settled_at = at
    if report.delivered:
        record.state = DeliveryState.DELIVERED
        record.body = {}  # delivered: the body is no longer needed
    else:
        record.state = DeliveryState.FAILED
    _trim(log)


def settle_failed(
    log: NoticeLog, sequence: int, attempts: int, status: int | None, error: str, at: datetime
) -> None:
    """The activity gave up (retries ran out, or the worker cannot send notices at all)."""
    record = _record(log, sequence)
    record.attempts += attempts
    record.state = DeliveryState.FAILED
    record.last_status = status
    record.last_error = error
    record.settled_at = at


def delivery_deadline(record: NoticeRecord, window: timedelta) -> datetime:
    """When retrying ``record`` stops: ``window`` after it was issued (or queued again), so a
    notice waiting behind another one that is retried for days does not get days more."""
    return (record.window_start or record.created_at) + window


def redeliver(log: NoticeLog, sequence: int | None, now: datetime) -> list[int]:
    """Put failed notices back in line: the one numbered ``sequence``, or every failed one.
    Returns the sequence numbers queued again. ``ValueError`` for a notice that is unknown or
    not failed, so that nothing changes on a mistaken request."""
    if sequence is None:
        chosen = failed(log)
    else:
        record = next((r for r in log.records if r.sequence == sequence), None)
        if record is None:
            raise ValueError(f"no notice with sequence {sequence} is kept for this onboarding")
        if record.state is not DeliveryState.FAILED:
            raise ValueError(
                f"notice {sequence} is {record.state.value}; only failed notices are redelivered"
            )
        chosen = [record]
    for record in chosen:
        record.state = DeliveryState.PENDING
        record.settled_at = None
        record.window_start = now  # a new delivery, with a full retry window
    return [r.sequence for r in chosen]


def _record(log: NoticeLog, sequence: int) -> NoticeRecord:
    for record in log.records:
        if record.sequence == sequence:
            return record
    raise KeyError(sequence)


def _trim(log: NoticeLog) -> None:
    excess = len(log.records) - MAX_RECORDS
    if excess <= 0:
        return
    delivered = [r for r in log.records if r.state is DeliveryState.DELIVERED]
    drop = {r.sequence for r in sorted(delivered, key=lambda r: r.sequence)[:excess]}
    log.records = [r for r in log.records if r.sequence not in drop]
