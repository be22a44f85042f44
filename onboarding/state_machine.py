"""The pure onboarding state machine: ``apply(journal, event) -> journal`` and
``derive_stage(facts) -> stage``. No Temporal, no I/O, no clock.

Every fact merges commutatively, so any permutation of the same events (with any duplicates)
ends in the same facts: sets are unions, counters are sums over deduplicated events, and every
status is last-writer-wins ordered by ``(proof beats hint, createdAt, event id, value)``."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from onboarding.catalogue import Effect, EventSpec, spec_for
from onboarding.models import (
    Account,
    Archive,
    ConnectionStatus,
    DataReceived,
    Event,
    EventRecord,
    Facts,
    Invite,
    Journal,
    Source,
    Stage,
    SyncTask,
)

DEFAULT_DEDUPE_WINDOW = 10_000
DEFAULT_HISTORY_LIMIT = 500


def new_journal(user_id: str) -> Journal:
    return Journal(facts=Facts(user_id=user_id))


def apply(
    journal: Journal,
    event: Event,
    *,
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Journal:
    """Return the journal after ``event``; the input is left untouched."""
    machine = StateMachine(journal.model_copy(deep=True), dedupe_window, history_limit)
    machine.apply(event)
    return machine.journal


def apply_all(journal: Journal, events: Iterable[Event], **limits: int) -> Journal:
    machine = StateMachine(journal.model_copy(deep=True), **limits)
    for event in events:
        machine.apply(event)
    return machine.journal


class StateMachine:
    """Applies events to a journal it owns, in place, with an index for cheap dedupe.

    The workflow keeps one of these for its lifetime; :func:`apply` wraps it purely."""

    def __init__(
        self,
        journal: Journal,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> None:
        self.journal = journal
        self._seen = set(journal.seen)
        self._dedupe_window = dedupe_window
        self._history_limit = history_limit

    def apply(self, event: Event) -> bool:
        """Apply one event; False if it was a duplicate and changed nothing."""
        key = event.dedupe_key
        if key in self._seen:
            self.journal.duplicates_ignored += 1
            return False
        self._remember(key)
        spec = spec_for(event.source, event.type)
        facts = self.journal.facts
        if facts.last_event_at is None or event.created_at > facts.last_event_at:
            facts.last_event_at = event.created_at
        if spec is None:
            if event.type not in facts.unknown_types:
                bisect.insort(facts.unknown_types, event.type)
        else:
            _EFFECTS[spec.effect](facts, event, spec)
        self._record(event, known=spec is not None)
        return True

    def _remember(self, key: str) -> None:
        self._seen.add(key)
        self.journal.seen.append(key)
        while len(self.journal.seen) > self._dedupe_window:
            self._seen.discard(self.journal.seen.pop(0))

    def _record(self, event: Event, *, known: bool) -> None:
        record = EventRecord(
            id=event.id,
            type=event.type,
            source=event.source,
            created_at=event.created_at,
            received_at=event.received_at,
            known=known,
        )
        history = self.journal.history
        bisect.insort(history, record, key=lambda r: (r.created_at, r.source.value, r.id))
        if len(history) > self._history_limit:
            del history[0]
        self.journal.events_total += 1


# --- derived facts ---------------------------------------------------------------------------


def derive_stage(facts: Facts, required_data: Iterable[str]) -> Stage:
    if is_data_ready(facts, required_data):
        return Stage.DATA_READY
    if has_uploads(facts):
        return Stage.UPLOADS
    if any(a.status is ConnectionStatus.CONNECTED for a in facts.accounts.values()):
        return Stage.CONNECTED
    if facts.accounts:
        return Stage.ACCOUNT_CREATED
    return Stage.CREATED


def is_data_ready(facts: Facts, required_data: Iterable[str]) -> bool:
    """Data is ready when Smile says a sync task succeeded for a proven-connected account or an
    archive, or when every required data type has arrived. Widget claims never count."""
    for task in facts.tasks.values():
        if task.kind != "task" or not task.succeeded:
            continue
        if task.source_type == "ARCHIVE":
            return True
        account = facts.accounts.get(task.source_id)
        if task.source_type == "ACCOUNT" and account is not None and account.ever_connected:
            return True
    required = list(required_data)
    return bool(required) and all(dtype in facts.data for dtype in required)


def has_uploads(facts: Facts) -> bool:
    live_archive = any(a.status in ("started", "analyzed") for a in facts.archives.values())
    return live_archive or facts.widget.uploads_created > facts.widget.uploads_removed


# --- effects: one per catalogue entry kind --------------------------------------------------


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _providers(data: dict[str, Any]) -> list[str]:
    found = [p for p in data.get("providers") or [] if isinstance(p, str)]
    provider_id = _str(data, "providerId")
    if provider_id:
        found.append(provider_id)
    return found


def _rank(
    source: Source, at: datetime, event_id: str, value: str
) -> tuple[bool, datetime, str, str]:
    return (source.is_proof, at, event_id, value)


def _user(facts: Facts, event: Event, spec: EventSpec) -> None:
    if facts.user_created_at is None or event.created_at < facts.user_created_at:
        facts.user_created_at = event.created_at


def _account(facts: Facts, event: Event, spec: EventSpec) -> None:
    account_id = _str(event.data, "accountId")
    if account_id is None or spec.arg is None:
        return
    _set_account_status(facts, event, account_id, ConnectionStatus(spec.arg))


def _set_account_status(
    facts: Facts, event: Event, account_id: str, status: ConnectionStatus
) -> None:
    error_code = _str(event.data, "errorCode") if status is ConnectionStatus.ERROR else None
    error_message = _str(event.data, "errorMessage") if status is ConnectionStatus.ERROR else None
    proven = status is ConnectionStatus.CONNECTED and event.source.is_proof
    current = facts.accounts.get(account_id)
    if current is None:
        facts.accounts[account_id] = Account(
            account_id=account_id,
            providers=sorted(set(_providers(event.data))),
            status=status,
            error_code=error_code,
            error_message=error_message,
            reported_by=event.source,
            updated_at=event.created_at,
            event_id=event.id,
            ever_connected=proven,
        )
        return
    current.providers = sorted(set(current.providers) | set(_providers(event.data)))
    current.ever_connected = current.ever_connected or proven
    incoming = _rank(event.source, event.created_at, event.id, status.value)
    existing = _rank(
        current.reported_by, current.updated_at, current.event_id, current.status.value
    )
    if incoming > existing:
        current.status = status
        current.error_code = error_code
        current.error_message = error_message
        current.reported_by = event.source
        current.updated_at = event.created_at
        current.event_id = event.id


def _task(facts: Facts, event: Event, spec: EventSpec) -> None:
    kind = "sync" if spec.effect is Effect.SYNC_TASK else "task"
    source_id = _str(event.data, "sourceId") or _str(event.data, "accountId")
    if source_id is None:
        return
    source_type = (_str(event.data, "sourceType") or "ACCOUNT").upper()
    task_type = _str(event.data, "taskType") or "UNKNOWN"
    status = (_str(event.data, "status") or "STARTED").upper()
    key = f"{kind}:{source_type}:{source_id}:{task_type}"
    current = facts.tasks.get(key)
    succeeded = status == "SUCCEEDED"
    if current is None:
        facts.tasks[key] = SyncTask(
            source_id=source_id,
            source_type=source_type,
            task_type=task_type,
            status=status,
            error_code=_str(event.data, "errorCode"),
            succeeded=succeeded,
            kind=kind,
            updated_at=event.created_at,
            event_id=event.id,
        )
        return
    current.succeeded = current.succeeded or succeeded
    if (event.created_at, event.id, status) > (
        current.updated_at,
        current.event_id,
        current.status,
    ):
        current.status = status
        current.error_code = _str(event.data, "errorCode")
        current.updated_at = event.created_at
        current.event_id = event.id


def _archive(facts: Facts, event: Event, spec: EventSpec) -> None:
    archive_id = _str(event.data, "archiveId")
    if archive_id is None or spec.arg is None:
        return
    status = spec.arg
    failed = status == "failed"
    current = facts.archives.get(archive_id)
    candidate = Archive(
        archive_id=archive_id,
        status=status,
        error_code=_str(event.data, "errorCode") if failed else None,
        error_message=_str(event.data, "errorMessage") if failed else None,
        reported_by=event.source,
        updated_at=event.created_at,
        event_id=event.id,
    )
    if current is None or _rank(event.source, event.created_at, event.id, status) > _rank(
        current.reported_by, current.updated_at, current.event_id, current.status
    ):
        facts.archives[archive_id] = candidate


def _invite(facts: Facts, event: Event, spec: EventSpec) -> None:
    status = spec.arg or "unknown"
    current = facts.invite
    if current is None or (event.created_at, event.id, status) > (
        current.updated_at,
        current.event_id,
        current.status,
    ):
        facts.invite = Invite(
            invite_id=_str(event.data, "inviteId"),
            status=status,
            updated_at=event.created_at,
            event_id=event.id,
        )


def _data(facts: Facts, event: Event, spec: EventSpec) -> None:
    dtype = spec.arg or event.type.lower()
    received = facts.data.setdefault(dtype, DataReceived())
    count = event.data.get("count")
    received.events += 1
    received.items += count if isinstance(count, int) and not isinstance(count, bool) else 1
    if received.last_at is None or event.created_at > received.last_at:
        received.last_at = event.created_at


def _history_only(facts: Facts, event: Event, spec: EventSpec) -> None:
    """Recorded in the history; no fact changes."""


def _token_expired(facts: Facts, event: Event, spec: EventSpec) -> None:
    token = facts.token
    token.expired_reports += 1
    if token.expired_reported_at is None or event.created_at > token.expired_reported_at:
        token.expired_reported_at = event.created_at


def _widget_state(facts: Facts, event: Event, state: str, reason: str | None) -> None:
    widget = facts.widget
    if widget.updated_at is None or (event.created_at, event.id, state) > (
        widget.updated_at,
        widget.event_id or "",
        widget.state,
    ):
        widget.state = state
        widget.close_reason = reason
        widget.updated_at = event.created_at
        widget.event_id = event.id


def _widget_closed(facts: Facts, event: Event, spec: EventSpec) -> None:
    _widget_state(facts, event, "closed", _str(event.data, "reason"))


def _ui_event(facts: Facts, event: Event, spec: EventSpec) -> None:
    screen = _str(event.data, "eventName")
    _widget_state(facts, event, "open", None)
    widget = facts.widget
    if screen is not None and (
        widget.screen_updated_at is None
        or (event.created_at, event.id) > (widget.screen_updated_at, widget.screen_event_id or "")
    ):
        widget.last_screen = screen
        widget.screen_updated_at = event.created_at
        widget.screen_event_id = event.id
    account = event.data.get("account")
    if screen == "MfaPageOpened" and isinstance(account, dict):
        account_id = _str(account, "accountId")
        if account_id is not None:
            _set_account_status(facts, event, account_id, ConnectionStatus.AWAITING_MFA)


def _uploads_created(facts: Facts, event: Event, spec: EventSpec) -> None:
    facts.widget.uploads_created += 1


def _uploads_removed(facts: Facts, event: Event, spec: EventSpec) -> None:
    facts.widget.uploads_removed += 1


_EFFECTS = {
    Effect.USER: _user,
    Effect.ACCOUNT: _account,
    Effect.TASK: _task,
    Effect.SYNC_TASK: _task,
    Effect.ARCHIVE: _archive,
    Effect.INVITE: _invite,
    Effect.DATA: _data,
    Effect.HISTORY_ONLY: _history_only,
    Effect.TOKEN_EXPIRED: _token_expired,
    Effect.WIDGET_CLOSED: _widget_closed,
    Effect.UI_EVENT: _ui_event,
    Effect.UPLOADS_CREATED: _uploads_created,
    Effect.UPLOADS_REMOVED: _uploads_removed,
}
