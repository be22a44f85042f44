"""The pure onboarding state machine: ``apply(journal, event) -> journal`` and
``derive_stage(facts) -> stage``. No Temporal, no I/O, no clock.

Every fact merges commutatively, so any permutation of the same events (with any duplicates)
ends in the same facts: sets are unions, counters are sums over deduplicated events, and every
status is last-writer-wins ordered by ``(proof beats hint, createdAt, reconciliation beats
webhook, lifecycle, content)``.

Smile's ``createdAt`` has one-second precision, so ties are common; they are broken by what the
events mean (an account is created before it connects), never by their ids. The event id comes
last only to pick which of two events saying exactly the same thing is remembered as the
source.

Everything the journal carries through continue-as-new is bounded: the dedupe window and the
history by count and bytes (oldest dropped first), and what widget hints can add to the facts by
the caps below. The unknown types and MFA providers keep their smallest values, which stays
commutative; past their caps, which widget-only accounts and widget-reported providers are kept
depends on arrival order (proof is never capped)."""

from __future__ import annotations

import base64
import bisect
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from onboarding.core.catalogue import Effect, EventSpec, spec_for
from onboarding.core.models import (
    Account,
    Archive,
    ConnectionStatus,
    DataReceived,
    Event,
    EventRecord,
    Facts,
    Invite,
    Journal,
    OnboardingOptions,
    Source,
    Stage,
    SyncTask,
    UserSession,
)

DEFAULT_DEDUPE_WINDOW = 10_000
DEFAULT_HISTORY_LIMIT = 500
# Byte budgets of what continue-as-new carries; the defaults of ``OnboardingOptions``.
DEFAULT_DEDUPE_WINDOW_BYTES = 80 * 1024
DEFAULT_HISTORY_BYTES = 64 * 1024

# A dedupe key is kept as the first 16 bytes of its SHA-256, in unpadded URL-safe base64: 22
# characters whatever the id's length, and never a "/" (a raw ``source/id`` key always has one).
_DIGEST_BYTES = 16
# What one digest costs in the serialized window: 22 characters, two quotes and a comma.
SEEN_ENTRY_BYTES = 22 + 3

# Caps on facts that the user's browser can grow (widget callbacks are unauthenticated hints).
# Signed webhooks and reconciliation are never capped.
MAX_WIDGET_ONLY_ACCOUNTS = 20  # accounts that only the widget ever reported
MAX_WIDGET_PROVIDERS = 2  # providers the widget adds to an account, up to this many in all
MAX_MFA_PROVIDERS = 10  # widget.mfa_providers: the smallest provider ids are kept
MAX_UNKNOWN_TYPES = 50  # facts.unknown_types: the smallest type names are kept


