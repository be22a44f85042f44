"""The shared data shapes: what arrives (events), what an onboarding knows (facts) and what an
operator reads back (the view). Plain pydantic, no Temporal and no I/O, so the API, the workflow
and the tests all speak the same language."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _assume_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]
"""A datetime that is always aware: one without a time zone is read as UTC. Every time that
enters the core is one of these, since comparing naive and aware datetimes raises (inside a
workflow, that would fail its task forever)."""


class CamelModel(BaseModel):
    """JSON in camelCase like Smile's own API, Python in snake_case."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Stage(StrEnum):
    """How far a user has got; ordered, and derived purely from the facts."""

    CREATED = "created"
    ACCOUNT_CREATED = "account_created"
    CONNECTED = "connected"
    UPLOADS = "uploads"
    DATA_READY = "data_ready"


STALLABLE_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.DATA_READY)


def stage_with_stall_timeout(name: str) -> Stage:
    """The stage called ``name``, if it is one that has a stall timeout; else a clear error."""
    allowed = ", ".join(s.value for s in STALLABLE_STAGES)
    try:
        stage = Stage(name)
    except ValueError:
        raise ValueError(
            f"unknown stage {name!r}; stages with a stall timeout: {allowed}"
        ) from None
    if stage not in STALLABLE_STAGES:
        raise ValueError(
            f"stage {name!r} has no stall timeout (it ends with the settle window); "
            f"stages with a stall timeout: {allowed}"
        )
    return stage


class Status(StrEnum):
    """Whether the onboarding is moving; separate from the stage."""

    ACTIVE = "active"
    STALLED = "stalled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self not in (Status.ACTIVE, Status.STALLED)


class Source(StrEnum):
    """Who told us a fact. Webhooks (signed by Smile) and reconciliation (Smile's API) are proof;
    widget callbacks come from the user's browser and are only hints."""

    WEBHOOK = "webhook"
    WIDGET = "widget"
    RECONCILE = "reconcile"

    @property
    def is_proof(self) -> bool:
        return self is not Source.WIDGET


class ConnectionStatus(StrEnum):
    """Mirrors Smile's account ``connectionStatus``."""

    PENDING = "pending"
    AWAITING_MFA = "awaiting_mfa"
    CONNECTED = "connected"
    ERROR = "error"
    DISCONNECTED = "disconnected"


# --- what arrives -------------------------------------------------------------------------------


# Smile's spec types the version as a number; a string is kept as sent rather than refused.
EnvelopeVersion = int | float | Annotated[str, Field(max_length=32)]


def _no_data_is_empty(value: Any) -> Any:
    return {} if value is None else value


class SmileWebhook(BaseModel):
    """Smile's webhook envelope, as documented: ``{id, version, type, createdAt, data}``.

    ``type`` is a plain string on purpose: Smile adds event types over time and an unknown one must
    be accepted and recorded, never rejected. So is any ``version``: the event is applied where
    its fields parse, and the onboarding counts it by version. ``createdAt`` without a time zone
    is read as UTC; ``data`` may be absent or null."""

    model_config = ConfigDict(populate_by_name=True, strict=False)

    id: str = Field(min_length=1, max_length=256)
    version: EnvelopeVersion
    type: str = Field(min_length=1, max_length=128)
    created_at: UtcDatetime = Field(alias="createdAt")
    data: Annotated[dict[str, Any], BeforeValidator(_no_data_is_empty)] = Field(
        default_factory=dict
    )


class Event(CamelModel):
    """One event as the workflow sees it, whatever door it came through."""

    id: str
    type: str
    source: Source
    created_at: UtcDatetime
    received_at: UtcDatetime
    data: dict[str, Any] = Field(default_factory=dict)
    version: EnvelopeVersion = 1  # the webhook envelope's; widget and reconcile events are 1

    @property
    def dedupe_key(self) -> str:
        # Namespaced by source, so a browser cannot suppress a webhook by reusing its id.
        return f"{self.source.value}/{self.id}"


class EventBatch(CamelModel):
    """The signal payload: one or more events for one user, committed together."""

    events: list[Event]


# --- what an onboarding knows ----------------------------------------------------------------


class Account(CamelModel):
    account_id: str
    providers: list[str] = Field(default_factory=list)
    status: ConnectionStatus
    error_code: str | None = None
    error_message: str | None = None
    reported_by: Source
    updated_at: datetime
    event_id: str
    ever_connected: bool = False  # proven connected at some point (webhook or reconcile)


