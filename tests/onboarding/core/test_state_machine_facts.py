"""Every fact the onboarding's view exposes, pinned by an example: what each field holds after
the events that set it, the events that are ignored when incomplete, the limits, and what
``StateMachine.apply`` answers (the workflow counts new events by it). Ids are fixed, never
random, wherever a tie-break could reach them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic_core import to_json

from onboarding.core.models import (
    ConnectionStatus,
    Event,
    EventRecord,
    OnboardingOptions,
    Source,
    Stage,
    Timeouts,
)
from onboarding.core.state_machine import (
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_DEDUPE_WINDOW_BYTES,
    DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_LIMIT,
    MAX_MFA_PROVIDERS,
    MAX_UNKNOWN_TYPES,
    MAX_WIDGET_ONLY_ACCOUNTS,
    MAX_WIDGET_PROVIDERS,
    SEEN_ENTRY_BYTES,
    StateMachine,
    apply,
    apply_all,
    dedupe_digest,
    derive_stage,
    has_uploads,
    is_data_ready,
    new_journal,
    presented_accounts,
    task_status,
)
from tests.smile_samples import BASE_TIME

REQUIRED = ["identity", "employments", "incomes"]
TASK = {"sourceId": "a-1", "sourceType": "ACCOUNT", "taskType": "LINK_ACCOUNT"}


def at(second: int) -> Any:
    return BASE_TIME + timedelta(seconds=second)


def ev(
    event_type: str,
    event_id: str,
    second: int = 0,
    source: Source = Source.WEBHOOK,
    **data: Any,
) -> Event:
    """An event with a fixed id (ties never depend on a random one)."""
    return Event(
        id=event_id,
        type=event_type,
        source=source,
        created_at=at(second),
        received_at=at(second),
        data={"userId": "u", **data},
    )


def widget(event_type: str, event_id: str, second: int = 0, **data: Any) -> Event:
    return ev(event_type, event_id, second, Source.WIDGET, **data)


def facts_after(*events: Event) -> Any:
    return apply_all(new_journal("u"), events).facts


def both_orders(*events: Event) -> list[Any]:
    """The facts after the events in the order given and reversed: they must agree."""
    forward, backward = facts_after(*events), facts_after(*reversed(events))
    assert forward == backward
    return [forward, backward]


# --- the most common real sequence -------------------------------------------------------------


def test_a_started_then_succeeded_task_stays_succeeded_and_reaches_data_ready() -> None:
    """TASK_STARTED, then TASK_FINISHED with SUCCEEDED, then a re-run starting: the success is
    sticky, so the user is data_ready (the line keeping it must not go unnoticed)."""
    started = ev("TASK_STARTED", "et-1", 1, **TASK)
    succeeded = ev("TASK_FINISHED", "et-2", 2, status="SUCCEEDED", **TASK)
    rerun = ev("TASK_STARTED", "et-3", 3, **TASK)
    failed_rerun = ev("TASK_FINISHED", "et-4", 4, status="FAILED", **TASK)
    for journey in ([started, succeeded], [started, succeeded, rerun, failed_rerun]):
        journal = apply_all(new_journal("u"), journey)
        (task,) = journal.facts.tasks.values()
        assert task.succeeded
        assert derive_stage(journal.facts, REQUIRED) is Stage.DATA_READY
    (task,) = facts_after(started, succeeded, rerun, failed_rerun).tasks.values()
    assert (task.status, task.updated_at, task.event_id) == ("FAILED", at(4), "et-4")


# --- accounts: every field ---------------------------------------------------------------------


def test_an_account_keeps_every_field_of_its_latest_event() -> None:
    created = ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1", providers=["abccorp"])
    failed = ev(
        "ACCOUNT_FAILED",
        "et-2",
        2,
        accountId="a-1",
        errorCode="INVALID_CREDENTIALS",
        errorMessage="wrong password",
    )
    for facts in both_orders(created, failed):
        account = facts.accounts["a-1"]
        assert account.model_dump() == {
            "account_id": "a-1",
            "providers": ["abccorp"],
            "status": ConnectionStatus.ERROR,
            "error_code": "INVALID_CREDENTIALS",
            "error_message": "wrong password",
            "reported_by": Source.WEBHOOK,
            "updated_at": at(2),
            "event_id": "et-2",
            "ever_connected": False,
        }
    # A later success clears the error: it belongs to the event that set it.
    connected = ev("ACCOUNT_CONNECTED", "et-3", 3, accountId="a-1")
    for facts in both_orders(created, failed, connected):
        account = facts.accounts["a-1"]
        assert (account.status, account.error_code, account.error_message) == (
            ConnectionStatus.CONNECTED,
            None,
            None,
        )
        assert (account.updated_at, account.event_id, account.ever_connected) == (
            at(3),
            "et-3",
            True,
        )


def test_error_fields_are_kept_only_on_an_error() -> None:
    # errorCode on a non-error event is not an error of the account.
    created = ev("ACCOUNT_CREATED", "et-1", accountId="a-1", errorCode="X", errorMessage="Y")
    account = facts_after(created).accounts["a-1"]
    assert (account.error_code, account.error_message) == (None, None)
    hint = widget("onAccountError", "cb-1", accountId="a-2", errorCode="E", errorMessage="M")
    account = facts_after(hint).accounts["a-2"]
    assert (account.status, account.error_code, account.error_message) == (
        ConnectionStatus.ERROR,
        "E",
        "M",
    )
    assert (account.reported_by, account.event_id, account.ever_connected) == (
        Source.WIDGET,
        "cb-1",
        False,
    )


def test_providers_are_the_union_of_every_report() -> None:
    events = [
        ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1", providers=["xyz"]),
        ev("ACCOUNT_CONNECTED", "et-2", 2, accountId="a-1", providers=["abccorp", "xyz"]),
        ev("ACCOUNT_DISCONNECTED", "et-3", 3, accountId="a-1", providers=["mno"]),
    ]
    for facts in both_orders(*events):
        assert facts.accounts["a-1"].providers == ["abccorp", "mno", "xyz"]


def test_provider_id_is_merged_into_providers() -> None:
    first = ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1", providerId="abccorp")
    second = ev("ACCOUNT_CONNECTED", "et-2", 2, accountId="a-1", providerId="xyz")
    listed = ev("ACCOUNT_CONNECTED", "et-3", 3, accountId="a-1", providers=["mno"])
    for facts in both_orders(first, second, listed):
        assert facts.accounts["a-1"].providers == ["abccorp", "mno", "xyz"]
    # and from the widget, within its cap
    hint = widget("onAccountCreated", "cb-1", accountId="w-1", providerId="abccorp")
    more = widget("onAccountConnected", "cb-2", 1, accountId="w-1", providers=["xyz"])
    assert facts_after(hint, more).accounts["w-1"].providers == ["abccorp", "xyz"]


def test_odd_provider_entries_are_ignored() -> None:
    created = ev("ACCOUNT_CREATED", "et-1", accountId="a-1", providers=["", 3, "abccorp"])
    assert facts_after(created).accounts["a-1"].providers == ["abccorp"]
    not_a_list = ev("ACCOUNT_CREATED", "et-2", accountId="a-2", providers="abccorp")
    assert facts_after(not_a_list).accounts["a-2"].providers == []


def test_ever_connected_survives_a_disconnect() -> None:
    connected = ev("ACCOUNT_CONNECTED", "et-1", 1, accountId="a-1")
    disconnected = ev("ACCOUNT_DISCONNECTED", "et-2", 2, accountId="a-1")
    for facts in both_orders(connected, disconnected):
        account = facts.accounts["a-1"]
        assert (account.status, account.ever_connected) == (ConnectionStatus.DISCONNECTED, True)
    # A connection older than what is known still proves the account was connected.
    created = ev("ACCOUNT_CREATED", "et-3", 5, accountId="a-1")
    account = facts_after(created, connected).accounts["a-1"]
    assert (account.status, account.ever_connected) == (ConnectionStatus.PENDING, True)


def test_a_hint_never_proves_an_account_connected() -> None:
    created = ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1")
    hint = widget("onAccountConnected", "cb-1", 2, accountId="a-1")
    account = facts_after(created, hint).accounts["a-1"]
    assert (account.status, account.ever_connected) == (ConnectionStatus.PENDING, False)


def test_presented_accounts_are_sorted_and_shown_awaiting_mfa_only_when_pending() -> None:
    events = [
        ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-2", providers=["abccorp", "xyz"]),
        ev("ACCOUNT_CREATED", "et-2", 1, accountId="a-1", providers=["abccorp"]),
        ev("ACCOUNT_FAILED", "et-3", 1, accountId="a-1", providers=["abccorp"]),
        widget(
            "onUIEvent", "cb-1", 1, eventName="MfaPageOpened", account={"providerId": "abccorp"}
        ),
    ]
    shown = presented_accounts(facts_after(*events))
    assert [(a.account_id, a.status) for a in shown] == [
        ("a-1", ConnectionStatus.ERROR),  # not pending: the hint does not apply
        ("a-2", ConnectionStatus.AWAITING_MFA),  # pending since before the screen (same second)
    ]


# --- tasks ------------------------------------------------------------------------------------


def test_a_task_keeps_every_field_of_its_latest_event() -> None:
    started = ev("TASK_STARTED", "et-1", 1, sourceId="ar-1", sourceType="archive", taskType="SCAN")
    failed = ev(
        "TASK_FINISHED",
        "et-2",
        2,
        sourceId="ar-1",
        sourceType="archive",
        taskType="SCAN",
        status="failed",
        errorCode="FILE_UNABLE",
    )
    for facts in both_orders(started, failed):
        assert {k: t.model_dump() for k, t in facts.tasks.items()} == {
            "task:ARCHIVE:ar-1:SCAN": {
                "source_id": "ar-1",
                "source_type": "ARCHIVE",
                "task_type": "SCAN",
                "status": "FAILED",
                "error_code": "FILE_UNABLE",
                "succeeded": False,
                "kind": "task",
                "updated_at": at(2),
                "event_id": "et-2",
            }
        }


def test_a_task_without_source_type_or_task_type_gets_the_defaults() -> None:
    # accountId stands in for a missing sourceId; the source type is then an ACCOUNT.
    bare = ev("TASK_STARTED", "et-1", accountId="a-1")
    (key, task) = next(iter(facts_after(bare).tasks.items()))
    assert key == "task:ACCOUNT:a-1:UNKNOWN"
    assert (task.source_id, task.source_type, task.task_type, task.status) == (
        "a-1",
        "ACCOUNT",
        "UNKNOWN",
        "STARTED",
    )


def test_tasks_are_kept_apart_by_kind_source_and_type() -> None:
    events = [
        ev("TASK_FINISHED", "et-1", status="SUCCEEDED", **TASK),
        ev("ACCOUNT_SYNC_TASK_FINISHED", "et-2", status="FAILED", **TASK),
        ev("TASK_FINISHED", "et-3", status="FAILED", **{**TASK, "taskType": "SYNC"}),
        ev("TASK_FINISHED", "et-4", status="FAILED", **{**TASK, "sourceType": "UPLOAD"}),
        ev("TASK_FINISHED", "et-5", status="FAILED", **{**TASK, "sourceId": "a-2"}),
    ]
    tasks = facts_after(*events).tasks
    assert {k: (t.kind, t.status, t.succeeded) for k, t in tasks.items()} == {
        "task:ACCOUNT:a-1:LINK_ACCOUNT": ("task", "SUCCEEDED", True),
        "sync:ACCOUNT:a-1:LINK_ACCOUNT": ("sync", "FAILED", False),
        "task:ACCOUNT:a-1:SYNC": ("task", "FAILED", False),
        "task:UPLOAD:a-1:LINK_ACCOUNT": ("task", "FAILED", False),
        "task:ACCOUNT:a-2:LINK_ACCOUNT": ("task", "FAILED", False),
    }


def test_a_succeeded_task_proves_only_an_account_connected() -> None:
    upload = ev("TASK_FINISHED", "et-1", status="SUCCEEDED", sourceId="a-1", sourceType="UPLOAD")
    assert facts_after(upload).accounts == {}
    failed = ev("TASK_FINISHED", "et-2", status="FAILED", **TASK)
    assert facts_after(failed).accounts == {}
    succeeded = ev("TASK_FINISHED", "et-3", 4, status="SUCCEEDED", **TASK)
    account = facts_after(succeeded).accounts["a-1"]
    assert (account.status, account.ever_connected, account.updated_at) == (
        ConnectionStatus.CONNECTED,
        True,
        at(4),
    )


@pytest.mark.parametrize(
    ("event_type", "data", "status"),
    [
        ("TASK_STARTED", {}, "STARTED"),
        ("TASK_STARTED", {"datapoints": ["IDENTITIES"]}, "STARTED"),
        ("TASK_FINISHED", {}, "FINISHED"),
        ("TASK_FINISHED", {"datapoints": ["", 3]}, "FINISHED"),
        ("TASK_FINISHED", {"datapoints": "IDENTITIES"}, "FINISHED"),
        ("TASK_FINISHED", {"datapoints": ["", "IDENTITIES"]}, "SUCCEEDED"),
        ("ACCOUNT_SYNC_TASK_FINISHED", {"datapoints": ["INCOMES"]}, "SUCCEEDED"),
        ("TASK_FINISHED", {"status": "succeeded"}, "SUCCEEDED"),
        ("TASK_STARTED", {"status": "running"}, "RUNNING"),
    ],
)
def test_task_status_is_stated_or_read_from_the_datapoints(
    event_type: str, data: dict[str, Any], status: str
) -> None:
    assert task_status(event_type, data) == status


# --- archives ---------------------------------------------------------------------------------


def test_an_archive_keeps_every_field_of_its_latest_event() -> None:
    started = ev("ARCHIVE_STARTED", "et-1", 1, archiveId="ar-1")
    failed = ev(
        "ARCHIVE_FAILED", "et-2", 2, archiveId="ar-1", errorCode="FILE_UNABLE", errorMessage="bad"
    )
    for facts in both_orders(started, failed):
        assert facts.archives["ar-1"].model_dump() == {
            "archive_id": "ar-1",
            "status": "failed",
            "error_code": "FILE_UNABLE",
            "error_message": "bad",
            "reported_by": Source.WEBHOOK,
            "updated_at": at(2),
            "event_id": "et-2",
            "ever_analyzed": False,
        }
    analyzed = ev("ARCHIVE_ANALYZED", "et-3", 3, archiveId="ar-1", errorCode="IGNORED")
    revoked = ev("ARCHIVE_REVOKED", "et-4", 4, archiveId="ar-1")
    for facts in both_orders(started, failed, analyzed, revoked):
        archive = facts.archives["ar-1"]
        assert (archive.status, archive.error_code, archive.error_message) == (
            "revoked",
            None,
            None,
        )
        assert (archive.updated_at, archive.event_id, archive.ever_analyzed) == (
            at(4),
            "et-4",
            True,
        )


def test_a_stale_analysis_still_counts_as_analyzed() -> None:
    revoked = ev("ARCHIVE_REVOKED", "et-2", 5, archiveId="ar-1")
    analyzed = ev("ARCHIVE_ANALYZED", "et-1", 1, archiveId="ar-1")
    for facts in both_orders(revoked, analyzed):
        archive = facts.archives["ar-1"]
        assert (archive.status, archive.ever_analyzed) == ("revoked", True)
        assert derive_stage(facts, REQUIRED) is Stage.DATA_READY


def test_reconciliation_beats_a_webhook_about_an_archive_in_the_same_second() -> None:
    webhook = ev("ARCHIVE_REVOKED", "et-1", 1, archiveId="ar-1")
    record = ev("ARCHIVE_STARTED", "ar-1:started", 1, Source.RECONCILE, archiveId="ar-1")
    for facts in both_orders(webhook, record):
        archive = facts.archives["ar-1"]
        assert (archive.status, archive.reported_by) == ("started", Source.RECONCILE)


# --- data, user, token, last event ------------------------------------------------------------


def test_data_counts_events_items_and_the_last_time() -> None:
    events = [
        ev("INCOMES_ADDED", "et-1", 3, count=2),
        ev("INCOMES_UPDATED", "et-2", 1, count=5),
        ev("INCOMES_ADDED", "et-3", 2),  # no count: one item
        ev("INCOMES_ADDED", "et-4", 2, count=True),  # not a number: one item
        ev("INCOMES_ADDED", "et-5", 2, count="7"),
        ev("IDENTITY_ADDED", "et-6", 0, count=0),
    ]
    for facts in both_orders(*events):
        incomes, identity = facts.data["incomes"], facts.data["identity"]
        assert (incomes.events, incomes.items, incomes.last_at) == (5, 10, at(3))
        assert (identity.events, identity.items, identity.last_at) == (1, 0, at(0))
        assert set(facts.data) == {"incomes", "identity"}


def test_data_from_an_account_proves_it_connected_as_of_the_data() -> None:
    data = ev("EMPLOYMENTS_ADDED", "et-1", 4, accountId="a-1", providers=["abccorp"])
    account = facts_after(data).accounts["a-1"]
    assert (account.status, account.ever_connected, account.updated_at, account.event_id) == (
        ConnectionStatus.CONNECTED,
        True,
        at(4),
        "et-1",
    )
    assert account.providers == ["abccorp"]
    hinted = widget("onAccountCreated", "cb-1", 9, accountId="a-1")
    assert facts_after(hinted, data).accounts["a-1"].status is ConnectionStatus.CONNECTED


def test_user_created_at_is_the_earliest_user_created() -> None:
    events = [
        ev("USER_CREATED", "et-1", 5),
        ev("USER_CREATED", "et-2", 2),
        ev("USER_CREATED", "et-3", 9),
    ]
    for facts in both_orders(*events):
        assert facts.user_created_at == at(2)
    assert facts_after(ev("ACCOUNT_CREATED", "et-4", accountId="a-1")).user_created_at is None


def test_last_event_at_is_the_latest_created_at_whatever_the_order() -> None:
    events = [
        ev("USER_CREATED", "et-1", 3),
        ev("SOMETHING_NEW", "et-2", 7),
        widget("onClose", "cb-1", 5),
        ev("INCOMES_ADDED", "et-3", 1),
    ]
    for facts in both_orders(*events):
        assert facts.last_event_at == at(7)  # unknown types move it too
    assert facts_after().last_event_at is None


def test_token_expiry_reports_are_counted_with_the_latest_time() -> None:
    reports = [widget("onTokenExpired", f"cb-{i}", second) for i, second in enumerate((4, 9, 2))]
    for facts in both_orders(*reports):
        assert (facts.token.expired_reports, facts.token.expired_reported_at) == (3, at(9))
    untouched = facts_after(*reports).token
    assert (untouched.issued_at, untouched.refresh_count, untouched.last_error) == (None, 0, None)


# --- invite, session --------------------------------------------------------------------------


def test_the_invite_keeps_its_id_status_and_source_event() -> None:
    invited = ev("INVITE_INVITED", "et-1", 1, inviteId="iv-1")
    for facts in both_orders(invited):
        assert facts.invite is not None
        assert facts.invite.model_dump() == {
            "invite_id": "iv-1",
            "status": "invited",
            "updated_at": at(1),
            "event_id": "et-1",
        }
    linked = ev("INVITE_LINKED", "et-2", 2, inviteId="iv-2")
    for facts in both_orders(invited, linked):
        assert (facts.invite.invite_id, facts.invite.status) == ("iv-2", "linked")
        assert (facts.invite.updated_at, facts.invite.event_id) == (at(2), "et-2")
    # an invite without its id is still an invite
    bare = facts_after(ev("INVITE_INVITED", "et-3", 1)).invite
    assert bare is not None and (bare.invite_id, bare.status) == (None, "invited")


def test_the_session_keeps_its_status_channel_and_event() -> None:
    session = {"userId": "u", "channel": "WinkSite", "status": "COMPLETED"}
    completed = ev("USER_SESSION_COMPLETED", "et-1", 2, session=session)
    facts = facts_after(completed)
    assert facts.session is not None
    assert facts.session.model_dump() == {
        "status": "COMPLETED",
        "channel": "WinkSite",
        "event_type": "USER_SESSION_COMPLETED",
        "updated_at": at(2),
        "event_id": "et-1",
    }
    # a session without a stated status takes it from the type
    reset = ev("USER_SESSION_RESET", "et-2", 3, session={"userId": "u"})
    for facts in both_orders(completed, reset):
        assert facts.session is not None
        assert (facts.session.status, facts.session.channel) == ("IN_PROGRESS", None)
        assert (facts.session.updated_at, facts.session.event_id) == (at(3), "et-2")
    stated_less = ev("USER_SESSION_COMPLETED", "et-3", session={"userId": "u"})
    assert facts_after(stated_less).session.status == "COMPLETED"  # type: ignore[union-attr]
    # a later completion follows a reset
    again = ev("USER_SESSION_COMPLETED", "et-4", 4, session=session)
    for facts in both_orders(completed, reset, again):
        assert (facts.session.status, facts.session.event_id) == ("COMPLETED", "et-4")


# --- the widget -------------------------------------------------------------------------------


def test_the_widget_is_open_on_a_screen_until_closed() -> None:
    opened = widget("onUIEvent", "cb-1", 1, eventName="LoginPageOpened")
    for facts in both_orders(opened):
        w = facts.widget
        assert (w.state, w.close_reason, w.updated_at, w.event_id) == ("open", None, at(1), "cb-1")
        assert (w.last_screen, w.screen_updated_at, w.screen_event_id) == (
            "LoginPageOpened",
            at(1),
            "cb-1",
        )
    closed = widget("onClose", "cb-2", 2, reason="exit")
    for facts in both_orders(opened, closed):
        w = facts.widget
        assert (w.state, w.close_reason, w.updated_at, w.event_id) == (
            "closed",
            "exit",
            at(2),
            "cb-2",
        )
        assert (w.last_screen, w.screen_event_id) == ("LoginPageOpened", "cb-1")
    reopened = widget("onUIEvent", "cb-3", 3, eventName="MfaPageOpened")
    for facts in both_orders(opened, closed, reopened):
        w = facts.widget
        assert (w.state, w.close_reason, w.event_id) == ("open", None, "cb-3")
        assert (w.last_screen, w.screen_updated_at) == ("MfaPageOpened", at(3))
    assert facts_after().widget.state == "unknown"


def test_a_ui_event_without_a_screen_opens_the_widget_and_keeps_the_last_screen() -> None:
    screen = widget("onUIEvent", "cb-1", 1, eventName="LoginPageOpened")
    nameless = widget("onUIEvent", "cb-2", 2)
    for facts in both_orders(screen, nameless):
        w = facts.widget
        assert (w.state, w.event_id, w.last_screen, w.screen_event_id) == (
            "open",
            "cb-2",
            "LoginPageOpened",
            "cb-1",
        )


def test_uploads_created_and_removed_are_counted() -> None:
    events = [
        widget("onUploadsCreated", "cb-1"),
        widget("onUploadsCreated", "cb-2"),
        widget("onUploadsRemoved", "cb-3"),
    ]
    facts = facts_after(*events)
    assert (facts.widget.uploads_created, facts.widget.uploads_removed) == (2, 1)
    assert has_uploads(facts)
    facts = facts_after(*events, widget("onUploadsRemoved", "cb-4"))
    assert not has_uploads(facts)


def test_mfa_providers_keep_the_latest_time_of_each() -> None:
    events = [
        widget("onUIEvent", f"cb-{i}", second, eventName="MfaPageOpened", account={"providerId": p})
        for i, (second, p) in enumerate(((1, "abccorp"), (4, "abccorp"), (2, "xyz")))
    ]
    for facts in both_orders(*events):
        assert facts.widget.mfa_providers == {"abccorp": at(4), "xyz": at(2)}
    # another screen, or no account, marks nothing
    other = widget("onUIEvent", "cb-9", eventName="LoginPageOpened", account={"providerId": "p"})
    assert facts_after(other).widget.mfa_providers == {}
    assert facts_after(other).accounts == {}


# --- ignored when incomplete ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "source", "data"),
    [
        ("ACCOUNT_CREATED", Source.WEBHOOK, {"providers": ["abccorp"]}),
        ("ACCOUNT_CONNECTED", Source.WEBHOOK, {"accountId": ""}),
        ("ACCOUNT_FAILED", Source.RECONCILE, {"accountId": 7}),
        ("ACCOUNT_AWAITING_MFA", Source.RECONCILE, {}),
        ("onAccountError", Source.WIDGET, {"errorCode": None}),
        ("onAccountConnected", Source.WIDGET, {}),
        ("TASK_STARTED", Source.WEBHOOK, {"sourceType": "ACCOUNT"}),
        ("TASK_FINISHED", Source.WEBHOOK, {"status": "SUCCEEDED"}),
        ("ACCOUNT_SYNC_TASK_FINISHED", Source.WEBHOOK, {"sourceId": None}),
        ("ARCHIVE_STARTED", Source.WEBHOOK, {}),
        ("ARCHIVE_ANALYZED", Source.WEBHOOK, {"archiveId": ""}),
        ("ARCHIVE_FAILED", Source.RECONCILE, {"errorCode": "FILE_UNABLE"}),
        ("USER_SESSION_COMPLETED", Source.WEBHOOK, {"session": "COMPLETED"}),
        ("onUIEvent", Source.WIDGET, {"eventName": "MfaPageOpened", "account": "a-1"}),
        ("onUIEvent", Source.WIDGET, {"eventName": "MfaPageOpened", "account": {}}),
    ],
)
def test_events_without_their_id_field_are_recorded_and_change_nothing_else(
    event_type: str, source: Source, data: dict[str, Any]
) -> None:
    incomplete = ev(event_type, "et-1", 3, source, **data)
    machine = StateMachine(new_journal("u"))
    assert machine.apply(incomplete) is True
    facts = machine.journal.facts
    assert facts.accounts == facts.archives == facts.tasks == {}
    assert (facts.session, facts.widget.mfa_providers, facts.unknown_types) == (None, {}, [])
    assert facts.last_event_at == at(3)
    assert [(r.id, r.type, r.known) for r in machine.journal.history] == [
        ("et-1", event_type, True)
    ]
    assert derive_stage(facts, REQUIRED) is Stage.CREATED


def test_data_without_an_account_counts_and_proves_nothing() -> None:
    facts = facts_after(ev("IDENTITY_ADDED", "et-1", count=2))
    assert facts.accounts == {}
    assert (facts.data["identity"].events, facts.data["identity"].items) == (1, 2)


# --- what apply answers, purity, history, the window ------------------------------------------


def test_apply_answers_whether_the_event_was_new() -> None:
    machine = StateMachine(new_journal("u"))
    first = ev("ACCOUNT_CREATED", "et-1", accountId="a-1")
    assert machine.apply(first) is True
    assert machine.apply(first) is False
    assert machine.apply(ev("SOMETHING_NEW", "et-2")) is True  # unknown, but new
    assert machine.apply(widget("onClose", "et-1")) is True  # same id, other source
    journal = machine.journal
    assert (journal.events_total, journal.duplicates_ignored) == (3, 1)


def test_apply_all_leaves_its_input_untouched() -> None:
    journal = apply_all(
        new_journal("u"),
        [
            ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1", providers=["abccorp"]),
            ev("TASK_STARTED", "et-2", 1, **TASK),
            ev("INCOMES_ADDED", "et-3", 1),
            widget("onUIEvent", "cb-1", 1, eventName="LoginPageOpened"),
        ],
    )
    snapshot = journal.model_copy(deep=True)
    later = [
        ev("ACCOUNT_CONNECTED", "et-4", 2, accountId="a-1", providers=["xyz"]),
        ev("TASK_FINISHED", "et-5", 2, status="SUCCEEDED", **TASK),
        ev("INCOMES_ADDED", "et-6", 2),
        widget("onClose", "cb-2", 2),
    ]
    later.insert(0, widget("onUIEvent", "cb-1", 1, eventName="LoginPageOpened"))  # a duplicate
    after = apply_all(journal, later, dedupe_window=3, history_limit=2)
    assert journal == snapshot
    assert after.events_total == 8 and after.duplicates_ignored == 1
    single = apply(journal, later[1])
    assert journal == snapshot and single.events_total == 5


def test_the_history_is_ordered_by_created_at_source_and_id() -> None:
    events = [
        ev("USER_CREATED", "et-b", 2),
        widget("onClose", "cb-1", 1),
        ev("USER_CREATED", "et-a", 2),
        ev("USER_CREATED", "et-c", 1, Source.RECONCILE),
        ev("NEW_THING", "et-d", 0).model_copy(update={"version": 2}),
    ]
    journal = apply_all(new_journal("u"), events)
    assert [(r.id, r.source) for r in journal.history] == [
        ("et-d", Source.WEBHOOK),
        ("et-c", Source.RECONCILE),
        ("cb-1", Source.WIDGET),
        ("et-a", Source.WEBHOOK),
        ("et-b", Source.WEBHOOK),
    ]
    assert journal.history[0] == EventRecord(
        id="et-d",
        type="NEW_THING",
        source=Source.WEBHOOK,
        created_at=at(0),
        received_at=at(0),
        known=False,
        version=2,
    )
    assert journal.facts.other_versions == {"2": 1}


def test_an_evicted_event_is_applied_again_and_a_kept_one_is_not() -> None:
    """The window forgets the oldest key first, and only it."""
    events = [ev("INCOMES_ADDED", f"et-{i}", i) for i in range(5)]
    machine = StateMachine(new_journal("u"), dedupe_window=3)
    for e in events:
        assert machine.apply(e)
    assert machine.journal.seen == [dedupe_digest(f"webhook/et-{i}") for i in (2, 3, 4)]
    for kept in events[2:]:
        assert machine.apply(kept) is False
    assert machine.apply(events[1]) is True  # forgotten: applied (and counted) again
    assert machine.journal.facts.data["incomes"].events == 6
    assert machine.apply(events[2]) is True  # the oldest of the window went next
    assert machine.apply(events[4]) is False
    assert machine.journal.duplicates_ignored == 4


def test_a_window_of_one_still_dedupes_the_last_event() -> None:
    machine = StateMachine(new_journal("u"), dedupe_window=0, dedupe_window_bytes=1)
    first = ev("INCOMES_ADDED", "et-1")
    assert machine.apply(first)
    assert not machine.apply(first)
    assert machine.apply(ev("INCOMES_ADDED", "et-2"))
    assert machine.apply(first)


def test_the_default_limits() -> None:
    assert (DEFAULT_DEDUPE_WINDOW, DEFAULT_HISTORY_LIMIT) == (10_000, 500)
    assert (DEFAULT_DEDUPE_WINDOW_BYTES, DEFAULT_HISTORY_BYTES) == (80 * 1024, 64 * 1024)
    assert len(to_json(dedupe_digest("x"))) + 1 == SEEN_ENTRY_BYTES
    options = OnboardingOptions(
        timeouts=Timeouts(stall={}, expire_after=1.0, settle_window=1.0), required_data=[]
    )
    assert (options.dedupe_window, options.history_limit) == (10_000, 500)
    assert (options.dedupe_window_bytes, options.history_bytes) == (80 * 1024, 64 * 1024)
    # What each default holds, with the other caps out of the way.
    machine = StateMachine(new_journal("u"))
    for i in range(3_300):
        machine.apply(ev("I", f"{i}", i))
    assert len(machine.journal.seen) == (80 * 1024 - 1) // SEEN_ENTRY_BYTES == 3276
    assert len(to_json(machine.journal.history)) <= DEFAULT_HISTORY_BYTES
    one_more = len(to_json(machine.journal.history[0])) + 1
    assert len(to_json(machine.journal.history)) + one_more > DEFAULT_HISTORY_BYTES
    counted = StateMachine(new_journal("u"), dedupe_window_bytes=10**9, history_bytes=10**9)
    counted.journal.seen = [dedupe_digest(f"k-{i}") for i in range(DEFAULT_DEDUPE_WINDOW + 5)]
    for i in range(501):
        counted.apply(ev("I", f"{i}", i))
    assert len(counted.journal.seen) == DEFAULT_DEDUPE_WINDOW
    assert [r.id for r in counted.journal.history[:1]] == ["1"]
    assert len(counted.journal.history) == DEFAULT_HISTORY_LIMIT


def test_a_loaded_journal_is_trimmed_to_its_history_bytes() -> None:
    events = [ev("I" * 100, f"{i:04}" + "x" * 250, i) for i in range(40)]
    big = apply_all(new_journal("u"), events, history_bytes=10**9)
    assert len(big.history) == 40
    machine = StateMachine(big, history_bytes=4096)
    kept = len(machine.journal.history)
    assert 0 < kept < 40
    assert len(to_json(machine.journal.history)) <= 4096
    # the size it keeps is exact: one more record is over, and it stays within on later events
    machine.apply(ev("I" * 100, "9999" + "x" * 250, 99))
    assert len(to_json(machine.journal.history)) <= 4096
    assert machine.journal.history[-1].id.startswith("9999")


# --- stages -----------------------------------------------------------------------------------


def test_data_ready_needs_some_required_data_type_list() -> None:
    facts = facts_after(ev("INCOMES_ADDED", "et-1"))
    assert is_data_ready(facts, ["incomes"])
    assert not is_data_ready(facts, [])
    assert not is_data_ready(facts, ["incomes", "identity"])
    assert is_data_ready(facts, iter(["incomes"]))  # any iterable, read once


def test_a_sync_task_success_is_not_data_ready_but_a_task_success_is() -> None:
    sync = ev("ACCOUNT_SYNC_TASK_FINISHED", "et-1", status="SUCCEEDED", **TASK)
    assert not is_data_ready(facts_after(sync), REQUIRED)
    task = ev("TASK_FINISHED", "et-2", status="SUCCEEDED", **TASK)
    assert is_data_ready(facts_after(sync, task), REQUIRED)


@pytest.mark.parametrize(
    ("events", "stage"),
    [
        ([], Stage.CREATED),
        ([ev("ACCOUNT_CREATED", "et-1", accountId="a-1")], Stage.ACCOUNT_CREATED),
        (
            [
                ev("ACCOUNT_CREATED", "et-1", accountId="a-1"),
                ev("ACCOUNT_CONNECTED", "et-2", accountId="a-2"),
            ],
            Stage.CONNECTED,
        ),
        ([ev("ARCHIVE_STARTED", "et-1", archiveId="ar-1")], Stage.UPLOADS),
        ([ev("ARCHIVE_FAILED", "et-1", archiveId="ar-1")], Stage.CREATED),
        ([widget("onUploadsCreated", "cb-1")], Stage.UPLOADS),
        (
            [
                ev("ARCHIVE_STARTED", "et-1", archiveId="ar-1"),
                ev("ACCOUNT_CONNECTED", "et-2", accountId="a-1"),
            ],
            Stage.UPLOADS,
        ),
    ],
)
def test_each_stage_from_its_facts(events: list[Event], stage: Stage) -> None:
    assert derive_stage(facts_after(*events), REQUIRED) is stage


def test_a_history_exactly_at_its_byte_budget_is_kept_whole() -> None:
    """The size is counted exactly as serialized: a budget of exactly the history's size keeps
    all of it, one byte less drops the oldest; likewise when a journal is loaded."""
    events = [ev("INCOMES_ADDED", f"et-{i}", i) for i in range(6)]
    whole = apply_all(new_journal("u"), events, history_bytes=10**6).history
    exact = len(to_json(whole))
    kept = apply_all(new_journal("u"), events, history_bytes=exact)
    assert [r.id for r in kept.history] == [e.id for e in events]
    short = apply_all(new_journal("u"), events, history_bytes=exact - 1)
    assert [r.id for r in short.history] == [e.id for e in events[1:]]
    loaded = apply_all(new_journal("u"), events, history_bytes=10**6)
    assert len(StateMachine(loaded, history_bytes=exact).journal.history) == 6
    assert len(StateMachine(loaded, history_bytes=exact - 1).journal.history) == 5


# --- same-second ties are settled by content, never by the ids --------------------------------

_TIES: list[tuple[str, Source, dict[str, Any], dict[str, Any], Any]] = [
    # (type, source, the payload that must win, the one that must lose, what the winner shows)
    ("ACCOUNT_FAILED", Source.WEBHOOK, {"errorCode": "B", "errorMessage": "m"},
     {"errorCode": "A", "errorMessage": "m"}, lambda f: f.accounts["a-1"].error_code),
    ("ACCOUNT_FAILED", Source.WEBHOOK, {"errorCode": "A", "errorMessage": "n"},
     {"errorCode": "A", "errorMessage": "m"}, lambda f: f.accounts["a-1"].error_message),
    ("ARCHIVE_FAILED", Source.WEBHOOK, {"errorCode": "B", "errorMessage": "m"},
     {"errorCode": "A", "errorMessage": "m"}, lambda f: f.archives["ar-1"].error_code),
    ("ARCHIVE_FAILED", Source.WEBHOOK, {"errorCode": "A", "errorMessage": "n"},
     {"errorCode": "A", "errorMessage": "m"}, lambda f: f.archives["ar-1"].error_message),
    ("TASK_FINISHED", Source.WEBHOOK, {"status": "TIMED_OUT"}, {"status": "CANCELLED"},
     lambda f: f.tasks["task:ACCOUNT:a-1:SYNC"].status),
    ("TASK_FINISHED", Source.WEBHOOK, {"status": "FAILED", "errorCode": "B"},
     {"status": "FAILED", "errorCode": "A"}, lambda f: f.tasks["task:ACCOUNT:a-1:SYNC"].error_code),
    ("INVITE_INVITED", Source.WEBHOOK, {"inviteId": "iv-2"}, {"inviteId": "iv-1"},
     lambda f: f.invite.invite_id),
    ("USER_SESSION_COMPLETED", Source.WEBHOOK, {"session": {"status": "REVOKED"}},
     {"session": {"status": "COMPLETED"}}, lambda f: f.session.status),
    ("USER_SESSION_COMPLETED", Source.WEBHOOK, {"session": {"status": "COMPLETED", "channel": "Z"}},
     {"session": {"status": "COMPLETED", "channel": "A"}}, lambda f: f.session.channel),
    ("onClose", Source.WIDGET, {"reason": "exit"}, {"reason": "error"},
     lambda f: f.widget.close_reason),
    ("onUIEvent", Source.WIDGET, {"eventName": "ZScreen"}, {"eventName": "AScreen"},
     lambda f: f.widget.last_screen),
]  # fmt: skip


@pytest.mark.parametrize(("event_type", "source", "wins", "loses", "shown"), _TIES)
def test_same_second_ties_are_settled_by_content_not_by_id(
    event_type: str, source: Source, wins: dict[str, Any], loses: dict[str, Any], shown: Any
) -> None:
    """Every field of a register's tie-break counts: the ids are set against the content's
    order, so a field dropped from the key lets the larger id win instead."""
    ids = {"accountId": "a-1", "archiveId": "ar-1", "sourceId": "a-1", "taskType": "SYNC"}
    winner = ev(event_type, "et-1", 1, source, **ids, **wins)
    loser = ev(event_type, "et-2", 1, source, **ids, **loses)
    for facts in both_orders(winner, loser):
        expected = shown(facts_after(winner))
        assert shown(facts) == expected
        assert expected != shown(facts_after(loser))


def test_a_journal_takes_every_limit_from_the_options() -> None:
    options = OnboardingOptions(
        timeouts=Timeouts(stall={}, expire_after=1.0, settle_window=1.0),
        required_data=[],
        dedupe_window=4,
        history_limit=400,
        history_bytes=4096,
    )
    machine = StateMachine.for_options(new_journal("u"), options)
    for i in range(60):
        machine.apply(ev("INCOMES_ADDED", f"et-{i:03}" + "x" * 60, i))
    assert len(machine.journal.seen) == 4
    assert len(to_json(machine.journal.history)) <= 4096 < 60 * 100


def test_the_caps_on_widget_hints_are_the_documented_ones() -> None:
    """docs/events.md: 20 widget-only accounts, 2 providers added by the widget, 10 MFA
    providers, 50 unknown types (the bounded-state tests read the constants, so pin them)."""
    caps = (MAX_WIDGET_ONLY_ACCOUNTS, MAX_WIDGET_PROVIDERS, MAX_MFA_PROVIDERS, MAX_UNKNOWN_TYPES)
    assert caps == (20, 2, 10, 50)
    hints = [widget("onAccountCreated", f"cb-{i}", i, accountId=f"w-{i:02}") for i in range(21)]
    assert len(facts_after(*hints).accounts) == 20


def test_the_window_holds_exactly_what_its_bytes_allow() -> None:
    # n digests serialize to 25 n + 1 bytes: 2525 bytes hold 100 of them, 2526 hold 101.
    events = [ev("INCOMES_ADDED", f"et-{i}", i) for i in range(120)]
    for budget, fits in ((2525, 100), (2526, 101)):
        journal = apply_all(new_journal("u"), events, dedupe_window_bytes=budget)
        assert len(journal.seen) == fits
        assert len(to_json(journal.seen)) <= budget


# (earlier step, later step, the fact that shows which won): every pair of steps of every
# register's lifecycle, in one second, without error codes, the ids set against the order.
_RC, _WG = Source.RECONCILE, Source.WIDGET
_STEPS: list[tuple[tuple[str, Source, dict[str, Any]], tuple[str, Source, dict[str, Any]], Any]] = [
    (("ACCOUNT_CREATED", _RC, {}), ("ACCOUNT_AWAITING_MFA", _RC, {}),
     lambda f: f.accounts["a-1"].status),
    (("onAccountCreated", _WG, {}),
     ("onUIEvent", _WG, {"eventName": "MfaPageOpened", "account": {"accountId": "a-1"}}),
     lambda f: f.accounts["a-1"].status),
    (("ACCOUNT_AWAITING_MFA", _RC, {}), ("ACCOUNT_FAILED", _RC, {}),
     lambda f: f.accounts["a-1"].status),
    (("ACCOUNT_FAILED", _RC, {}), ("ACCOUNT_CONNECTED", _RC, {}),
     lambda f: f.accounts["a-1"].status),
    (("ACCOUNT_CONNECTED", _RC, {}), ("ACCOUNT_DISCONNECTED", _RC, {}),
     lambda f: f.accounts["a-1"].status),
    (("ARCHIVE_STARTED", _RC, {}), ("ARCHIVE_FAILED", _RC, {}),
     lambda f: f.archives["ar-1"].status),
    (("ARCHIVE_STARTED", _RC, {}), ("ARCHIVE_ANALYZED", _RC, {}),
     lambda f: f.archives["ar-1"].status),
    (("ARCHIVE_FAILED", _RC, {}), ("ARCHIVE_ANALYZED", _RC, {}),
     lambda f: f.archives["ar-1"].status),
    (("ARCHIVE_ANALYZED", _RC, {}), ("ARCHIVE_REVOKED", _RC, {}),
     lambda f: f.archives["ar-1"].status),
    (("TASK_STARTED", _RC, {}), ("TASK_FINISHED", _RC, {}), lambda f: f.tasks[_TASK_KEY].status),
    (("TASK_FINISHED", _RC, {}), ("TASK_FINISHED", _RC, {"status": "FAILED"}),
     lambda f: f.tasks[_TASK_KEY].status),
    (("TASK_FINISHED", _RC, {"status": "RUNNING"}), ("TASK_FINISHED", _RC, {"status": "FAILED"}),
     lambda f: f.tasks[_TASK_KEY].status),
    (("TASK_FINISHED", _RC, {"status": "FAILED"}), ("TASK_FINISHED", _RC, {"status": "SUCCEEDED"}),
     lambda f: f.tasks[_TASK_KEY].status),
    (("INVITE_INVITED", _RC, {}), ("INVITE_LINKED", _RC, {}), lambda f: f.invite.status),
    (("onUIEvent", _WG, {}), ("onClose", _WG, {}), lambda f: f.widget.state),
    (("USER_SESSION_COMPLETED", _RC, {"session": {"status": "REVOKED"}}),
     ("USER_SESSION_RESET", _RC, {"session": {"status": "IN_PROGRESS"}}),
     lambda f: f.session.event_type),
]  # fmt: skip
_TASK_KEY = "task:ACCOUNT:a-1:SYNC"


@pytest.mark.parametrize(("earlier", "later", "shown"), _STEPS)
def test_same_second_steps_follow_the_documented_lifecycle(
    earlier: tuple[str, Source, dict[str, Any]],
    later: tuple[str, Source, dict[str, Any]],
    shown: Any,
) -> None:
    ids = {"accountId": "a-1", "archiveId": "ar-1", "sourceId": "a-1", "taskType": "SYNC"}
    first = ev(earlier[0], "et-2", 1, earlier[1], **ids, **earlier[2])
    then = ev(later[0], "et-1", 1, later[1], **ids, **later[2])
    expected = shown(facts_after(then))
    assert expected != shown(facts_after(first))
    for facts in both_orders(first, then):
        assert shown(facts) == expected


def test_has_uploads_counts_a_started_or_analyzed_archive() -> None:
    for name, live in (("ARCHIVE_STARTED", True), ("ARCHIVE_ANALYZED", True),
                       ("ARCHIVE_FAILED", False), ("ARCHIVE_REVOKED", False)):  # fmt: skip
        assert has_uploads(facts_after(ev(name, "et-1", archiveId="ar-1"))) is live


def test_the_widget_fills_only_the_room_left_under_its_provider_cap() -> None:
    created = ev("ACCOUNT_CREATED", "et-1", 1, accountId="a-1", providers=["abc"])
    many = widget("onAccountConnected", "cb-1", 2, accountId="a-1", providers=["d", "c", "b"])
    # (past the cap, which providers stay depends on arrival order: documented)
    assert facts_after(created, many).accounts["a-1"].providers == ["abc", "b"]
    fresh = widget("onAccountCreated", "cb-2", accountId="w-1", providers=["z", "y", "x"])
    assert facts_after(fresh).accounts["w-1"].providers == ["x", "y"]


def test_an_mfa_screen_naming_the_account_hints_nothing_about_its_provider() -> None:
    named = widget(
        "onUIEvent", "cb-1", eventName="MfaPageOpened",
        account={"accountId": "a-1", "providerId": "abccorp"},
    )  # fmt: skip
    facts = facts_after(named)
    assert facts.accounts["a-1"].status is ConnectionStatus.AWAITING_MFA
    assert facts.widget.mfa_providers == {}


def test_the_same_screen_twice_in_one_second_keeps_the_larger_event_id() -> None:
    """Only the event id can settle two same-second reports of one screen: the larger, in
    any order (so the remembered source never depends on arrival)."""
    first = widget("onUIEvent", "cb-2", 1, eventName="LoginPageOpened")
    second = widget("onUIEvent", "cb-1", 1, eventName="LoginPageOpened")
    for facts in both_orders(first, second):
        assert (facts.widget.last_screen, facts.widget.screen_event_id) == (
            "LoginPageOpened",
            "cb-2",
        )
        assert facts.widget.event_id == "cb-2"
