"""Every catalogue entry's effect, asserted: one event of each type, with every field an effect
could read, and what it changed in the facts. Reconciliation, which speaks the webhook
vocabulary, is applied through ``spec_for`` for every webhook type as well."""

from __future__ import annotations

from typing import Any

import pytest

from onboarding.core.catalogue import CATALOGUE, WEBHOOK_TYPES, Effect, spec_for
from onboarding.core.models import ConnectionStatus, Facts, Source, Stage
from onboarding.core.state_machine import apply_all, derive_stage, new_journal
from tests.onboarding.core.test_state_machine_facts import at, ev

REQUIRED = ["identity", "employments", "incomes"]

# Every field any effect reads, well formed; a task saved datapoints (so it succeeded).
DATA: dict[str, Any] = {
    "accountId": "a-1",
    "providers": ["abccorp"],
    "sourceId": "a-1",
    "sourceType": "ACCOUNT",
    "taskType": "SYNC",
    "datapoints": ["IDENTITIES"],
    "archiveId": "ar-1",
    "inviteId": "iv-1",
    "count": 2,
    "errorCode": "E",
    "errorMessage": "M",
    "reason": "exit",
    "eventName": "MfaPageOpened",
    "account": {"accountId": "a-2"},
    "session": {"status": "COMPLETED", "channel": "WinkSite"},
}


def observe(facts: Facts) -> dict[str, Any]:
    """What an event changed, compactly: every fact that left its default."""
    seen: dict[str, Any] = {
        "accounts": {
            k: (a.status.value, a.reported_by.value, a.ever_connected, a.error_code, a.providers)
            for k, a in facts.accounts.items()
        },
        "archives": {
            k: (a.status, a.ever_analyzed, a.error_code, a.error_message)
            for k, a in facts.archives.items()
        },
        "tasks": {k: (t.status, t.succeeded) for k, t in facts.tasks.items()},
        "data": {k: (d.events, d.items) for k, d in facts.data.items()},
        "user_created": facts.user_created_at is not None,
        "invite": facts.invite and (facts.invite.invite_id, facts.invite.status),
        "session": facts.session and (facts.session.status, facts.session.event_type),
        "token_reports": facts.token.expired_reports,
        "widget": (
            facts.widget.state,
            facts.widget.close_reason,
            facts.widget.last_screen,
            facts.widget.uploads_created,
            facts.widget.uploads_removed,
        ),
        "unknown": facts.unknown_types,
        "stage": derive_stage(facts, REQUIRED).value,
    }
    defaults = observe_defaults()
    return {k: v for k, v in seen.items() if defaults.get(k) != v}


_DEFAULTS: dict[str, Any] = {}


def observe_defaults() -> dict[str, Any]:
    if not _DEFAULTS:
        _DEFAULTS.update(
            accounts={}, archives={}, tasks={}, data={}, user_created=False, invite=None,
            session=None, token_reports=0, widget=("unknown", None, None, 0, 0), unknown=[],
            stage="created",
        )  # fmt: skip
    return _DEFAULTS


def proof(status: str, source: str = "webhook", error: str | None = None) -> dict[str, Any]:
    connected = status == "connected"
    return {
        "accounts": {"a-1": (status, source, connected and source != "widget", error, ["abccorp"])}
    }


def connected_by_data(source: str = "webhook") -> dict[str, Any]:
    return {"accounts": {"a-1": ("connected", source, True, None, ["abccorp"])}}


STAGE_OF = {
    "pending": "account_created",
    "awaiting_mfa": "account_created",
    "error": "account_created",
    "connected": "connected",
    "disconnected": "account_created",
}


def account(status: str, source: str = "webhook") -> dict[str, Any]:
    error = "E" if status == "error" else None
    return {**proof(status, source, error), "stage": STAGE_OF[status]}


def data(dtype: str) -> dict[str, Any]:
    return {**connected_by_data(), "data": {dtype: (1, 2)}, "stage": "connected"}


def archive(status: str, stage: str) -> dict[str, Any]:
    failed = status == "failed"
    errors = ("E", "M") if failed else (None, None)
    effect: dict[str, Any] = {"archives": {"ar-1": (status, status == "analyzed", *errors)}}
    return effect if stage == "created" else {**effect, "stage": stage}


HISTORY_ONLY: dict[str, Any] = {}