def dedupe_digest(key: str) -> str:
    """The fixed-size form of a dedupe key in ``Journal.seen``. Pure and deterministic, so
    fine inside workflow code; ``surrogatepass`` so that no string, however odd, can fail."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:_DIGEST_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _as_digest(entry: str) -> str:
    """An entry of ``Journal.seen`` as a digest: journals written before digests hold raw
    ``source/id`` keys (always with a "/", which a digest never has)."""
    return dedupe_digest(entry) if "/" in entry else entry


def new_journal(user_id: str) -> Journal:
    return Journal(facts=Facts(user_id=user_id))


def apply(journal: Journal, event: Event, **limits: int) -> Journal:
    """Return the journal after ``event``; the input is left untouched."""
    return apply_all(journal, [event], **limits)


def apply_all(journal: Journal, events: Iterable[Event], **limits: int) -> Journal:
    """Return the journal after ``events`` (limits as :class:`StateMachine` takes them); the
    input is left untouched."""
    machine = StateMachine(journal.model_copy(deep=True), **limits)
    for event in events:
        machine.apply(event)
    return machine.journal


def _record_bytes(record: EventRecord) -> int:
    """A history record's share of the serialized journal, measured exactly as the pydantic
    data converter writes it (``pydantic_core.to_json``), with its separating comma."""
    return len(to_json(record)) + 1


class StateMachine:
    """Applies events to a journal it owns, in place, with an index for cheap dedupe.

    The workflow keeps one of these for its lifetime; :func:`apply` wraps it purely. Loading a
    journal converts raw dedupe keys to digests and trims the window and the history to the
    limits given, so a journal carried over from an older version is bounded from here on."""

    def __init__(
        self,
        journal: Journal,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        *,
        dedupe_window_bytes: int = DEFAULT_DEDUPE_WINDOW_BYTES,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
    ) -> None:
        self.journal = journal
        # Every digest costs the same, so the byte budget is simply a second count cap (n
        # digests serialize to 25n + 1 bytes: the brackets, less one comma).
        seen_fit = (dedupe_window_bytes - 1) // SEEN_ENTRY_BYTES
        self._seen_cap = max(1, min(dedupe_window, seen_fit))
        self._history_limit = history_limit
        self._history_budget = history_bytes
        journal.seen = list(dict.fromkeys(_as_digest(entry) for entry in journal.seen))
        self._seen = set(journal.seen)
        self._trim_seen()
        # The serialized history: the brackets, less one comma, and each record with its comma.
        self._history_size = 1 + sum(_record_bytes(r) for r in journal.history)
        self._trim_history()

    @classmethod
    def for_options(cls, journal: Journal, options: OnboardingOptions) -> StateMachine:
        """The machine with every limit an onboarding's options set."""
        return cls(
            journal,
            options.dedupe_window,
            options.history_limit,
            dedupe_window_bytes=options.dedupe_window_bytes,
            history_bytes=options.history_bytes,
        )

    def apply(self, event: Event) -> bool:
        """Apply one event; False if it was a duplicate and changed nothing."""
        digest = dedupe_digest(event.dedupe_key)
        if digest in self._seen:
            self.journal.duplicates_ignored += 1
            return False
        self._remember(digest)
        spec = spec_for(event.source, event.type)
        facts = self.journal.facts
        if facts.last_event_at is None or event.created_at > facts.last_event_at:
            facts.last_event_at = event.created_at
        if event.version != 1:
            version = str(event.version)
            facts.other_versions[version] = facts.other_versions.get(version, 0) + 1
        if spec is None:
            _keep_smallest(facts.unknown_types, event.type, MAX_UNKNOWN_TYPES)
        else:
            _EFFECTS[spec.effect](facts, event, spec)
        self._record(event, known=spec is not None)
        return True

    def _remember(self, digest: str) -> None:
        self._seen.add(digest)
        self.journal.seen.append(digest)
        self._trim_seen()

    def _trim_seen(self) -> None:
        seen = self.journal.seen
        excess = len(seen) - self._seen_cap
        if excess > 0:
            self._seen.difference_update(seen[:excess])
            del seen[:excess]

    def _record(self, event: Event, *, known: bool) -> None:
        record = EventRecord(
            id=event.id,
            type=event.type,
            source=event.source,
            created_at=event.created_at,
            received_at=event.received_at,
            known=known,
            version=event.version,
        )
        history = self.journal.history
        bisect.insort(history, record, key=lambda r: (r.created_at, r.source.value, r.id))
        self._history_size += _record_bytes(record)
        self._trim_history()
        self.journal.events_total += 1

    def _trim_history(self) -> None:
        """Drop the oldest records until the history is within both its count and its bytes."""
        history = self.journal.history
        while history and (
            len(history) > self._history_limit or self._history_size > self._history_budget
        ):
            self._history_size -= _record_bytes(history.pop(0))


def _keep_smallest(values: list[str], value: str, cap: int) -> None:
    """Add ``value`` to the sorted ``values``, keeping only the ``cap`` smallest: the result is
    the ``cap`` smallest of every value ever added, whatever the order (still commutative)."""
    if value in values:
        return
    bisect.insort(values, value)
    del values[cap:]


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
    """Data is ready when Smile says so: a sync task succeeded (for an account, an upload, an
    archive or a record), an archive was analyzed into data, or every required data type
    arrived. Widget claims never count: the widget sends no task, archive or data events."""
    if any(t.kind == "task" and t.succeeded for t in facts.tasks.values()):
        return True
    if any(a.ever_analyzed for a in facts.archives.values()):
        return True
    required = list(required_data)
    return bool(required) and all(dtype in facts.data for dtype in required)


def has_uploads(facts: Facts) -> bool:
    live_archive = any(a.status in ("started", "analyzed") for a in facts.archives.values())
    return live_archive or facts.widget.uploads_created > facts.widget.uploads_removed


