"""Smile's records turned into reconcile events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.reconcile import DATA_ENDPOINTS, data_types_to_query, reconcile, task_outcome
from activities.smile_models import (
    DataPresence,
    SmileAccount,
    SmileArchive,
    SmileSnapshot,
    SmileTask,
)
from onboarding.core.models import ConnectionStatus, Source, Stage
from onboarding.core.state_machine import apply_all, derive_stage, new_journal

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
    # An archive analyzed into data makes the data ready (the core's rule).
    assert derive_stage(facts, []) is Stage.DATA_READY


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


# --- accounts Smile reports without a usable status ------------------------------------------


def test_an_account_without_a_connection_status_is_skipped_not_fatal() -> None:
    unknown = SmileAccount.model_validate(
        {"id": "a-null", "connectionStatus": None, "connection": None}
    )
    odd = account("a-odd", "SOMETHING_NEW")
    fine = account("a-ok", "CONNECTED")
    result = reconcile(SmileSnapshot(user_id="u", accounts=[unknown, odd, fine], archives=[]), NOW)
    assert [e.data["accountId"] for e in result.events] == ["a-ok"]
    assert (result.accounts, result.skipped) == (3, 2)


def test_a_null_connection_status_falls_back_to_the_connection_s_own() -> None:
    record = SmileAccount.model_validate({
        "id": "a-1", "connectionStatus": None,
        "connection": {"status": "CONNECTED", "updatedAt": "2025-12-31T10:00:00Z"},
    })  # fmt: skip
    (only,) = reconcile(SmileSnapshot(user_id="u", accounts=[record], archives=[]), NOW).events
    assert only.type == "ACCOUNT_CONNECTED"


def test_an_archive_without_a_state_is_skipped() -> None:
    archive = SmileArchive.model_validate({"id": "ar-1", "state": None})
    result = reconcile(SmileSnapshot(user_id="u", accounts=[], archives=[archive]), NOW)
    assert (result.events, result.skipped) == ([], 1)


def test_naive_times_from_smile_are_read_as_utc() -> None:
    record = account("a-1", "CONNECTED", updated="2025-12-31T10:00:00")
    assert record.connection is not None and record.connection.updated_at is not None
    assert record.connection.updated_at.tzinfo is not None
    (only,) = reconcile(SmileSnapshot(user_id="u", accounts=[record], archives=[]), NOW).events
    assert only.created_at == datetime(2025, 12, 31, 10, tzinfo=UTC)
    assert only.created_at < NOW  # comparable with the aware times of the core


# --- tasks -------------------------------------------------------------------------------


def task(task_id: str, status: str, datapoints: list[str] | None = None,
         finished: str | None = "2025-12-31T11:00:00Z", source_type: str = "ACCOUNT",
         source_id: str = "a-1") -> SmileTask:  # fmt: skip
    return SmileTask.model_validate({
        "id": task_id, "type": "LINK_ACCOUNT", "startedAt": "2025-12-31T10:59:00Z",
        "finishedAt": finished, "status": status, "datapoints": datapoints or [],
        "metadata": {"createdAt": "2025-12-31T10:59:00Z", "itemCreatedAt": "2025-12-31T10:59:00Z",
                     "sourceId": source_id, "sourceType": source_type, "userId": "u",
                     "providerId": "upwork"},
    })  # fmt: skip


def snapshot_of(*tasks: SmileTask, data: list[DataPresence] | None = None) -> SmileSnapshot:
    return SmileSnapshot(user_id="u", accounts=[], archives=[], tasks=list(tasks), data=data or [])


def test_a_finished_task_that_saved_data_is_a_succeeded_task_finished() -> None:
    (only,) = reconcile(snapshot_of(task("task-1", "Finished", ["IDENTITIES"])), NOW).events
    assert only.type == "TASK_FINISHED"
    assert only.source is Source.RECONCILE
    assert only.created_at == datetime(2025, 12, 31, 11, tzinfo=UTC)
    # The webhook's fields, and nothing of the user's data.
    assert only.data == {
        "userId": "u", "sourceId": "a-1", "sourceType": "ACCOUNT", "taskType": "LINK_ACCOUNT",
        "status": "SUCCEEDED", "errorCode": None, "providers": ["upwork"],
    }  # fmt: skip
    assert only.id == "task:task-1:SUCCEEDED:2025-12-31T11:00:00+00:00"


def test_task_outcomes() -> None:
    assert task_outcome(task("t", "Finished", ["INCOMES"])) == "SUCCEEDED"
    assert task_outcome(task("t", "Finished", [])) == "FINISHED"  # saved nothing: not a success
    assert task_outcome(task("t", "FINISHED", ["INCOMES"])) == "SUCCEEDED"
    assert task_outcome(task("t", "Started", finished=None)) == "STARTED"
    assert task_outcome(task("t", "SUCCEEDED")) == "SUCCEEDED"
    assert task_outcome(task("t", "FAILED")) == "FAILED"
    assert task_outcome(task("t", "Paused")) is None


def test_a_running_task_is_task_started_without_a_status() -> None:
    (only,) = reconcile(snapshot_of(task("task-1", "Started", finished=None)), NOW).events
    assert only.type == "TASK_STARTED"
    assert "status" not in only.data


def test_a_task_reconciled_twice_is_one_event_and_its_finish_is_another() -> None:
    started = reconcile(snapshot_of(task("task-1", "Started", finished=None)), NOW).events
    finished = reconcile(snapshot_of(task("task-1", "Finished", ["INCOMES"])), NOW).events
    again = reconcile(snapshot_of(task("task-1", "Finished", ["INCOMES"])), NOW).events
    assert finished[0].id == again[0].id != started[0].id
    journal = apply_all(new_journal("u"), started + finished + again)
    assert (journal.events_total, journal.duplicates_ignored) == (2, 1)
    (only,) = journal.facts.tasks.values()
    assert only.succeeded and only.status == "SUCCEEDED"


def test_a_task_without_a_source_is_skipped() -> None:
    orphan = SmileTask.model_validate({"id": "task-x", "status": "Finished", "metadata": None})
    result = reconcile(snapshot_of(orphan), NOW)
    assert (result.events, result.tasks, result.skipped) == ([], 1, 1)


# --- data presence -------------------------------------------------------------------------


def test_present_data_types_become_added_events_with_their_counts() -> None:
    data = [
        DataPresence(dtype="identity", count=1, latest_at=datetime(2025, 12, 30, tzinfo=UTC)),
        DataPresence(dtype="employments", count=2),
        DataPresence(dtype="incomes", count=0),
        DataPresence(dtype="insight", count=4),
    ]
    result = reconcile(snapshot_of(data=data), NOW)
    assert [(e.id, e.type, e.data) for e in result.events] == [
        ("data:IDENTITY", "IDENTITY_ADDED", {"userId": "u", "count": 1}),
        ("data:EMPLOYMENTS", "EMPLOYMENTS_ADDED", {"userId": "u", "count": 2}),
        ("data:INSIGHT", "INSIGHT_ADDED", {"userId": "u", "count": 4}),
    ]
    assert result.events[0].created_at == datetime(2025, 12, 30, tzinfo=UTC)
    assert result.events[1].created_at == NOW  # no item said when it was stored
    assert result.data == {"identity": 1, "employments": 2, "incomes": 0, "insight": 4}


def test_reconciling_data_again_does_not_inflate_the_counts() -> None:
    data = [DataPresence(dtype="incomes", count=3)]
    first = reconcile(snapshot_of(data=data), NOW).events
    later = reconcile(snapshot_of(data=[DataPresence(dtype="incomes", count=5)]), NOW).events
    facts = apply_all(new_journal("u"), first + later + first).facts
    assert (facts.data["incomes"].events, facts.data["incomes"].items) == (1, 3)


def test_every_required_type_present_makes_the_data_ready() -> None:
    required = ["identity", "incomes"]
    partial = reconcile(snapshot_of(data=[DataPresence(dtype="identity", count=1)]), NOW)
    assert derive_stage(apply_all(new_journal("u"), partial.events).facts, required) \
        is not Stage.DATA_READY  # fmt: skip
    both = reconcile(
        snapshot_of(data=[DataPresence(dtype="identity", count=1),
                          DataPresence(dtype="incomes", count=2)]), NOW)  # fmt: skip
    facts = apply_all(new_journal("u"), both.events).facts
    assert derive_stage(facts, required) is Stage.DATA_READY


def test_which_data_types_are_queried() -> None:
    assert data_types_to_query(None) == ["identity", "employments", "incomes"]
    assert data_types_to_query([]) == []
    assert data_types_to_query(["Incomes", "link", "incomes", "nonsense"]) == ["incomes", "link"]
    assert set(DATA_ENDPOINTS) == {
        "identity", "rating", "transactions", "documents", "employments", "incomes",
        "contributions", "eincomes", "liabilities", "insight", "link",
    }  # fmt: skip