class Archive(CamelModel):
    archive_id: str
    status: str  # started, analyzed, revoked, failed
    error_code: str | None = None
    error_message: str | None = None
    reported_by: Source
    updated_at: datetime
    event_id: str
    ever_analyzed: bool = False  # analyzed at some point: its data was extracted


class DataReceived(CamelModel):
    events: int = 0
    items: int = 0
    last_at: datetime | None = None


class SyncTask(CamelModel):
    source_id: str
    source_type: str
    task_type: str
    status: str
    error_code: str | None = None
    succeeded: bool = False
    kind: str = "task"  # "task" (TASK_*) or "sync" (ACCOUNT_SYNC_TASK_FINISHED)
    updated_at: datetime
    event_id: str


class TokenState(CamelModel):
    """The link token's life; its value is never kept."""

    issued_at: datetime | None = None
    expires_at: datetime | None = None
    refresh_count: int = 0
    refresh_failures: int = 0
    last_error: str | None = None
    expired_reported_at: datetime | None = None
    expired_reports: int = 0


class WidgetState(CamelModel):
    state: str = "unknown"  # open or closed, last writer wins
    close_reason: str | None = None
    updated_at: datetime | None = None
    event_id: str | None = None
    last_screen: str | None = None  # last widget screen shown (onUIEvent), its own register
    screen_updated_at: datetime | None = None
    screen_event_id: str | None = None
    uploads_created: int = 0
    uploads_removed: int = 0
    # MfaPageOpened naming only a provider: provider -> latest time (a hint for its accounts)
    mfa_providers: dict[str, datetime] = Field(default_factory=dict)


class Invite(CamelModel):
    invite_id: str | None = None
    status: str
    updated_at: datetime
    event_id: str


class UserSession(CamelModel):
    """The user's Wink session (USER_SESSION_COMPLETED / USER_SESSION_RESET)."""

    status: str  # Smile's UserSessionStatus: IN_PROGRESS, COMPLETED, REVOKED
    channel: str | None = None
    event_type: str
    updated_at: datetime
    event_id: str


class EventRecord(CamelModel):
    id: str
    type: str
    source: Source
    created_at: datetime
    received_at: datetime
    known: bool = True
    version: EnvelopeVersion = 1


class Facts(CamelModel):
    """Everything an onboarding has learnt. Every field merges commutatively (union, sum, max or
    last-writer-wins by the event's own ``createdAt``), so arrival order never matters."""

    user_id: str
    user_created_at: datetime | None = None
    accounts: dict[str, Account] = Field(default_factory=dict)
    archives: dict[str, Archive] = Field(default_factory=dict)
    data: dict[str, DataReceived] = Field(default_factory=dict)
    tasks: dict[str, SyncTask] = Field(default_factory=dict)
    token: TokenState = Field(default_factory=TokenState)
    widget: WidgetState = Field(default_factory=WidgetState)
    invite: Invite | None = None
    session: UserSession | None = None
    last_event_at: datetime | None = None
    unknown_types: list[str] = Field(default_factory=list)
    # Webhooks whose envelope version is not 1: version -> count (applied where fields parse)
    other_versions: dict[str, int] = Field(default_factory=dict)


class Journal(CamelModel):
    """The pure state machine's state: the facts, the recent history and the dedupe window."""

    facts: Facts
    history: list[EventRecord] = Field(default_factory=list)
    events_total: int = 0
    duplicates_ignored: int = 0
    # The dedupe window, oldest first: each key as a fixed-size digest (22 characters, see
    # ``state_machine.dedupe_digest``). Journals carried over from before digests hold raw
    # ``source/id`` keys; the state machine converts them when it loads the journal.
    seen: list[str] = Field(default_factory=list)


# --- options, lifecycle and the operator's view ----------------------------------------------


class Timeouts(CamelModel):
    """How long a user may sit in each stage (seconds), and the final limits."""

    stall: dict[Stage, float]
    expire_after: float
    settle_window: float


class NoticeType(StrEnum):
    """The notices an onboarding sends to the customer's backend (``core/notices.py``)."""

    STARTED = "onboarding.started"
    STAGE_CHANGED = "onboarding.stage_changed"
    DATA_READY = "onboarding.data_ready"
    STALLED = "onboarding.stalled"
    RESUMED = "onboarding.resumed"
    COMPLETED = "onboarding.completed"
    EXPIRED = "onboarding.expired"
    FAILED = "onboarding.failed"
    CANCELLED = "onboarding.cancelled"


