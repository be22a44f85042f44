"""Smile's records turned into reconcile events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.reconcile import reconcile
from activities.smile_models import SmileAccount, SmileArchive, SmileSnapshot
from onboarding.models import ConnectionStatus, Source, Stage
from onboarding.state_machine import apply_all, derive_stage, new_journal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def account(account_id: str, status: str, updated: str = "2025-12-31T10:00:00Z") -> SmileAccount:
    return SmileAccount.model_validate({
        "id": account_id, "providerId": "grab", "userId": "u", "connectionStatus": status,
        "connection": {"status": status, "errorCode": "ACCOUNT_DISABLED" if status == "ERROR"
                       else None, "errorMessage": None, "updatedAt": updated},
    })  # fmt: skip


def test_every_connection_status_maps_to_a_fact() -> None:
    snapshot = SmileSnapshot(
        user_id="u",
        accounts=[account(f"a-{s}", s) for s in
                  ("PENDING", "AWAITING_MFA", "CONNECTED", "ERROR", "DISCONNECTED")],
        archives=[SmileArchive.model_validate({"id": "ar-1", "state": {"status": "ANALYZED"}})],
    )  # fmt: skip
    result = reconcile(snapshot, NOW)
    assert (result.accounts, result.archives, len(result.events)) == (5, 1, 6)
    facts = apply_all(new_journal("u"), result.events).facts
    assert {a: facts.accounts[a].status for a in facts.accounts} == {
        "a-PENDING": ConnectionStatus.PENDING,
        "a-AWAITING_MFA": ConnectionStatus.AWAITING_MFA,
        "a-CONNECTED": ConnectionStatus.CONNECTED,
        "a-ERROR": ConnectionStatus.ERROR,
        "a-DISCONNECTED": ConnectionStatus.DISCONNECTED,
    }
    assert facts.accounts["a-ERROR"].error_code == "ACCOUNT_DISABLED"
    assert facts.accounts["a-CONNECTED"].ever_connected  # reconciliation is proof
    assert facts.archives["ar-1"].status == "analyzed"
    assert {a.reported_by for a in facts.accounts.values()} == {Source.RECONCILE}
    assert derive_stage(facts, []) is Stage.UPLOADS


def test_the_same_record_reconciled_twice_is_one_fact() -> None:
    snapshot = SmileSnapshot(user_id="u", accounts=[account("a-1", "CONNECTED")], archives=[])
    first = reconcile(snapshot, NOW).events
    second = reconcile(snapshot, datetime(2026, 1, 2, tzinfo=UTC)).events
    journal = apply_all(new_journal("u"), first + second)
    assert (journal.events_total, journal.duplicates_ignored) == (1, 1)


def test_a_newer_webhook_beats_an_older_reconciled_record() -> None:
    from tests.smile_samples import event

    stale = reconcile(
        SmileSnapshot(user_id="u", accounts=[account("a-1", "PENDING", "2021-04-14T09:00:00Z")],
                      archives=[]), NOW).events  # fmt: skip
    webhook = event("ACCOUNT_CONNECTED", accountId="a-1", at=600)  # 09:40:24 that day
    facts = apply_all(new_journal("u"), [webhook, *stale]).facts
    assert facts.accounts["a-1"].status is ConnectionStatus.CONNECTED