def presented_accounts(facts: Facts) -> list[Account]:
    """The accounts as an operator should see them: a ``pending`` account of a provider whose
    MFA screen the widget opened since (``MfaPageOpened`` naming only the provider) is shown
    ``awaiting_mfa``. Derived here rather than stored, so it cannot depend on arrival order."""
    shown = []
    for account_id in sorted(facts.accounts):
        account = facts.accounts[account_id]
        hinted = [facts.widget.mfa_providers.get(p) for p in account.providers]
        if account.status is ConnectionStatus.PENDING and any(
            at is not None and at >= account.updated_at for at in hinted
        ):
            account = account.model_copy(update={"status": ConnectionStatus.AWAITING_MFA})
        shown.append(account)
    return shown


# --- tie-breaks: what the events mean, in each register's lifecycle ---------------------------

# An account is created, may wait for MFA, fails or connects, and is disconnected last. When a
# failure and a connection share a second, the user retried and connected: that is what
# reconciliation would find at Smile, so `connected` ranks above `error`.
_ACCOUNT_LIFECYCLE = {
    ConnectionStatus.PENDING: 0,
    ConnectionStatus.AWAITING_MFA: 1,
    ConnectionStatus.ERROR: 2,
    ConnectionStatus.CONNECTED: 3,
    ConnectionStatus.DISCONNECTED: 4,
}
# An archive is started, fails or is analyzed, and is revoked last.
_ARCHIVE_LIFECYCLE = {"started": 0, "failed": 1, "analyzed": 2, "revoked": 3}
# A task is started and then finishes; a success in the same second as a failure wins.
_TASK_LIFECYCLE = {"STARTED": 0, "FINISHED": 1, "FAILED": 2, "SUCCEEDED": 3}
_INVITE_LIFECYCLE = {"invited": 0, "linked": 1}
_WIDGET_LIFECYCLE = {"open": 0, "closed": 1}
# A session is completed, then possibly reset to start again.
_SESSION_LIFECYCLE = {"USER_SESSION_COMPLETED": 0, "USER_SESSION_RESET": 1}

Rank = tuple[bool, datetime, bool, int, tuple[str, ...], str]


def _rank(
    source: Source, at: datetime, lifecycle: int, content: tuple[str | None, ...], event_id: str
) -> Rank:
    """Proof beats hint, then the later event; within one second, Smile's record as
    reconciliation read it beats a webhook, then the later step of the lifecycle, then the
    content (so that two same-second errors settle on the same one whatever their ids)."""
    return (
        source.is_proof,
        at,
        source is Source.RECONCILE,
        lifecycle,
        tuple(c or "" for c in content),
        event_id,
    )


# --- effects: one per catalogue entry kind --------------------------------------------------


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _providers(data: dict[str, Any]) -> list[str]:
    listed = data.get("providers")
    found = [p for p in listed if isinstance(p, str) and p] if isinstance(listed, list) else []
    provider_id = _str(data, "providerId")
    if provider_id:
        found.append(provider_id)
    return found


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
    hint = not event.source.is_proof
    if current is None:
        if hint and _widget_only_accounts(facts) >= MAX_WIDGET_ONLY_ACCOUNTS:
            return  # over the cap: the hint stays in the history only
        providers = sorted(set(_providers(event.data)))
        facts.accounts[account_id] = Account(
            account_id=account_id,
            providers=providers[:MAX_WIDGET_PROVIDERS] if hint else providers,
            status=status,
            error_code=error_code,
            error_message=error_message,
            reported_by=event.source,
            updated_at=event.created_at,
            event_id=event.id,
            ever_connected=proven,
        )
        return
    if not hint:
        current.providers = sorted(set(current.providers) | set(_providers(event.data)))
    elif len(current.providers) < MAX_WIDGET_PROVIDERS:
        added = sorted(set(_providers(event.data)) - set(current.providers))
        room = MAX_WIDGET_PROVIDERS - len(current.providers)
        current.providers = sorted(set(current.providers) | set(added[:room]))
    current.ever_connected = current.ever_connected or proven
    incoming = _rank(
        event.source,
        event.created_at,
        _ACCOUNT_LIFECYCLE[status],
        (error_code, error_message),
        event.id,
    )
    existing = _rank(
        current.reported_by,
        current.updated_at,
        _ACCOUNT_LIFECYCLE[current.status],
        (current.error_code, current.error_message),
        current.event_id,
    )
    if incoming > existing:
        current.status = status
        current.error_code = error_code
        current.error_message = error_message
        current.reported_by = event.source
        current.updated_at = event.created_at
        current.event_id = event.id