# --- notices to the customer (rules in core/notices.py) ---------------------------------


class Change(CamelModel):
    """What the lifecycle announces: a notice's type and the transition behind it."""

    model_config = CamelModel.model_config | {"frozen": True}  # a command: hashable

    type: NoticeType
    stage: Stage
    status: Status
    previous_stage: Stage | None = None
    previous_status: Status | None = None
    reason: str | None = None
    at: datetime


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting its turn, or being delivered (with retries)
    DELIVERED = "delivered"  # every endpoint answered 2xx
    FAILED = "failed"  # an endpoint refused it for good, or retries ran out


class EndpointOutcome(CamelModel):
    """One endpoint's answer to a notice: a URL is never kept, only its position in
    ``ONBOARDING_NOTIFY_URL`` (1-based)."""

    endpoint: int
    delivered: bool
    status: int | None = None  # the HTTP status, None for a network error
    error: str | None = None


class DeliveryReport(CamelModel):
    """What the delivery activity returns when it is done with a notice (every endpoint
    delivered or refused it for good)."""

    attempts: int
    endpoints: list[EndpointOutcome]

    @property
    def delivered(self) -> bool:
        return all(e.delivered for e in self.endpoints)


class NoticeRecord(CamelModel):
    id: str  # the ``webhook-id``: the same on every attempt and redelivery
    type: NoticeType
    sequence: int
    created_at: datetime
    # Its retries end a fixed time after this: issued, or queued again (None: created_at).
    window_start: datetime | None = None
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0  # over all deliveries of this notice, redeliveries included
    last_status: int | None = None
    last_error: str | None = None
    settled_at: datetime | None = None
    endpoints: list[EndpointOutcome] = Field(default_factory=list)
    deliveries: int = 0  # activities run for it: the first, then one per redelivery
    body: dict[str, Any]


class NoticeCounts(CamelModel):
    issued: int = 0
    pending: int = 0
    delivered: int = 0
    failed: int = 0


class RedeliverRequest(CamelModel):
    """Put failed notices back in line: the one numbered ``sequence``, or all failed ones."""

    sequence: int | None = None


class NoticeLog(CamelModel):
    issued: int = 0  # the last sequence number given
    records: list[NoticeRecord] = Field(default_factory=list)


class OnboardingOptions(CamelModel):
    timeouts: Timeouts
    required_data: list[str]
    # The notice types to send, fixed at start; None: notices are off for this onboarding.
    notices: list[NoticeType] | None = None
    # How long an ended onboarding with failed notices stays open so they can be redelivered.
    notice_hold: float = 3 * 86400.0
    continue_as_new_after: int = 2000
    # The dedupe window and the history travel in every continue-as-new input, so each is capped
    # by count and by its serialized size; whichever is reached first drops the oldest. A dedupe
    # key is a 16-byte digest, 25 bytes of JSON whatever the id's length, so the byte budget is
    # in effect a count: 80 KiB holds 3,276 keys (below the 10,000 of ``dedupe_window``). A
    # history record is measured as serialized: with Smile's ``et-<32 hex>`` ids one is about
    # 194 bytes (64 KiB: about 337 records), with a 256-character id and a 128-character type
    # 526 (124 records). With these defaults and the caps on what widget hints add to the facts
    # (state_machine.MAX_*), the whole continue-as-new input of 10,000 events with the longest
    # ids is about 180 KB (tests/onboarding/core/test_bounded_state.py), leaving room under 256 KiB.
    dedupe_window: int = 10_000
    dedupe_window_bytes: int = Field(80 * 1024, ge=1024)
    history_limit: int = 500
    history_bytes: int = Field(64 * 1024, ge=4096)


class Deadlines(CamelModel):
    stall: datetime | None = None
    expire: datetime | None = None
    settle: datetime | None = None


class ReconcileState(CamelModel):
    runs: int = 0
    last_at: datetime | None = None
    last_error: str | None = None
    accounts_seen: int = 0
    archives_seen: int = 0
    tasks_seen: int = 0
    data_seen: dict[str, int] = Field(default_factory=dict)  # data type -> items at Smile
    records_skipped: int = 0  # records whose status Smile did not state
    facts_added: int = 0