# The effect of each (source, name): nothing else may change.
EXPECTED: dict[tuple[Source, str], dict[str, Any]] = {
    (Source.WEBHOOK, "USER_CREATED"): {"user_created": True},
    (Source.WEBHOOK, "ACCOUNT_CREATED"): account("pending"),
    (Source.WEBHOOK, "ACCOUNT_CONNECTED"): account("connected"),
    (Source.WEBHOOK, "ACCOUNT_DISCONNECTED"): account("disconnected"),
    (Source.WEBHOOK, "ACCOUNT_FAILED"): account("error"),
    (Source.WEBHOOK, "TASK_STARTED"): {"tasks": {"task:ACCOUNT:a-1:SYNC": ("STARTED", False)}},
    (Source.WEBHOOK, "TASK_FINISHED"): {
        "tasks": {"task:ACCOUNT:a-1:SYNC": ("SUCCEEDED", True)},
        **connected_by_data(),
        "stage": "data_ready",
    },
    (Source.WEBHOOK, "ACCOUNT_SYNC_TASK_FINISHED"): {
        "tasks": {"sync:ACCOUNT:a-1:SYNC": ("SUCCEEDED", True)},
        **connected_by_data(),
        "stage": "connected",
    },
    (Source.WEBHOOK, "ARCHIVE_STARTED"): archive("started", "uploads"),
    (Source.WEBHOOK, "ARCHIVE_ANALYZED"): archive("analyzed", "data_ready"),
    (Source.WEBHOOK, "ARCHIVE_REVOKED"): archive("revoked", "created"),
    (Source.WEBHOOK, "ARCHIVE_FAILED"): archive("failed", "created"),
    (Source.WEBHOOK, "INVITE_INVITED"): {"invite": ("iv-1", "invited")},
    (Source.WEBHOOK, "INVITE_LINKED"): {"invite": ("iv-1", "linked")},
    (Source.WEBHOOK, "IDENTITY_ADDED"): data("identity"),
    (Source.WEBHOOK, "RATING_ADDED"): data("rating"),
    (Source.WEBHOOK, "TRANSACTIONS_ADDED"): data("transactions"),
    (Source.WEBHOOK, "DOCUMENTS_ADDED"): data("documents"),
    (Source.WEBHOOK, "EMPLOYMENTS_ADDED"): data("employments"),
    (Source.WEBHOOK, "INCOMES_ADDED"): data("incomes"),
    (Source.WEBHOOK, "CONTRIBUTIONS_ADDED"): data("contributions"),
    (Source.WEBHOOK, "EINCOMES_ADDED"): data("eincomes"),
    (Source.WEBHOOK, "LIABILITIES_ADDED"): data("liabilities"),
    (Source.WEBHOOK, "INSIGHT_ADDED"): data("insight"),
    (Source.WEBHOOK, "LINK_ADDED"): data("link"),
    (Source.WEBHOOK, "DOCUMENTS_UPDATED"): data("documents"),
    (Source.WEBHOOK, "EMPLOYMENTS_UPDATED"): data("employments"),
    (Source.WEBHOOK, "INCOMES_UPDATED"): data("incomes"),
    (Source.WEBHOOK, "CONTRIBUTIONS_UPDATED"): data("contributions"),
    (Source.WEBHOOK, "EINCOMES_UPDATED"): data("eincomes"),
    (Source.WEBHOOK, "LIABILITIES_UPDATED"): data("liabilities"),
    (Source.WEBHOOK, "VERIFICATION_STARTED"): HISTORY_ONLY,
    (Source.WEBHOOK, "VERIFICATION_COMPLETED"): HISTORY_ONLY,
    (Source.WEBHOOK, "RECORD_CREATED"): HISTORY_ONLY,
    (Source.WEBHOOK, "RECORD_COMPLETED"): HISTORY_ONLY,
    (Source.WEBHOOK, "USER_SESSION_COMPLETED"): {
        "session": ("COMPLETED", "USER_SESSION_COMPLETED")
    },
    (Source.WEBHOOK, "USER_SESSION_RESET"): {"session": ("COMPLETED", "USER_SESSION_RESET")},
    (Source.RECONCILE, "ACCOUNT_AWAITING_MFA"): account("awaiting_mfa", "reconcile"),
    (Source.WIDGET, "onAccountCreated"): account("pending", "widget"),
    (Source.WIDGET, "onAccountConnected"): account("connected", "widget"),
    (Source.WIDGET, "onAccountRemoved"): account("disconnected", "widget"),
    (Source.WIDGET, "onAccountError"): account("error", "widget"),
    (Source.WIDGET, "onTokenExpired"): {"token_reports": 1},
    (Source.WIDGET, "onClose"): {"widget": ("closed", "exit", None, 0, 0)},
    (Source.WIDGET, "onUploadsCreated"): {
        "widget": ("unknown", None, None, 1, 0),
        "stage": "uploads",
    },
    (Source.WIDGET, "onUploadsRemoved"): {"widget": ("unknown", None, None, 0, 1)},
    (Source.WIDGET, "onUIEvent"): {
        "widget": ("open", None, "MfaPageOpened", 0, 0),
        # the MFA screen names account a-2: a hint that it awaits MFA (no providers reported)
        "accounts": {"a-2": ("awaiting_mfa", "widget", False, None, ["abccorp"])},
        "stage": "account_created",
    },
}