def _widget_only_accounts(facts: Facts) -> int:
    """Accounts that only the widget ever reported: proof beats a hint in every ranking, so an
    account still ``reported_by`` the widget has had no webhook or reconciliation about it."""
    return sum(
        1
        for a in facts.accounts.values()
        if a.reported_by is Source.WIDGET and not a.ever_connected
    )


def _prove_connected(facts: Facts, event: Event, account_id: str | None) -> None:
    """Data from an account proves it connected: Smile sends ``ACCOUNT_CONNECTED`` only for
    providers that need a login, so for the others this is the only proof there is."""
    if account_id is not None and event.source.is_proof:
        _set_account_status(facts, event, account_id, ConnectionStatus.CONNECTED)


def task_status(event_type: str, data: dict[str, Any]) -> str:
    """A task's status as Smile states it; else ``STARTED`` for ``TASK_STARTED``, and for a
    finished task (the spec does not require ``status``) ``SUCCEEDED`` if it saved datapoints
    ("the datapoints saved when the task finished") or ``FINISHED``, outcome unknown, which
    never counts as a success. Reconciliation reads Smile's tasks by the same rule."""
    stated = _str(data, "status")
    if stated is not None:
        return stated.upper()
    if not event_type.endswith("FINISHED"):
        return "STARTED"
    datapoints = data.get("datapoints")
    saved = isinstance(datapoints, list) and any(isinstance(d, str) and d for d in datapoints)
    return "SUCCEEDED" if saved else "FINISHED"


def _task(facts: Facts, event: Event, spec: EventSpec) -> None:
    kind = "sync" if spec.effect is Effect.SYNC_TASK else "task"
    source_id = _str(event.data, "sourceId") or _str(event.data, "accountId")
    if source_id is None:
        return
    source_type = (_str(event.data, "sourceType") or "ACCOUNT").upper()
    task_type = _str(event.data, "taskType") or "UNKNOWN"
    status = task_status(event.type, event.data)
    error_code = _str(event.data, "errorCode")
    key = f"{kind}:{source_type}:{source_id}:{task_type}"
    current = facts.tasks.get(key)
    succeeded = status == "SUCCEEDED"
    if succeeded and source_type == "ACCOUNT":
        _prove_connected(facts, event, source_id)
    if current is None:
        facts.tasks[key] = SyncTask(
            source_id=source_id,
            source_type=source_type,
            task_type=task_type,
            status=status,
            error_code=error_code,
            succeeded=succeeded,
            kind=kind,
            updated_at=event.created_at,
            event_id=event.id,
        )
        return
    current.succeeded = current.succeeded or succeeded
    incoming = _rank(
        event.source,
        event.created_at,
        _TASK_LIFECYCLE.get(status, 1),
        (status, error_code),
        event.id,
    )
    existing = _rank(
        event.source,  # tasks come from Smile only: the source never decides
        current.updated_at,
        _TASK_LIFECYCLE.get(current.status, 1),
        (current.status, current.error_code),
        current.event_id,
    )
    if incoming > existing:
        current.status = status
        current.error_code = error_code
        current.updated_at = event.created_at
        current.event_id = event.id


def _archive(facts: Facts, event: Event, spec: EventSpec) -> None:
    archive_id = _str(event.data, "archiveId")
    if archive_id is None or spec.arg is None:
        return
    status = spec.arg
    failed = status == "failed"
    analyzed = status == "analyzed" and event.source.is_proof
    current = facts.archives.get(archive_id)
    candidate = Archive(
        archive_id=archive_id,
        status=status,
        error_code=_str(event.data, "errorCode") if failed else None,
        error_message=_str(event.data, "errorMessage") if failed else None,
        reported_by=event.source,
        updated_at=event.created_at,
        event_id=event.id,
        ever_analyzed=analyzed or (current is not None and current.ever_analyzed),
    )
    if current is None or _archive_rank(candidate) > _archive_rank(current):
        facts.archives[archive_id] = candidate
    else:
        current.ever_analyzed = candidate.ever_analyzed


