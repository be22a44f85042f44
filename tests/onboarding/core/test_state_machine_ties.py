"""Smile's ``createdAt`` has one-second precision, so events of one journey often share a second.
The end state must follow from what the events mean, never from their ids; and an account that
needs no login (no ``ACCOUNT_CONNECTED``) is proven connected by its data."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core.catalogue import CATALOGUE, EventSpec
from onboarding.core.models import ConnectionStatus, Event, Facts, Source, Stage
from onboarding.core.state_machine import apply_all, derive_stage, new_journal, presented_accounts
from tests.onboarding.core.test_state_machine_properties import REQUIRED, journeys
from tests.smile_samples import BASE_TIME

_EVENT_ID_FIELDS = {"event_id", "screen_event_id"}


def meaning(facts: Facts) -> dict[str, Any]:
    """The facts without the ids of the events that set them: what an operator acts on."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _EVENT_ID_FIELDS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(facts.model_dump())  # type: ignore[no-any-return]


def relabelled(journey: list[Event], ids: list[str]) -> list[Event]:
    """The same journey with other ids (a duplicate keeps being a duplicate of its original)."""
    fresh = dict(zip(dict.fromkeys(e.id for e in journey), ids, strict=False))
    return [e.model_copy(update={"id": fresh[e.id]}) for e in journey]


@settings(max_examples=150, deadline=None)
@given(journey=journeys(), data=st.data())
def test_the_end_state_does_not_depend_on_the_event_ids(
    journey: list[Event], data: st.DataObject
) -> None:
    # journeys() draws timestamps from six seconds, so most journeys hold same-second events.
    ids = data.draw(
        st.lists(
            st.text("0123456789abcdef", min_size=1, max_size=8).map(lambda h: f"et-{h}"),
            min_size=len(journey),
            max_size=len(journey),
            unique=True,
        )
    )
    before = apply_all(new_journal("u"), journey).facts
    after = apply_all(new_journal("u"), relabelled(journey, ids)).facts
    assert meaning(after) == meaning(before)
    assert derive_stage(after, REQUIRED) is derive_stage(before, REQUIRED)


ACCOUNT_STEPS = {
    "ACCOUNT_CREATED": ConnectionStatus.PENDING,
    "ACCOUNT_FAILED": ConnectionStatus.ERROR,
    "ACCOUNT_CONNECTED": ConnectionStatus.CONNECTED,
    "ACCOUNT_DISCONNECTED": ConnectionStatus.DISCONNECTED,
}
LIFECYCLE = list(ACCOUNT_STEPS)  # the order an account lives them in


def webhook(name: str, second: int, **data: Any) -> Event:
    """A webhook whose id is derived from its content: fixed from run to run (never random), and
    the same for two events saying exactly the same thing (a redelivery, as Smile would)."""
    at = BASE_TIME + timedelta(seconds=second)
    content = json.dumps([name, second, data], sort_keys=True).encode()
    return Event(
        id=f"et-{hashlib.sha256(content).hexdigest()[:32]}",
        type=name,
        source=Source.WEBHOOK,
        created_at=at,
        received_at=at,
        data={"userId": "u", **data},
    )


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.sampled_from(LIFECYCLE), min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
)
def test_same_second_account_events_end_at_the_latest_step_of_the_lifecycle(
    steps: list[str], order: Any
) -> None:
    events = [webhook(name, 0, accountId="a-1", errorCode="INVALID_CREDENTIALS") for name in steps]
    order.shuffle(events)
    account = apply_all(new_journal("u"), events).facts.accounts["a-1"]
    latest = max(steps, key=LIFECYCLE.index)
    assert account.status is ACCOUNT_STEPS[latest]
    assert account.error_code == ("INVALID_CREDENTIALS" if latest == "ACCOUNT_FAILED" else None)


def test_created_and_connected_in_the_same_second_is_connected_whatever_the_ids() -> None:
    for created_id, connected_id in (("et-0", "et-f"), ("et-f", "et-0")):
        created = webhook("ACCOUNT_CREATED", 0, accountId="a-1").model_copy(
            update={"id": created_id}
        )
        connected = webhook("ACCOUNT_CONNECTED", 0, accountId="a-1").model_copy(
            update={"id": connected_id}
        )
        for journey in ([created, connected], [connected, created]):
            facts = apply_all(new_journal("u"), journey).facts
            assert facts.accounts["a-1"].status is ConnectionStatus.CONNECTED
            assert derive_stage(facts, REQUIRED) is Stage.CONNECTED


