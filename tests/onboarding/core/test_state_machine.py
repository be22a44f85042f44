"""The pure state machine, directly: each event's effect, duplicates, unknown types, stages."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from onboarding.core.catalogue import Effect, spec_for
from onboarding.core.compact import compact_data
from onboarding.core.models import ConnectionStatus, Event, SmileWebhook, Source, Stage
from onboarding.core.state_machine import (
    apply,
    apply_all,
    derive_stage,
    new_journal,
    presented_accounts,
)
from tests.smile_samples import event, example_body, example_types

REQUIRED = ["identity", "employments", "incomes"]


def stage_after(*events: Event, required: list[str] = REQUIRED) -> Stage:
    return derive_stage(apply_all(new_journal("u-test"), events).facts, required)


def test_a_new_onboarding_is_created() -> None:
    assert stage_after() is Stage.CREATED
    assert stage_after(event("USER_CREATED")) is Stage.CREATED


@pytest.mark.parametrize(
    ("event_type", "stage", "status"),
    [
        ("ACCOUNT_CREATED", Stage.ACCOUNT_CREATED, ConnectionStatus.PENDING),
        ("ACCOUNT_CONNECTED", Stage.CONNECTED, ConnectionStatus.CONNECTED),
        ("ACCOUNT_FAILED", Stage.ACCOUNT_CREATED, ConnectionStatus.ERROR),
        ("ACCOUNT_DISCONNECTED", Stage.ACCOUNT_CREATED, ConnectionStatus.DISCONNECTED),
    ],
)
def test_account_events_set_the_connection_status(
    event_type: str, stage: Stage, status: ConnectionStatus
) -> None:
    journal = apply(
        new_journal("u"),
        event(event_type, accountId="a-1", providers=["abccorp"], errorCode="INVALID_CREDENTIALS"),
    )
    account = journal.facts.accounts["a-1"]
    assert account.status is status
    assert account.providers == ["abccorp"]
    assert account.reported_by is Source.WEBHOOK
    assert (account.error_code == "INVALID_CREDENTIALS") == (status is ConnectionStatus.ERROR)
    assert derive_stage(journal.facts, REQUIRED) is stage


def test_archive_started_is_the_uploads_stage_and_revocation_undoes_it() -> None:
    started = event("ARCHIVE_STARTED", archiveId="archive-1", at=1)
    assert stage_after(started) is Stage.UPLOADS
    assert (
        stage_after(started, event("ARCHIVE_REVOKED", archiveId="archive-1", at=2)) is Stage.CREATED
    )


def test_all_required_data_makes_data_ready() -> None:
    connected = event("ACCOUNT_CONNECTED", accountId="a-1")
    identity = event("IDENTITY_ADDED", accountId="a-1")
    employments = event("EMPLOYMENTS_ADDED", accountId="a-1", count=3)
    incomes = event("INCOMES_ADDED", accountId="a-1", count=2)
    assert stage_after(connected, identity, employments) is Stage.CONNECTED
    assert stage_after(connected, identity, employments, incomes) is Stage.DATA_READY
    facts = apply_all(new_journal("u"), [identity, employments, incomes]).facts
    assert facts.data["employments"].items == 3
    assert facts.data["identity"].items == 1


def test_required_data_is_configurable() -> None:
    assert stage_after(event("INCOMES_ADDED"), required=["incomes"]) is Stage.DATA_READY
    assert stage_after(event("INCOMES_ADDED"), required=[]) is Stage.CREATED


def test_task_finished_succeeded_on_an_account_makes_data_ready() -> None:
    finished = event(
        "TASK_FINISHED",
        sourceId="a-1",
        sourceType="ACCOUNT",
        taskType="LINK_ACCOUNT",
        status="SUCCEEDED",
        at=5,
    )
    # Smile's own word that data was synced is proof enough, with or without ACCOUNT_CONNECTED.
    assert stage_after(finished) is Stage.DATA_READY
    assert stage_after(event("ACCOUNT_CONNECTED", accountId="a-1"), finished) is Stage.DATA_READY
    failed = event(
        "TASK_FINISHED",
        sourceId="a-1",
        sourceType="ACCOUNT",
        taskType="LINK_ACCOUNT",
        status="FAILED",
        at=5,
    )
    assert stage_after(event("ACCOUNT_CONNECTED", accountId="a-1"), failed) is Stage.CONNECTED


def test_task_finished_for_an_archive_makes_data_ready() -> None:
    finished = event(
        "TASK_FINISHED",
        sourceId="archive-1",
        sourceType="ARCHIVE",
        taskType="ANALYZE",
        status="SUCCEEDED",
    )
    assert stage_after(finished) is Stage.DATA_READY


def test_widget_claims_never_make_data_ready() -> None:
    widget_connected = event("onAccountConnected", source=Source.WIDGET, accountId="a-1")
    finished = event(
        "TASK_FINISHED",
        sourceId="a-1",
        sourceType="ACCOUNT",
        taskType="LINK_ACCOUNT",
        status="SUCCEEDED",
        at=5,
    )
    uploads = event("onUploadsCreated", source=Source.WIDGET, uploads={"files": 1})
    screen = event("onUIEvent", source=Source.WIDGET, eventName="ArchiveSuccessPageOpened", at=6)
    assert stage_after(widget_connected) is Stage.CONNECTED  # a hint may advance the stage
    assert stage_after(widget_connected, uploads, screen) is Stage.UPLOADS  # never to data_ready
    journal = apply_all(new_journal("u"), [widget_connected, uploads, screen])
    assert not journal.facts.accounts["a-1"].ever_connected
    # A widget claim of the same account adds nothing to Smile's own word.
    assert stage_after(widget_connected, finished) is Stage.DATA_READY


def test_webhook_beats_widget_whatever_the_timestamps() -> None:
    webhook = event("ACCOUNT_FAILED", accountId="a-1", errorCode="INVALID_CREDENTIALS", at=1)
    widget = event("onAccountConnected", source=Source.WIDGET, accountId="a-1", at=99)
    for order in ([webhook, widget], [widget, webhook]):
        account = apply_all(new_journal("u"), order).facts.accounts["a-1"]
        assert account.status is ConnectionStatus.ERROR
        assert account.reported_by is Source.WEBHOOK


def test_last_writer_wins_by_created_at_not_arrival() -> None:
    connected = event("ACCOUNT_CONNECTED", accountId="a-1", at=10)
    created = event("ACCOUNT_CREATED", accountId="a-1", at=1)
    account = apply_all(new_journal("u"), [connected, created]).facts.accounts["a-1"]
    assert account.status is ConnectionStatus.CONNECTED


def test_duplicates_change_nothing() -> None:
    connected = event("ACCOUNT_CONNECTED", event_id="et-dup", accountId="a-1")
    once = apply(new_journal("u"), connected)
    twice = apply(once, connected)
    assert twice.facts == once.facts
    assert twice.history == once.history
    assert twice.events_total == 1
    assert twice.duplicates_ignored == 1


def test_same_id_from_the_widget_does_not_suppress_a_webhook() -> None:
    forged = event("onAccountRemoved", source=Source.WIDGET, event_id="et-1", accountId="a-1")
    real = event("ACCOUNT_CONNECTED", event_id="et-1", accountId="a-1")
    journal = apply_all(new_journal("u"), [forged, real])
    assert journal.events_total == 2
    assert journal.facts.accounts["a-1"].status is ConnectionStatus.CONNECTED


def test_unknown_types_are_kept_in_history_and_change_no_stage() -> None:
    journal = apply(new_journal("u"), event("SOMETHING_NEW", foo="bar"))
    assert journal.facts.unknown_types == ["SOMETHING_NEW"]
    assert [(r.type, r.known) for r in journal.history] == [("SOMETHING_NEW", False)]
    assert derive_stage(journal.facts, REQUIRED) is Stage.CREATED


def test_apply_is_pure() -> None:
    before = new_journal("u")
    snapshot = before.model_copy(deep=True)
    apply(before, event("ACCOUNT_CONNECTED", accountId="a-1"))
    assert before == snapshot


def test_dedupe_window_and_history_are_bounded() -> None:
    events = [event("IDENTITY_ADDED", event_id=f"et-{i}", at=i) for i in range(30)]
    journal = apply_all(new_journal("u"), events, dedupe_window=10, history_limit=5)
    assert len(journal.seen) == 10
    assert [r.id for r in journal.history] == [f"et-{i}" for i in range(25, 30)]
    assert journal.events_total == 30
    # The window is the last ten: those are duplicates, the one before them is not.
    replayed = apply_all(journal, events[20:], dedupe_window=10, history_limit=5)
    assert (replayed.events_total, replayed.duplicates_ignored) == (30, 10)
    evicted = apply_all(journal, [events[19]], dedupe_window=10, history_limit=5)
    assert (evicted.events_total, evicted.duplicates_ignored) == (31, 0)
    assert evicted.facts.data["identity"].events == 31


def test_widget_callbacks() -> None:
    events = [
        event(
            "onUIEvent",
            source=Source.WIDGET,
            at=1,
            eventName="MfaPageOpened",
            account={"accountId": "a-1", "providerId": "abccorp"},
        ),
        event("onTokenExpired", source=Source.WIDGET, at=2),
        event("onUploadsCreated", source=Source.WIDGET, at=3, uploads={"fileType": "PAYSLIP"}),
        event("onClose", source=Source.WIDGET, at=4, reason="exit"),
    ]
    journal = apply_all(new_journal("u"), events)
    facts = journal.facts
    assert facts.accounts["a-1"].status is ConnectionStatus.AWAITING_MFA
    assert facts.accounts["a-1"].reported_by is Source.WIDGET
    assert facts.token.expired_reports == 1
    assert (facts.widget.state, facts.widget.close_reason) == ("closed", "exit")
    assert facts.widget.last_screen == "MfaPageOpened"
    assert derive_stage(facts, REQUIRED) is Stage.UPLOADS
    removed = apply(journal, event("onUploadsRemoved", source=Source.WIDGET, at=5))
    assert derive_stage(removed.facts, REQUIRED) is Stage.ACCOUNT_CREATED


def test_invite_and_sync_tasks_are_recorded() -> None:
    journal = apply_all(
        new_journal("u"),
        [
            event("INVITE_INVITED", inviteId="iv-1", at=1),
            event("INVITE_LINKED", inviteId="iv-1", at=2),
            event(
                "ACCOUNT_SYNC_TASK_FINISHED",
                sourceId="a-1",
                sourceType="ACCOUNT",
                taskType="SYNC",
                status="SUCCEEDED",
                at=3,
            ),
        ],
    )
    assert journal.facts.invite is not None and journal.facts.invite.status == "linked"
    (task,) = journal.facts.tasks.values()
    assert (task.kind, task.status) == ("sync", "SUCCEEDED")
    # A periodic re-sync proves the account connected, but is not the first data.
    assert journal.facts.accounts["a-1"].status is ConnectionStatus.CONNECTED
    assert derive_stage(journal.facts, REQUIRED) is Stage.CONNECTED


@pytest.mark.parametrize("event_type", example_types())
def test_every_documented_example_applies(event_type: str) -> None:
    envelope = SmileWebhook.model_validate_json(example_body(event_type))
    ev = Event(
        id=envelope.id,
        type=envelope.type,
        source=Source.WEBHOOK,
        created_at=envelope.created_at,
        received_at=envelope.created_at,
        data=compact_data(envelope.data),
    )
    journal = apply(new_journal("u"), ev)
    assert journal.events_total == 1
    assert journal.facts.unknown_types == []
    assert "payload" not in ev.data and "loginName" not in ev.data
    json.loads(journal.model_dump_json())  # stays serialisable
    # ... and has the effect its catalogue entry promises, read from Smile's own payload.
    spec = spec_for(Source.WEBHOOK, event_type)
    assert spec is not None
    facts, data = journal.facts, envelope.data
    match spec.effect:
        case Effect.USER:
            assert facts.user_created_at == envelope.created_at
        case Effect.ACCOUNT:
            account = facts.accounts[data["accountId"]]
            assert (account.status, account.event_id) == (spec.arg, envelope.id)
            assert account.providers == sorted(data.get("providers") or [data["providerId"]])
        case Effect.TASK | Effect.SYNC_TASK:
            (task,) = facts.tasks.values()
            assert (task.source_id, task.task_type) == (data["sourceId"], data["taskType"])
            assert task.succeeded is (event_type == "TASK_FINISHED")  # the example succeeded
        case Effect.ARCHIVE:
            assert facts.archives[data["archiveId"]].status == spec.arg
        case Effect.INVITE:
            assert facts.invite is not None and facts.invite.status == spec.arg
            assert facts.invite.invite_id == data.get("inviteId")
        case Effect.DATA:
            assert spec.arg is not None and facts.data[spec.arg].events == 1
            if "accountId" in data:
                assert facts.accounts[data["accountId"]].ever_connected
        case _:
            assert spec.effect is Effect.HISTORY_ONLY
            blank = new_journal("u").facts
            assert facts == blank.model_copy(update={"last_event_at": envelope.created_at})


# --- uploads, sessions, MFA hints, versions ---------------------------------------------------


def test_an_upload_only_journey_is_data_ready_once_smile_analyzed_it() -> None:
    started = event("ARCHIVE_STARTED", archiveId="archive-1", at=1)
    analyzed = event("ARCHIVE_ANALYZED", archiveId="archive-1", at=2)
    revoked = event("ARCHIVE_REVOKED", archiveId="archive-1", at=3)
    assert stage_after(started) is Stage.UPLOADS
    assert stage_after(started, analyzed) is Stage.DATA_READY
    # Its data was delivered: a later revocation does not take back data_ready.
    assert stage_after(started, analyzed, revoked) is Stage.DATA_READY
    failed = event("ARCHIVE_FAILED", archiveId="archive-2", at=2, errorCode="FILE_UNABLE")
    assert stage_after(event("ARCHIVE_STARTED", archiveId="archive-2", at=1), failed) is (
        Stage.CREATED
    )


@pytest.mark.parametrize("source_type", ["UPLOAD", "ARCHIVE", "SOCIAL_SECURITY", "ACCOUNT"])
def test_a_succeeded_task_of_any_source_type_makes_data_ready(source_type: str) -> None:
    finished = event(
        "TASK_FINISHED",
        sourceId="src-1",
        sourceType=source_type,
        taskType="SCAN",
        status="SUCCEEDED",
    )
    assert stage_after(finished) is Stage.DATA_READY
    failed = finished.model_copy(
        update={"id": "et-failed", "data": {**finished.data, "status": "FAILED"}}
    )
    assert stage_after(failed) is not Stage.DATA_READY


def test_a_succeeded_upload_task_does_not_invent_an_account() -> None:
    finished = event(
        "TASK_FINISHED", sourceId="u-1", sourceType="UPLOAD", taskType="SCAN", status="SUCCEEDED"
    )
    assert apply_all(new_journal("u"), [finished]).facts.accounts == {}


def test_session_events_record_the_wink_session_and_never_its_payload() -> None:
    session = {"userId": "u-test", "channel": "WinkSite", "status": "COMPLETED"}
    completed = event("USER_SESSION_COMPLETED", at=1, session=session)
    reset = event("USER_SESSION_RESET", at=1, session={**session, "status": "IN_PROGRESS"})
    facts = apply_all(new_journal("u"), [completed]).facts
    assert facts.session is not None
    assert (facts.session.status, facts.session.channel) == ("COMPLETED", "WinkSite")
    for order in ([completed, reset], [reset, completed]):
        facts = apply_all(new_journal("u"), order).facts
        assert facts.session is not None
        assert (facts.session.status, facts.session.event_type) == (
            "IN_PROGRESS",
            "USER_SESSION_RESET",
        )  # a reset in the second of the completion follows it
    assert derive_stage(facts, REQUIRED) is Stage.CREATED


def test_mfa_screen_naming_only_a_provider_shows_its_pending_accounts_awaiting_mfa() -> None:
    created = event("ACCOUNT_CREATED", accountId="a-1", providers=["abccorp"], at=1)
    other = event("ACCOUNT_CREATED", accountId="a-2", providers=["xyz"], at=1)
    mfa = event(
        "onUIEvent",
        source=Source.WIDGET,
        at=2,
        eventName="MfaPageOpened",
        account={"providerId": "abccorp"},
    )
    for order in ([created, other, mfa], [mfa, other, created]):
        facts = apply_all(new_journal("u"), order).facts
        shown = {a.account_id: a.status for a in presented_accounts(facts)}
        assert shown == {"a-1": ConnectionStatus.AWAITING_MFA, "a-2": ConnectionStatus.PENDING}
        assert facts.accounts["a-1"].status is ConnectionStatus.PENDING  # stored as Smile said
    connected = event("ACCOUNT_CONNECTED", accountId="a-1", at=3)
    facts = apply_all(new_journal("u"), [created, mfa, connected]).facts
    assert presented_accounts(facts)[0].status is ConnectionStatus.CONNECTED
    stale = event("ACCOUNT_CREATED", accountId="a-3", providers=["abccorp"], at=5)
    facts = apply_all(new_journal("u"), [mfa, stale]).facts
    assert presented_accounts(facts)[0].status is ConnectionStatus.PENDING  # MFA was before it


def test_mfa_screen_naming_the_account_marks_it_awaiting_mfa() -> None:
    created = event("ACCOUNT_CREATED", accountId="a-1", at=1)
    mfa = event(
        "onUIEvent",
        source=Source.WIDGET,
        at=2,
        eventName="MfaPageOpened",
        account={"accountId": "a-1", "providerId": "abccorp"},
    )
    facts = apply_all(new_journal("u"), [created, mfa]).facts
    assert facts.accounts["a-1"].status is ConnectionStatus.PENDING  # proof beats the hint
    facts = apply_all(new_journal("u"), [mfa]).facts
    assert facts.accounts["a-1"].status is ConnectionStatus.AWAITING_MFA


def test_callbacks_without_their_ids_are_recorded_and_change_no_account() -> None:
    error = event("onAccountError", source=Source.WIDGET, errorCode=None)
    close = event("onClose", source=Source.WIDGET, at=1)
    journal = apply_all(new_journal("u"), [error, close])
    assert journal.facts.accounts == {}
    assert (journal.facts.widget.state, journal.facts.widget.close_reason) == ("closed", None)
    assert [r.type for r in journal.history] == ["onAccountError", "onClose"]


def test_other_envelope_versions_are_applied_and_counted() -> None:
    v2 = event("ACCOUNT_CONNECTED", accountId="a-1").model_copy(update={"version": 2})
    v1 = event("ACCOUNT_CREATED", accountId="a-2")
    journal = apply_all(new_journal("u"), [v2, v1, v2])
    assert journal.facts.other_versions == {"2": 1}
    assert journal.facts.accounts["a-1"].status is ConnectionStatus.CONNECTED
    assert sorted(r.version for r in journal.history) == [1, 2]
    for version in (1.5, "2-beta"):
        envelope = SmileWebhook.model_validate(
            {
                "id": "et-1",
                "version": version,
                "type": "USER_CREATED",
                "createdAt": "2021-04-14T09:30:24Z",
                "data": {"userId": "u"},
            }
        )
        later = event("USER_CREATED").model_copy(update={"version": envelope.version})
        counted = apply_all(new_journal("u"), [later]).facts.other_versions
        assert counted == {str(version): 1}


def test_a_naive_created_at_is_read_as_utc() -> None:
    envelope = SmileWebhook.model_validate(
        {
            "id": "et-1",
            "version": 1,
            "type": "USER_CREATED",
            "createdAt": "2021-04-14T09:30:24",
            "data": {"userId": "u"},
        }
    )
    assert envelope.created_at.utcoffset() == timedelta(0)
    naive = Event(
        id="x", type="USER_CREATED", source=Source.WEBHOOK,
        created_at=datetime(2021, 4, 14, 9, 30, 24), received_at=datetime(2021, 4, 14, 9, 30, 24),
    )  # fmt: skip
    assert naive.created_at.tzinfo is not None and naive.received_at.tzinfo is not None
    # Mixed with aware times in one journal, nothing raises.
    apply_all(new_journal("u"), [naive, event("ACCOUNT_CREATED", accountId="a-1")])


@pytest.mark.parametrize(
    ("event_type", "data", "status", "stage"),
    [
        ("TASK_STARTED", {}, "STARTED", Stage.ACCOUNT_CREATED),
        ("TASK_FINISHED", {}, "FINISHED", Stage.ACCOUNT_CREATED),  # outcome unknown
        ("TASK_FINISHED", {"datapoints": []}, "FINISHED", Stage.ACCOUNT_CREATED),
        ("TASK_FINISHED", {"datapoints": ["IDENTITIES"]}, "SUCCEEDED", Stage.DATA_READY),
        ("TASK_FINISHED", {"status": "failed", "datapoints": ["X"]}, "FAILED", None),
        ("ACCOUNT_SYNC_TASK_FINISHED", {}, "FINISHED", Stage.ACCOUNT_CREATED),
    ],
)
def test_a_finished_task_without_a_status_succeeded_only_if_it_saved_datapoints(
    event_type: str, data: dict[str, object], status: str, stage: Stage | None
) -> None:
    created = event("ACCOUNT_CREATED", accountId="a-1", at=0)
    task = event(event_type, sourceId="a-1", sourceType="ACCOUNT", taskType="SYNC", at=1, **data)
    facts = apply_all(new_journal("u"), [created, task]).facts
    (recorded,) = facts.tasks.values()
    assert recorded.status == status
    assert recorded.succeeded is (status == "SUCCEEDED")
    if stage is not None:
        assert derive_stage(facts, REQUIRED) is stage