def _archive_rank(archive: Archive) -> Rank:
    return _rank(
        archive.reported_by,
        archive.updated_at,
        _ARCHIVE_LIFECYCLE.get(archive.status, 0),
        (archive.error_code, archive.error_message),
        archive.event_id,
    )


def _invite(facts: Facts, event: Event, spec: EventSpec) -> None:
    status = spec.arg or "unknown"
    invite_id = _str(event.data, "inviteId")
    current = facts.invite
    incoming = _rank(
        event.source, event.created_at, _INVITE_LIFECYCLE.get(status, 0), (invite_id,), event.id
    )
    if current is None or incoming > _rank(
        event.source,
        current.updated_at,
        _INVITE_LIFECYCLE.get(current.status, 0),
        (current.invite_id,),
        current.event_id,
    ):
        facts.invite = Invite(
            invite_id=invite_id,
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
    _prove_connected(facts, event, _str(event.data, "accountId"))


def _session(facts: Facts, event: Event, spec: EventSpec) -> None:
    session = event.data.get("session")
    if not isinstance(session, dict):
        return
    status = _str(session, "status") or (
        "COMPLETED" if event.type == "USER_SESSION_COMPLETED" else "IN_PROGRESS"
    )
    channel = _str(session, "channel")
    lifecycle = _SESSION_LIFECYCLE.get(event.type, 0)
    current = facts.session
    if current is None or _rank(
        event.source, event.created_at, lifecycle, (status, channel), event.id
    ) > _rank(
        event.source,
        current.updated_at,
        _SESSION_LIFECYCLE.get(current.event_type, 0),
        (current.status, current.channel),
        current.event_id,
    ):
        facts.session = UserSession(
            status=status,
            channel=channel,
            event_type=event.type,
            updated_at=event.created_at,
            event_id=event.id,
        )


def _history_only(facts: Facts, event: Event, spec: EventSpec) -> None:
    """Recorded in the history; no fact changes."""


def _token_expired(facts: Facts, event: Event, spec: EventSpec) -> None:
    token = facts.token
    token.expired_reports += 1
    if token.expired_reported_at is None or event.created_at > token.expired_reported_at:
        token.expired_reported_at = event.created_at


def _widget_state(facts: Facts, event: Event, state: str, reason: str | None) -> None:
    widget = facts.widget
    incoming = _rank(event.source, event.created_at, _WIDGET_LIFECYCLE[state], (reason,), event.id)
    if widget.updated_at is None or incoming > _rank(
        event.source,
        widget.updated_at,
        _WIDGET_LIFECYCLE.get(widget.state, 0),
        (widget.close_reason,),
        widget.event_id or "",
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
        or (event.created_at, screen, event.id)
        > (widget.screen_updated_at, widget.last_screen or "", widget.screen_event_id or "")
    ):
        widget.last_screen = screen
        widget.screen_updated_at = event.created_at
        widget.screen_event_id = event.id
    account = event.data.get("account")
    if screen != "MfaPageOpened" or not isinstance(account, dict):
        return
    account_id = _str(account, "accountId")
    if account_id is not None:
        _set_account_status(facts, event, account_id, ConnectionStatus.AWAITING_MFA)
        return
    provider_id = _str(account, "providerId")
    if provider_id is not None:
        seen = widget.mfa_providers.get(provider_id)
        if seen is None or event.created_at > seen:
            widget.mfa_providers[provider_id] = event.created_at
        while len(widget.mfa_providers) > MAX_MFA_PROVIDERS:
            # Keep the smallest provider ids: a kept one was never dropped, so its time is the
            # latest of all its events, and the result does not depend on arrival order.
            del widget.mfa_providers[max(widget.mfa_providers)]


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
    Effect.SESSION: _session,
    Effect.HISTORY_ONLY: _history_only,
    Effect.TOKEN_EXPIRED: _token_expired,
    Effect.WIDGET_CLOSED: _widget_closed,
    Effect.UI_EVENT: _ui_event,
    Effect.UPLOADS_CREATED: _uploads_created,
    Effect.UPLOADS_REMOVED: _uploads_removed,
}