class Lifecycle(CamelModel):
    status: Status = Status.ACTIVE
    status_reason: str | None = None
    started_at: datetime | None = None
    stage: Stage = Stage.CREATED
    stage_entered_at: datetime | None = None
    stalled_at: datetime | None = None
    stalls: int = 0
    data_ready_at: datetime | None = None
    ended_at: datetime | None = None
    runs: int = 1
    external_metadata: dict[str, Any] | None = None
    reconcile: ReconcileState = Field(default_factory=ReconcileState)
    # Wishes, kept until their outcome is reported, so that continue-as-new never loses one.
    token_refresh_wanted: bool = False
    stall_reconcile_wanted: bool = False
    stall_notice_wanted: bool = False
    stall_deadline: datetime | None = None  # the stall deadline that was passed
    last_notice_error: str | None = None
    # Notices to the customer: ``onboarding.started`` is owed until the first run announces it
    # (False in lifecycles from before notices, which never owe it); ``onboarding.resumed`` is
    # announced only for a stall that was announced.
    start_announce_wanted: bool = False
    stall_announced: bool = False


class OnboardingInput(CamelModel):
    """The workflow's argument; also what continue-as-new carries forward."""

    user_id: str
    options: OnboardingOptions
    journal: Journal | None = None
    lifecycle: Lifecycle | None = None
    notices: NoticeLog | None = None


class TimeoutsChange(CamelModel):
    """A run-time change to the timeouts, applied by a validated workflow update."""

    stall: dict[str, float] = Field(default_factory=dict)
    expire_after: float | None = None
    settle_window: float | None = None


# The longest timeout anyone may set (ten years): past it, deadlines overflow datetime.
MAX_TIMEOUT_SECONDS = 3650 * 86400.0


def check_timeouts_change(change: TimeoutsChange) -> None:
    """Raise ValueError, saying why, if ``change`` names an unknown stage or a duration that is
    not a positive finite number of seconds up to ten years. Shared by the API (before side
    effects) and the workflow's update validators, so no accepted update can fail its handler."""
    for name, seconds in change.stall.items():
        stage_with_stall_timeout(name)
        _check_seconds(f"stall timeout for {name}", seconds)
    for label, value in (("expireAfter", change.expire_after),
                         ("settleWindow", change.settle_window)):  # fmt: skip
        if value is not None:
            _check_seconds(label, value)


def _check_seconds(label: str, seconds: float) -> None:
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{label} must be a positive number of seconds, got {seconds:g}")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise ValueError(f"{label} must be at most ten years, got {seconds:g} seconds")


class StartRequest(CamelModel):
    """What ``POST /onboardings`` tells the onboarding workflow (by update-with-start)."""

    external_metadata: dict[str, Any] | None = None
    token_expires_at: datetime | None = None
    timeouts: TimeoutsChange | None = None
    required_data: list[str] | None = None


class UpdateOutcome(CamelModel):
    """What an update answers: enough for its caller, never the whole history (an update's
    result is kept in the workflow's history; the full view is a query away)."""

    user_id: str
    stage: Stage
    status: Status
    status_reason: str | None = None


class CancelRequest(CamelModel):
    reason: str = "cancelled by operator"


class OnboardingView(CamelModel):
    """What an operator reads: the state of one user's onboarding."""

    user_id: str
    workflow_id: str
    user_created_at: datetime | None = None  # USER_CREATED: when Smile created the user
    stage: Stage
    status: Status
    status_reason: str | None
    started_at: datetime | None
    stage_entered_at: datetime | None
    stalled_at: datetime | None
    data_ready_at: datetime | None
    ended_at: datetime | None
    required_data: list[str]
    accounts: list[Account]
    archives: list[Archive]
    data: dict[str, DataReceived]
    tasks: list[SyncTask]
    token: TokenState
    widget: WidgetState
    invite: Invite | None
    session: UserSession | None = None
    last_event_at: datetime | None
    timeouts: Timeouts
    deadlines: Deadlines
    stalls: int
    external_metadata: dict[str, Any] | None
    reconcile: ReconcileState
    events: list[EventRecord]
    events_total: int
    duplicates_ignored: int
    unknown_types: list[str]
    other_versions: dict[str, int] = Field(default_factory=dict)
    runs: int
    notices: NoticeCounts | None = None  # None: notices are off for this onboarding
