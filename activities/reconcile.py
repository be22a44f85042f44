"""Reconciliation: Smile's own records of a user, turned into events the state machine already
understands (source ``reconcile``), so a missed webhook is made good by the usual merge rules.

Accounts, archives, tasks (``GET /tasks``) and the presence of data (``GET /identities``,
``GET /employments``, ...) are all read; every event id is stable for the same record, so
repeated reconciliations deduplicate. No user data is ever carried: ids, statuses and counts."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from activities.smile_models import (
    DataPresence,
    SmileAccount,
    SmileArchive,
    SmileSnapshot,
    SmileTask,
)
from onboarding.core.datapoints import ENDPOINTS, WEBHOOK_PREFIXES
from onboarding.core.models import CamelModel, Event, Source
from onboarding.core.state_machine import task_status

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

# The core's data type -> (Smile's list endpoint, the webhook's prefix for ``<PREFIX>_ADDED``).
# The facts' key -> (Smile's list endpoint, the webhook prefix its events speak).
DATA_ENDPOINTS: dict[str, tuple[str, str]] = {
    key: (ENDPOINTS[key], prefix) for prefix, key in WEBHOOK_PREFIXES.items()
}
# What is queried when the caller names no required data.
DEFAULT_DATA_TYPES = ("identity", "employments", "incomes")


def data_types_to_query(required_data: list[str] | None) -> list[str]:
    """The known data types among ``required_data`` (all of the defaults for ``None``), in
    order, without duplicates; names Smile has no endpoint for are left out."""
    wanted = DEFAULT_DATA_TYPES if required_data is None else required_data
    return list(dict.fromkeys(d.lower() for d in wanted if d.lower() in DATA_ENDPOINTS))


class Reconciliation(CamelModel):
    checked_at: datetime
    accounts: int
    archives: int
    tasks: int = 0
    data: dict[str, int] = Field(default_factory=dict)  # data type -> items at Smile
    skipped: int = 0  # records whose status Smile did not state (or we do not know)
    events: list[Event]


def _account_event(account: SmileAccount, user_id: str, checked_at: datetime) -> Event | None:
    connection = account.connection
    raw = account.connection_status or (connection.status if connection else None)
    if not raw:
        return None
    status = raw.upper()
    event_type = _ACCOUNT_TYPES.get(status)
    if event_type is None:
        return None
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
    state = archive.state
    if state is None or not state.status:
        return None
    status = state.status.upper()
    event_type = _ARCHIVE_TYPES.get(status)
    if event_type is None:
        return None
    updated = state.updated_at or archive.created_at or checked_at
    return Event(
        id=f"{archive.id}:{status}:{updated.isoformat()}",
        type=event_type,
        source=Source.RECONCILE,
        created_at=updated,
        received_at=checked_at,
        data={
            "userId": user_id,
            "archiveId": archive.id,
            "errorCode": state.error_code or (status if status == "UNSUPPORTED" else None),
            "errorMessage": state.error_message,
        },
    )


def task_outcome(task: SmileTask) -> str | None:
    """``TASK_FINISHED``'s status for a task, ``STARTED`` while it runs, ``None`` if unknown.

    ``Task.status`` is only ``Started``/``Finished``; the spec gives a finished task no
    success flag, but its ``datapoints`` are "the datapoints saved when the task finished":
    a finished task that saved data succeeded. One that saved none is ``FINISHED`` (outcome
    not stated), which never counts as a success. ``SUCCEEDED``/``FAILED`` are taken as is."""
    status = (task.status or "").upper()
    if status in ("SUCCEEDED", "FAILED"):
        return status
    if status == "FINISHED" or (not status and task.finished_at is not None):
        # The same rule as a TASK_FINISHED webhook that states no status.
        return task_status("TASK_FINISHED", {"datapoints": task.datapoints})
    if status == "STARTED":
        return "STARTED"
    return None


def _task_event(task: SmileTask, user_id: str, checked_at: datetime) -> Event | None:
    outcome = task_outcome(task)
    meta = task.metadata
    source_id = meta.source_id if meta else None
    if outcome is None or not source_id:
        return None
    finished = outcome != "STARTED"
    updated = (
        (task.finished_at if finished else None)
        or task.started_at
        or (meta.created_at if meta else None)
        or checked_at
    )
    data: dict[str, object] = {
        "userId": user_id,
        "sourceId": source_id,
        "sourceType": (meta.source_type if meta else None) or "ACCOUNT",
        "taskType": task.type,
        "providers": [meta.provider_id] if meta and meta.provider_id else [],
    }
    if finished:
        data |= {"status": outcome, "errorCode": None}
    return Event(
        id=f"task:{task.id}:{outcome}:{updated.isoformat()}",
        type="TASK_FINISHED" if finished else "TASK_STARTED",
        source=Source.RECONCILE,
        created_at=updated,
        received_at=checked_at,
        data=data,
    )


def _data_event(presence: DataPresence, user_id: str, checked_at: datetime) -> Event | None:
    endpoint = DATA_ENDPOINTS.get(presence.dtype)
    if endpoint is None or presence.count < 1:
        return None
    prefix = endpoint[1]
    return Event(
        # One per type, whatever the count: reconciling again adds nothing to the sums.
        id=f"data:{prefix}",
        type=f"{prefix}_ADDED",
        source=Source.RECONCILE,
        created_at=presence.latest_at or checked_at,
        received_at=checked_at,
        data={"userId": user_id, "count": presence.count},
    )


def reconcile(snapshot: SmileSnapshot, checked_at: datetime) -> Reconciliation:
    user = snapshot.user_id
    events = [_account_event(a, user, checked_at) for a in snapshot.accounts]
    events += [_archive_event(a, user, checked_at) for a in snapshot.archives]
    task_events = [_task_event(t, user, checked_at) for t in snapshot.tasks]
    data_events = [_data_event(d, user, checked_at) for d in snapshot.data]
    records = len(snapshot.accounts) + len(snapshot.archives) + len(snapshot.tasks)
    kept = [e for e in events + task_events if e is not None]
    return Reconciliation(
        checked_at=checked_at,
        accounts=len(snapshot.accounts),
        archives=len(snapshot.archives),
        tasks=len(snapshot.tasks),
        data={d.dtype: d.count for d in snapshot.data},
        skipped=records - len(kept),
        events=kept + [e for e in data_events if e is not None],
    )
