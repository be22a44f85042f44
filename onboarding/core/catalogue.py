"""Every Smile webhook type and every Wink Widget callback, and what each does to the facts.

This table is the single source of truth: the state machine dispatches on it and
``docs/events.md`` is checked against :func:`render_markdown_table` by a test."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from onboarding.core.datapoints import WEBHOOK_PREFIXES
from onboarding.core.models import ConnectionStatus, Source


class Effect(StrEnum):
    USER = "user"
    ACCOUNT = "account"
    TASK = "task"
    SYNC_TASK = "sync_task"
    ARCHIVE = "archive"
    INVITE = "invite"
    DATA = "data"
    HISTORY_ONLY = "history_only"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an effect name, not a secret
    WIDGET_CLOSED = "widget_closed"
    UPLOADS_CREATED = "uploads_created"
    UPLOADS_REMOVED = "uploads_removed"
    UI_EVENT = "ui_event"
    SESSION = "session"


@dataclass(frozen=True)
class EventSpec:
    name: str
    source: Source
    effect: Effect
    arg: str | None
    summary: str


def _webhook(name: str, effect: Effect, arg: str | None, summary: str) -> EventSpec:
    return EventSpec(name, Source.WEBHOOK, effect, arg, summary)


def _widget(name: str, effect: Effect, arg: str | None, summary: str) -> EventSpec:
    return EventSpec(name, Source.WIDGET, effect, arg, summary)


def _reconcile(name: str, effect: Effect, arg: str | None, summary: str) -> EventSpec:
    return EventSpec(name, Source.RECONCILE, effect, arg, summary)


_DATA_TYPES = WEBHOOK_PREFIXES
# Data types for which Smile also sends *_UPDATED (RefWebhookEventType in the OpenAPI spec).
_UPDATABLE = ("DOCUMENTS", "EMPLOYMENTS", "INCOMES", "CONTRIBUTIONS", "EINCOMES", "LIABILITIES")

_SPECS: list[EventSpec] = [
    _webhook("USER_CREATED", Effect.USER, None, "records when the Smile user was created"),
    _webhook(
        "ACCOUNT_CREATED",
        Effect.ACCOUNT,
        ConnectionStatus.PENDING,
        "account `accountId` is `pending` (providers kept)",
    ),
    _webhook(
        "ACCOUNT_CONNECTED",
        Effect.ACCOUNT,
        ConnectionStatus.CONNECTED,
        "account is `connected`; marks it proven connected",
    ),
    _webhook(
        "ACCOUNT_DISCONNECTED",
        Effect.ACCOUNT,
        ConnectionStatus.DISCONNECTED,
        "account is `disconnected`",
    ),
    _webhook(
        "ACCOUNT_FAILED",
        Effect.ACCOUNT,
        ConnectionStatus.ERROR,
        "account is `error` with `errorCode`/`errorMessage`",
    ),
    _webhook("TASK_STARTED", Effect.TASK, None, "sync task for `sourceId` is running"),
    _webhook(
        "TASK_FINISHED",
        Effect.TASK,
        None,
        "sync task gets its `status`; `SUCCEEDED` makes data ready, whatever the `sourceType` "
        "(`ACCOUNT`, `UPLOAD`, `ARCHIVE`, `SOCIAL_SECURITY`), and on an `ACCOUNT` proves that "
        "account `connected` (the `payload` is never stored)",
    ),
    _webhook(
        "ACCOUNT_SYNC_TASK_FINISHED",
        Effect.SYNC_TASK,
        None,
        "periodic re-sync result recorded per account; `SUCCEEDED` proves the account "
        "`connected`, but is not the first data (never makes data ready)",
    ),
    _webhook("ARCHIVE_STARTED", Effect.ARCHIVE, "started", "archive `archiveId` is `started`"),
    _webhook(
        "ARCHIVE_ANALYZED",
        Effect.ARCHIVE,
        "analyzed",
        "archive is `analyzed`: its documents were converted into data, so data is ready",
    ),
    _webhook("ARCHIVE_REVOKED", Effect.ARCHIVE, "revoked", "archive is `revoked`"),
    _webhook(
        "ARCHIVE_FAILED",
        Effect.ARCHIVE,
        "failed",
        "archive is `failed` with `errorCode`/`errorMessage`",
    ),
    _webhook("INVITE_INVITED", Effect.INVITE, "invited", "invite `inviteId` is `invited`"),
    _webhook("INVITE_LINKED", Effect.INVITE, "linked", "invite is `linked`"),
    *[
        _webhook(
            f"{prefix}_ADDED",
            Effect.DATA,
            dtype,
            f"`{dtype}` data received (events and `count` summed); proves its `accountId` "
            "`connected`",
        )
        for prefix, dtype in _DATA_TYPES.items()
    ],
    *[
        _webhook(
            f"{prefix}_UPDATED",
            Effect.DATA,
            _DATA_TYPES[prefix],
            f"`{_DATA_TYPES[prefix]}` data received (events and `count` summed); proves its "
            "`accountId` `connected`",
        )
        for prefix in _UPDATABLE
    ],
    *[
        _webhook(
            name,
            Effect.HISTORY_ONLY,
            None,
            "carries no `userId`: accepted, logged, matched to no onboarding",
        )
        for name in (
            "VERIFICATION_STARTED",
            "VERIFICATION_COMPLETED",
            "RECORD_CREATED",
            "RECORD_COMPLETED",
        )
    ],
    _webhook(
        "USER_SESSION_COMPLETED",
        Effect.SESSION,
        None,
        "user at `data.session.userId`: the Wink session is `COMPLETED` (its `payload` is "
        "never stored); does not change the stage",
    ),
    _webhook(
        "USER_SESSION_RESET",
        Effect.SESSION,
        None,
        "user at `data.session.userId`: the Wink session was reset (`IN_PROGRESS`); does "
        "not change the stage",
    ),
    _reconcile(
        "ACCOUNT_AWAITING_MFA",
        Effect.ACCOUNT,
        ConnectionStatus.AWAITING_MFA,
        "Smile's API reports `AWAITING_MFA` (no webhook exists for it): account is "
        "`awaiting_mfa`; otherwise reconciliation speaks the webhook types above",
    ),
    _widget(
        "onAccountCreated", Effect.ACCOUNT, ConnectionStatus.PENDING, "hint: account is `pending`"
    ),
    _widget(
        "onAccountConnected",
        Effect.ACCOUNT,
        ConnectionStatus.CONNECTED,
        "hint: account is `connected` (never proof; never makes data ready)",
    ),
    _widget(
        "onAccountRemoved",
        Effect.ACCOUNT,
        ConnectionStatus.DISCONNECTED,
        "hint: account is `disconnected`",
    ),
    _widget(
        "onAccountError",
        Effect.ACCOUNT,
        ConnectionStatus.ERROR,
        "hint: account is `error` with `errorCode` (ignored without `accountId`)",
    ),
    _widget("onTokenExpired", Effect.TOKEN_EXPIRED, None, "link token reported expired"),
    _widget("onClose", Effect.WIDGET_CLOSED, None, "widget `closed` with its `reason` (if any)"),
    _widget(
        "onUploadsCreated",
        Effect.UPLOADS_CREATED,
        None,
        "hint: uploads submitted (counts toward the `uploads` stage)",
    ),
    _widget("onUploadsRemoved", Effect.UPLOADS_REMOVED, None, "hint: uploads removed"),
    _widget(
        "onUIEvent",
        Effect.UI_EVENT,
        None,
        "widget `open` on screen `eventName`; `MfaPageOpened` marks `account.accountId` "
        "`awaiting_mfa` (hint), or with only `account.providerId` shows that provider's "
        "`pending` accounts as `awaiting_mfa`",
    ),
]

CATALOGUE: dict[tuple[Source, str], EventSpec] = {(s.source, s.name): s for s in _SPECS}
WEBHOOK_TYPES: frozenset[str] = frozenset(s.name for s in _SPECS if s.source is Source.WEBHOOK)
WIDGET_CALLBACKS: frozenset[str] = frozenset(s.name for s in _SPECS if s.source is Source.WIDGET)


def spec_for(source: Source, name: str) -> EventSpec | None:
    """The spec for an event; reconciliation speaks the webhook vocabulary."""
    if source is Source.RECONCILE:
        return CATALOGUE.get((source, name)) or CATALOGUE.get((Source.WEBHOOK, name))
    return CATALOGUE.get((source, name))


def render_markdown_table() -> str:
    """The mapping as the Markdown table embedded in docs/events.md."""
    lines = [
        "| source | event | effect on the facts |",
        "|---|---|---|",
    ]
    for spec in _SPECS:
        lines.append(f"| {spec.source.value} | `{spec.name}` | {spec.summary} |")
    return "\n".join(lines) + "\n"
