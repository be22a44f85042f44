"""Order and repetition do not matter: any permutation of the same events, with any duplicates,
ends in the same facts, history and stage."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core.models import Event, Journal, Source
from onboarding.core.state_machine import apply_all, derive_stage, new_journal
from tests.smile_samples import BASE_TIME

REQUIRED = ["identity", "employments", "incomes"]
ACCOUNTS = ["a-1", "a-2"]
ARCHIVES = ["archive-1", "archive-2"]

WEBHOOKS = st.sampled_from(
    [
        "USER_CREATED",
        "ACCOUNT_CREATED",
        "ACCOUNT_CONNECTED",
        "ACCOUNT_DISCONNECTED",
        "ACCOUNT_FAILED",
        "TASK_STARTED",
        "TASK_FINISHED",
        "ACCOUNT_SYNC_TASK_FINISHED",
        "ARCHIVE_STARTED",
        "ARCHIVE_ANALYZED",
        "ARCHIVE_REVOKED",
        "ARCHIVE_FAILED",
        "INVITE_INVITED",
        "INVITE_LINKED",
        "IDENTITY_ADDED",
        "EMPLOYMENTS_ADDED",
        "INCOMES_ADDED",
        "INCOMES_UPDATED",
        "DOCUMENTS_ADDED",
        "BRAND_NEW_EVENT",
    ]
)
CALLBACKS = st.sampled_from(
    [
        "onAccountCreated",
        "onAccountConnected",
        "onAccountRemoved",
        "onAccountError",
        "onTokenExpired",
        "onClose",
        "onUploadsCreated",
        "onUploadsRemoved",
        "onUIEvent",
    ]
)


@st.composite
def events(draw: st.DrawFn, index: int) -> Event:
    source = draw(
        st.sampled_from([Source.WEBHOOK, Source.WEBHOOK, Source.WIDGET, Source.RECONCILE])
    )
    name = draw(CALLBACKS if source is Source.WIDGET else WEBHOOKS)
    account = draw(st.sampled_from(ACCOUNTS))
    archive = draw(st.sampled_from(ARCHIVES))
    # Few distinct timestamps, so ties (broken by event id) are common.
    created = BASE_TIME + timedelta(seconds=draw(st.integers(0, 5)))
    data = {
        "userId": "u",
        "accountId": account,
        "providerId": draw(st.sampled_from(["abccorp", "xyz"])),
        "providers": [draw(st.sampled_from(["abccorp", "xyz"]))],
        "sourceId": draw(st.sampled_from([account, archive])),
        "sourceType": draw(st.sampled_from(["ACCOUNT", "ARCHIVE"])),
        "taskType": "LINK_ACCOUNT",
        "status": draw(st.sampled_from(["SUCCEEDED", "FAILED", None])),
        "archiveId": archive,
        "inviteId": "iv-1",
        "count": draw(st.integers(0, 3)),
        "errorCode": draw(st.sampled_from(["INVALID_CREDENTIALS", None])),
        "reason": draw(st.sampled_from(["close", "exit", "error"])),
        "eventName": draw(st.sampled_from(["LoginPageOpened", "MfaPageOpened"])),
        "account": {"accountId": account},
    }
    return Event(
        id=f"et-{index}",
        type=name,
        source=source,
        created_at=created,
        received_at=created,
        data=data,
    )


@st.composite
def journeys(draw: st.DrawFn) -> list[Event]:
    size = draw(st.integers(1, 25))
    return [draw(events(i)) for i in range(size)]


def observable(journal: Journal) -> tuple[object, ...]:
    facts = journal.facts
    return (facts, journal.history, journal.events_total, derive_stage(facts, REQUIRED))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), journey=journeys())
def test_any_permutation_with_duplicates_ends_in_the_same_state(
    data: st.DataObject, journey: list[Event]
) -> None:
    expected = observable(apply_all(new_journal("u"), journey))
    shuffled = data.draw(st.permutations(journey))
    duplicates = data.draw(st.lists(st.sampled_from(journey), max_size=10))
    positions = data.draw(
        st.lists(st.integers(0, len(shuffled)), min_size=len(duplicates), max_size=len(duplicates))
    )
    delivered = list(shuffled)
    for position, duplicate in zip(positions, duplicates, strict=True):
        delivered.insert(position, duplicate)
    journal = apply_all(new_journal("u"), delivered)
    assert observable(journal) == expected
    assert journal.duplicates_ignored == len(duplicates)


@settings(max_examples=100, deadline=None)
@given(journey=journeys(), data=st.data())
def test_applying_in_two_passes_is_applying_once(journey: list[Event], data: st.DataObject) -> None:
    """A first pass over part of the journey, then all of it: the second pass holds new events
    as well as redeliveries, and ends where one pass does."""
    cut = data.draw(st.integers(0, len(journey)))
    once = apply_all(new_journal("u"), journey)
    twice = apply_all(apply_all(new_journal("u"), journey[:cut]), journey)
    assert observable(twice) == observable(once)
    assert twice.duplicates_ignored == cut
    assert observable(apply_all(once, journey)) == observable(once)