def test_a_retry_that_connects_in_the_second_it_failed_is_connected() -> None:
    failed = webhook("ACCOUNT_FAILED", 0, accountId="a-1", errorCode="INVALID_CREDENTIALS")
    connected = webhook("ACCOUNT_CONNECTED", 0, accountId="a-1")
    for journey in ([failed, connected], [connected, failed]):
        account = apply_all(new_journal("u"), journey).facts.accounts["a-1"]
        assert (account.status, account.error_code) == (ConnectionStatus.CONNECTED, None)


def test_two_same_second_failures_settle_on_the_same_error_whatever_the_ids() -> None:
    a = webhook("ACCOUNT_FAILED", 0, accountId="a-1", errorCode="INVALID_CREDENTIALS")
    b = webhook("ACCOUNT_FAILED", 0, accountId="a-1", errorCode="ACCOUNT_LOCKED")
    results = set()
    for ids in (("et-1", "et-2"), ("et-2", "et-1")):
        journey = [a.model_copy(update={"id": ids[0]}), b.model_copy(update={"id": ids[1]})]
        results.add(apply_all(new_journal("u"), journey).facts.accounts["a-1"].error_code)
    assert results == {"INVALID_CREDENTIALS"}  # by content: the same one every time


def test_a_later_second_still_wins_over_the_lifecycle() -> None:
    connected = webhook("ACCOUNT_CONNECTED", 0, accountId="a-1")
    failed_later = webhook("ACCOUNT_FAILED", 1, accountId="a-1", errorCode="SESSION_EXPIRED")
    account = apply_all(new_journal("u"), [failed_later, connected]).facts.accounts["a-1"]
    assert account.status is ConnectionStatus.ERROR


def test_a_finished_task_beats_its_start_in_the_same_second() -> None:
    task = {"sourceId": "a-1", "sourceType": "ACCOUNT", "taskType": "LINK_ACCOUNT"}
    started = webhook("TASK_STARTED", 0, **task)
    finished = webhook("TASK_FINISHED", 0, status="FAILED", errorCode="TIMEOUT", **task)
    for journey in ([started, finished], [finished, started]):
        (recorded,) = apply_all(new_journal("u"), journey).facts.tasks.values()
        assert (recorded.status, recorded.error_code) == ("FAILED", "TIMEOUT")


def test_same_second_archive_analysis_and_revocation_end_revoked() -> None:
    analyzed = webhook("ARCHIVE_ANALYZED", 0, archiveId="archive-1")
    revoked = webhook("ARCHIVE_REVOKED", 0, archiveId="archive-1")
    started = webhook("ARCHIVE_STARTED", 0, archiveId="archive-1")
    for journey in ([analyzed, revoked, started], [revoked, started, analyzed]):
        archive = apply_all(new_journal("u"), journey).facts.archives["archive-1"]
        assert (archive.status, archive.ever_analyzed) == ("revoked", True)


# --- providers without a login ----------------------------------------------------------------

