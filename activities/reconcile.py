"""Reconciliation: Smile's own records of a user, turned into events the state machine already
understands (source ``reconcile``), so a missed webhook is made good by the usual merge rules."""

from __future__ import annotations

from datetime import datetime

from activities.smile_models import SmileAccount, SmileArchive, SmileSnapshot
from onboarding.models import CamelModel, Event, Source

_ACCOUNT_TYPES = {
    "PENDING": "ACCOUNT_CREATED",
    "AWAITING_MFA": "ACCOUNT_AWAITING_MFA",
    "CONNECTED": "ACCOUNT_CONNECTED",
    "ERROR": "ACCOUNT_FAILED",
    "DISCONNECTED": "ACCOUNT_DISCONNECTED",
}
_ARCHIVE_TYPES = {
    "STARTED": "ARCHIVE_STARTED",
    "ANALYZED": "ARCHIVE_ANALYZED",
    "ERROR": "ARCHIVE_FAILED",
    "UNSUPPORTED": "ARCHIVE_FAILED",
    "REVOKED": "ARCHIVE_REVOKED",
}


class Reconciliation(CamelModel):
    checked_at: datetime
    accounts: int
    archives: int
    events: list[Event]


def _account_event(account: SmileAccount, user_id: str, checked_at: datetime) -> Event | None:
    status = account.connection_status.upper()
    event_type = _ACCOUNT_TYPES.get(status)
    if event_type is None:
        return None
    connection = account.connection
    updated = (connection.updated_at if connection else None) or account.created_at or checked_at
    data = {
        "userId": user_id,
        "accountId": account.id,
        "providers": [account.provider_id] if account.provider_id else [],
        "errorCode": connection.error_code if connection else None,
        "errorMessage": connection.error_message if connection else None,
    }
    return Event(
        # Same record, same id: repeated reconciliations deduplicate.
        id=f"{account.id}:{status}:{updated.isoformat()}",
        type=event_type,
        source=Source.RECONCILE,
        created_at=updated,
        received_at=checked_at,
        data=data,
    )


def _archive_event(archive: SmileArchive, user_id: str, checked_at: datetime) -> Event | None:
    status = archive.state.status.upper()
    event_type = _ARCHIVE_TYPES.get(status)
    if event_type is None:
        return None
    updated = archive.state.updated_at or archive.created_at or checked_at
    return Event(
        id=f"{archive.id}:{status}:{updated.isoformat()}",
        type=event_type,
        source=Source.RECONCILE,
        created_at=updated,
        received_at=checked_at,
        data={
            "userId": user_id,
            "archiveId": archive.id,
            "errorCode": archive.state.error_code or (status if status == "UNSUPPORTED" else None),
            "errorMessage": archive.state.error_message,
        },
    )


def reconcile(snapshot: SmileSnapshot, checked_at: datetime) -> Reconciliation:
    events = [_account_event(a, snapshot.user_id, checked_at) for a in snapshot.accounts]
    events += [_archive_event(a, snapshot.user_id, checked_at) for a in snapshot.archives]
    return Reconciliation(
        checked_at=checked_at,
        accounts=len(snapshot.accounts),
        archives=len(snapshot.archives),
        events=[e for e in events if e is not None],
    )