def test_every_catalogue_entry_has_an_expected_effect() -> None:
    assert set(EXPECTED) == set(CATALOGUE)


@pytest.mark.parametrize(("source", "name"), sorted(EXPECTED), ids=lambda v: str(v))
def test_each_catalogue_entry_has_its_effect(source: Source, name: str) -> None:
    facts = apply_all(new_journal("u"), [ev(name, "et-1", 0, source, **DATA)]).facts
    assert observe(facts) == EXPECTED[(source, name)]
    assert facts.last_event_at == at(0)


@pytest.mark.parametrize("name", sorted(WEBHOOK_TYPES))
def test_reconciliation_speaks_every_webhook_type_with_its_effect(name: str) -> None:
    spec = spec_for(Source.RECONCILE, name)
    assert spec is not None and spec == CATALOGUE[(Source.WEBHOOK, name)]
    facts = apply_all(new_journal("u"), [ev(name, "a-1:record", 0, Source.RECONCILE, **DATA)]).facts
    expected = dict(EXPECTED[(Source.WEBHOOK, name)])
    if "accounts" in expected:  # the same account, reported by reconciliation
        expected["accounts"] = {
            k: (s, "reconcile", *rest) for k, (s, _, *rest) in expected["accounts"].items()
        }
    assert observe(facts) == expected
    assert (
        facts.archives.get("ar-1") is None or facts.archives["ar-1"].reported_by is Source.RECONCILE
    )


def test_only_reconciliation_says_awaiting_mfa_and_the_widget_speaks_only_callbacks() -> None:
    assert spec_for(Source.WEBHOOK, "ACCOUNT_AWAITING_MFA") is None
    assert spec_for(Source.RECONCILE, "ACCOUNT_AWAITING_MFA") is not None
    assert spec_for(Source.WIDGET, "ACCOUNT_CONNECTED") is None
    assert spec_for(Source.WEBHOOK, "onAccountConnected") is None
    assert spec_for(Source.RECONCILE, "onClose") is None
    # so a browser's ACCOUNT_CONNECTED is an unknown type, not a connection
    facts = apply_all(
        new_journal("u"), [ev("ACCOUNT_CONNECTED", "cb-1", 0, Source.WIDGET, **DATA)]
    ).facts
    assert observe(facts) == {"unknown": ["ACCOUNT_CONNECTED"]}


def test_the_table_is_keyed_by_each_entrys_own_source_and_name() -> None:
    for (source, name), spec in CATALOGUE.items():
        assert (spec.source, spec.name) == (source, name)
        assert spec.summary  # every entry is documented
    effects = {spec.effect for spec in CATALOGUE.values()}
    assert effects == set(Effect)  # every effect is used by some entry


def test_updated_types_are_the_updatable_data_types() -> None:
    updated = {name for name in WEBHOOK_TYPES if name.endswith("_UPDATED")}
    assert updated == {
        f"{p}_UPDATED"
        for p in ("DOCUMENTS", "EMPLOYMENTS", "INCOMES", "CONTRIBUTIONS", "EINCOMES", "LIABILITIES")
    }


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("onAccountCreated", ConnectionStatus.PENDING),
        ("onAccountConnected", ConnectionStatus.CONNECTED),
        ("onAccountRemoved", ConnectionStatus.DISCONNECTED),
        ("onAccountError", ConnectionStatus.ERROR),
    ],
)
def test_the_widgets_account_callbacks_are_hints_a_webhook_overrides(
    name: str, status: ConnectionStatus
) -> None:
    hint = ev(name, "cb-1", 9, Source.WIDGET, accountId="a-1", errorCode="E")
    webhook = ev("ACCOUNT_CREATED", "et-1", 0, accountId="a-1")
    alone = apply_all(new_journal("u"), [hint]).facts.accounts["a-1"]
    assert (alone.status, alone.reported_by) == (status, Source.WIDGET)
    for journey in ([hint, webhook], [webhook, hint]):
        account = apply_all(new_journal("u"), journey).facts.accounts["a-1"]
        assert (account.status, account.reported_by) == (ConnectionStatus.PENDING, Source.WEBHOOK)
    stage = derive_stage(apply_all(new_journal("u"), [hint]).facts, REQUIRED)
    assert stage is (
        Stage.CONNECTED if status is ConnectionStatus.CONNECTED else Stage.ACCOUNT_CREATED
    )