PROOFS = st.sampled_from(
    [
        ("TASK_FINISHED", {"sourceId": "a-1", "sourceType": "ACCOUNT", "status": "SUCCEEDED"}),
        ("ACCOUNT_SYNC_TASK_FINISHED", {"sourceId": "a-1", "status": "SUCCEEDED"}),
        ("IDENTITY_ADDED", {"accountId": "a-1"}),
        ("INCOMES_ADDED", {"accountId": "a-1", "count": 2}),
        ("EMPLOYMENTS_UPDATED", {"accountId": "a-1", "count": 1}),
    ]
)
NOISE = st.sampled_from(
    [
        ("USER_CREATED", {}),
        ("TASK_STARTED", {"sourceId": "a-1", "sourceType": "ACCOUNT"}),
        ("TASK_FINISHED", {"sourceId": "a-1", "sourceType": "ACCOUNT", "status": "FAILED"}),
        ("INVITE_INVITED", {"inviteId": "iv-1"}),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    created_at=st.integers(0, 3),
    proofs=st.lists(st.tuples(PROOFS, st.integers(0, 3)), min_size=1, max_size=4),
    noise=st.lists(st.tuples(NOISE, st.integers(0, 6)), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_data_from_an_account_proves_it_connected(
    created_at: int,
    proofs: list[tuple[tuple[str, dict[str, Any]], int]],
    noise: list[tuple[tuple[str, dict[str, Any]], int]],
    order: Any,
) -> None:
    # ACCOUNT_CONNECTED never comes: the provider needs no login. Proof at or after creation.
    events = [webhook("ACCOUNT_CREATED", created_at, accountId="a-1", providers=["sss"])]
    events += [webhook(name, created_at + delay, **data) for (name, data), delay in proofs]
    events += [webhook(name, second, **data) for (name, data), second in noise]
    order.shuffle(events)
    facts = apply_all(new_journal("u"), events).facts
    account = facts.accounts["a-1"]
    assert account.status is ConnectionStatus.CONNECTED
    assert account.ever_connected
    assert derive_stage(facts, REQUIRED) in (Stage.CONNECTED, Stage.DATA_READY)


def test_a_no_login_journey_reaches_data_ready_without_account_connected() -> None:
    journey = [
        webhook("ACCOUNT_CREATED", 0, accountId="a-1", providers=["sss"]),
        webhook("TASK_STARTED", 1, sourceId="a-1", sourceType="ACCOUNT", taskType="SYNC"),
        webhook("IDENTITY_ADDED", 2, accountId="a-1"),
        webhook(
            "TASK_FINISHED",
            2,
            sourceId="a-1",
            sourceType="ACCOUNT",
            taskType="SYNC",
            status="SUCCEEDED",
        ),
    ]
    facts = apply_all(new_journal("u"), journey[:3]).facts
    assert derive_stage(facts, REQUIRED) is Stage.CONNECTED  # identity alone is not all required
    facts = apply_all(new_journal("u"), journey).facts
    assert derive_stage(facts, REQUIRED) is Stage.DATA_READY


def test_widget_data_claims_prove_nothing() -> None:
    hint = Event(
        id="cb-1",
        type="onAccountCreated",
        source=Source.WIDGET,
        created_at=BASE_TIME,
        received_at=BASE_TIME,
        data={"accountId": "a-1"},
    )
    facts = apply_all(new_journal("u"), [hint]).facts
    assert facts.accounts["a-1"].status is ConnectionStatus.PENDING
    assert not facts.accounts["a-1"].ever_connected


def test_within_one_second_reconciliation_corrects_a_webhook() -> None:
    connected = webhook("ACCOUNT_CONNECTED", 0, accountId="a-1")
    disconnected = webhook("ACCOUNT_DISCONNECTED", 0, accountId="a-1")
    for said, smile_says, expected in (
        (connected, "ACCOUNT_FAILED", ConnectionStatus.ERROR),
        (disconnected, "ACCOUNT_CONNECTED", ConnectionStatus.CONNECTED),
    ):
        record = said.model_copy(
            update={"id": "a-1:record", "type": smile_says, "source": Source.RECONCILE}
        )
        for journey in ([said, record], [record, said]):
            account = apply_all(new_journal("u"), journey).facts.accounts["a-1"]
            assert (account.status, account.reported_by) == (expected, Source.RECONCILE)


# --- whatever a signed payload holds, applying it never raises ---------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "accountId",
        "providers",
        "providerId",
        "sourceId",
        "sourceType",
        "status",
        "taskType",
        "errorCode",
        "errorMessage",
        "archiveId",
        "inviteId",
        "count",
        "reason",
        "eventName",
        "account",
        "session",
        "userId",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    spec=st.sampled_from(sorted(CATALOGUE.values(), key=lambda s: (s.source, s.name))),
    data=st.dictionaries(KEYS, JSON, max_size=4),
)
def test_no_payload_makes_an_effect_raise(spec: EventSpec, data: dict[str, Any]) -> None:
    # Inside the workflow, an exception here would fail its task on every retry. Well-formed ids
    # first, so that the effects get past them to the odd fields.
    well_formed = {
        "accountId": "a-1",
        "sourceId": "a-1",
        "sourceType": "ACCOUNT",
        "archiveId": "ar-1",
        "status": "SUCCEEDED",
        "eventName": "MfaPageOpened",
        "account": {"providerId": "abccorp"},
        "session": {"status": "COMPLETED"},
    }
    odd = Event(
        id="et-odd",
        type=spec.name,
        source=spec.source,
        created_at=BASE_TIME,
        received_at=BASE_TIME,
        data={**well_formed, **data},
    )
    journal = apply_all(new_journal("u"), [odd, odd.model_copy(update={"id": "et-2"})])
    derive_stage(journal.facts, REQUIRED)
    presented_accounts(journal.facts)
