"""What continue-as-new carries is bounded (issue 11): dedupe keys are fixed-size digests, the
dedupe window and the history are capped by bytes as well as count, and what widget hints can
add to the facts is capped, so even the largest ids Smile's envelope allows keep the input far
from Temporal's payload limits."""

from __future__ import annotations

import random

import pytest
from pydantic_core import to_json
from temporalio.contrib.pydantic import pydantic_data_converter

from onboarding.core.models import (
    STALLABLE_STAGES,
    Event,
    Journal,
    Lifecycle,
    OnboardingInput,
    OnboardingOptions,
    Source,
    Timeouts,
)
from onboarding.core.state_machine import (
    MAX_MFA_PROVIDERS,
    MAX_UNKNOWN_TYPES,
    MAX_WIDGET_ONLY_ACCOUNTS,
    MAX_WIDGET_PROVIDERS,
    SEEN_ENTRY_BYTES,
    StateMachine,
    apply_all,
    dedupe_digest,
    new_journal,
)
from tests.smile_samples import event

LIMIT = 256 * 1024
ID_LENGTH = 256  # SmileWebhook.id's max_length
TYPE_LENGTH = 128  # SmileWebhook.type's max_length
WIDGET_LENGTH = 128  # the callbacks' accountId/providerId/errorCode/eventName max_length


def _long(prefix: str, i: int, length: int, fill: str = "x") -> str:
    head = f"{prefix}-{i}-"
    return head + fill * (length - len(head))


def _options(**limits: int) -> OnboardingOptions:
    return OnboardingOptions(
        timeouts=Timeouts(
            stall={stage: 3600.0 for stage in STALLABLE_STAGES},
            expire_after=7 * 86400.0,
            settle_window=600.0,
        ),
        required_data=[_long("required", i, 64) for i in range(20)],  # the API's maximum
        **limits,
    )


def _payload_bytes(journal: Journal, options: OnboardingOptions) -> int:
    """The continue-as-new input as the workflow's data converter writes it."""
    life = Lifecycle(
        # external_metadata at Smile's limits: 5 keys of 50 characters, values of 500
        external_metadata={_long("k", i, 50): _long("v", i, 500) for i in range(5)},
        status_reason=_long("reason", 0, 500),
    )
    payloads = pydantic_data_converter.payload_converter.to_payloads(
        [
            OnboardingInput(
                user_id=_long("u", 0, 200), options=options, journal=journal, lifecycle=life
            )
        ]
    )
    return sum(p.ByteSize() for p in payloads)


def _hostile_events(count: int, fill: str = "x") -> list[Event]:
    """``count`` distinct events, every id 256 characters long, mixing unknown 128-character
    types, widget hints naming fresh accounts and providers, and known webhooks. ``fill`` pads
    every string the browser controls: "x", or a control character that JSON writes as six
    bytes (webhooks are signed by Smile, and the callback ids the API accepts are plain ASCII)."""
    events = []
    for i in range(count):
        at = i // 10  # ten events a second
        event_id = _long("et", i, ID_LENGTH)
        widget = _long("w", i, WIDGET_LENGTH, fill)
        match i % 6:
            case 0:
                events.append(event(_long("UNKNOWN", i, TYPE_LENGTH), event_id=event_id, at=at))
            case 1:
                events.append(
                    event(
                        "onAccountError",
                        event_id=event_id,
                        source=Source.WIDGET,
                        at=at,
                        accountId=widget,
                        providerId=_long("p", i, WIDGET_LENGTH, fill),
                        errorCode=_long("e", i, WIDGET_LENGTH, fill),
                    )
                )
            case 2:  # a fresh provider for an account the widget already named
                events.append(
                    event(
                        "onAccountCreated",
                        event_id=event_id,
                        source=Source.WIDGET,
                        at=at,
                        accountId=_long("w", 1, WIDGET_LENGTH, fill),
                        providerId=_long("p", i, WIDGET_LENGTH, fill),
                    )
                )
            case 3:
                events.append(
                    event(
                        "onUIEvent",
                        event_id=event_id,
                        source=Source.WIDGET,
                        at=at,
                        eventName="MfaPageOpened",
                        account={"providerId": _long("p", i, WIDGET_LENGTH, fill)},
                    )
                )
            case 4:
                events.append(
                    event(
                        "onUIEvent",
                        event_id=event_id,
                        source=Source.WIDGET,
                        at=at,
                        eventName=_long("Screen", i % 7, WIDGET_LENGTH, fill),
                        account={"accountId": widget},
                    )
                )
            case _:
                events.append(
                    event("IDENTITY_ADDED", event_id=event_id, at=at, accountId=f"a-{i % 3}")
                )
    return events


def _filled(events: list[Event], options: OnboardingOptions) -> StateMachine:
    machine = StateMachine.for_options(new_journal(_long("u", 0, 200)), options)
    for e in events:
        assert machine.apply(e)
    return machine


# --- the worst case -----------------------------------------------------------------------


def test_ten_thousand_events_with_the_longest_ids_stay_under_256_kib() -> None:
    options = _options()
    events = _hostile_events(10_000)
    machine = _filled(events, options)
    journal = machine.journal
    assert journal.events_total == 10_000

    size = _payload_bytes(journal, options)
    print(f"continue-as-new input: {size} bytes ({size / 1024:.1f} KiB)")
    assert size < LIMIT

    # Each part within its budget, and bounded facts.
    assert len(journal.seen) == (options.dedupe_window_bytes - 1) // SEEN_ENTRY_BYTES == 3276
    assert len(to_json(journal.seen)) <= options.dedupe_window_bytes
    assert len(to_json(journal.history)) <= options.history_bytes
    facts = journal.facts
    assert len(facts.unknown_types) == MAX_UNKNOWN_TYPES
    assert len(facts.widget.mfa_providers) == MAX_MFA_PROVIDERS
    widget_only = [a for a in facts.accounts.values() if a.reported_by is Source.WIDGET]
    assert len(widget_only) == MAX_WIDGET_ONLY_ACCOUNTS
    assert all(len(a.providers) <= MAX_WIDGET_PROVIDERS for a in facts.accounts.values())

    # The newest events are still recognised after the window filled and wrapped around ...
    recent = events[-1000:]
    assert not any(machine.apply(e) for e in recent)
    assert journal.duplicates_ignored == 1000
    # ... and still are after the round trip through the payload converter (a new run).
    converter = pydantic_data_converter.payload_converter
    (carried,) = converter.from_payloads(
        converter.to_payloads(
            [OnboardingInput(user_id="u", options=options, journal=journal, lifecycle=Lifecycle())]
        ),
        [OnboardingInput],
    )
    assert carried.journal is not None
    next_run = StateMachine.for_options(carried.journal, carried.options)
    assert not any(next_run.apply(e) for e in recent)
    assert next_run.journal.events_total == 10_000
    # The oldest have been forgotten: the window is a window.
    assert next_run.apply(events[0])


def test_escaped_strings_stay_under_256_kib_too() -> None:
    """Every string the browser controls made of characters JSON writes as six bytes."""
    options = _options()
    journal = _filled(_hostile_events(10_000, fill="\x01"), options).journal
    size = _payload_bytes(journal, options)
    print(f"continue-as-new input, escaped strings: {size} bytes ({size / 1024:.1f} KiB)")
    assert size < LIMIT
    assert len(to_json(journal.history)) <= options.history_bytes


# --- dedupe keys as digests -----------------------------------------------------------------


def test_a_dedupe_digest_has_a_fixed_size_whatever_the_key() -> None:
    keys = ["webhook/et-1", "widget/" + "x" * 256, "webhook/\ud800 lone surrogate", "reconcile/é"]
    digests = [dedupe_digest(k) for k in keys]
    assert all(len(d) == 22 and "/" not in d for d in digests)
    assert len(set(digests)) == len(keys)
    assert dedupe_digest("webhook/et-1") == dedupe_digest("webhook/et-1")
    # namespaced before hashing: a widget id never suppresses the webhook with the same id
    assert dedupe_digest("webhook/et-1") != dedupe_digest("widget/et-1")
    assert all(len(to_json(d)) + 1 == SEEN_ENTRY_BYTES for d in digests)


def test_a_journal_with_raw_keys_from_an_older_run_is_still_recognised() -> None:
    """Running onboardings carry raw ``source/id`` keys in their continue-as-new input."""
    old = event("IDENTITY_ADDED", event_id="et-0", accountId="a-1")
    widget = event("onClose", event_id="cb-1", source=Source.WIDGET)
    carried = Journal.model_validate(
        {
            "facts": {"userId": "u"},
            "eventsTotal": 2,
            "seen": ["webhook/et-0", "widget/cb-1"],
        }
    )
    machine = StateMachine(carried)
    assert machine.journal.seen == [dedupe_digest("webhook/et-0"), dedupe_digest("widget/cb-1")]
    assert not machine.apply(old)
    assert not machine.apply(widget)
    assert machine.journal.duplicates_ignored == 2
    # Only the namespaced key matches: the same id from the widget is a different event.
    assert machine.apply(event("onClose", event_id="et-0", source=Source.WIDGET))
    # A mixed window (raw keys, then digests) keeps its order, oldest first.
    assert machine.journal.seen[-1] == dedupe_digest("widget/et-0")


def test_an_older_journal_over_the_new_limits_is_trimmed_on_load() -> None:
    events = [event("IDENTITY_ADDED", event_id=f"et-{i}", at=i) for i in range(50)]
    big = apply_all(new_journal("u"), events, dedupe_window=1000, history_limit=1000)
    big.seen = [f"webhook/et-{i}" for i in range(50)]  # as an older version wrote them
    machine = StateMachine(big, dedupe_window=10, history_limit=5)
    assert machine.journal.seen == [dedupe_digest(f"webhook/et-{i}") for i in range(40, 50)]
    assert [r.id for r in machine.journal.history] == [f"et-{i}" for i in range(45, 50)]
    assert not machine.apply(events[-1])
    assert machine.apply(events[0])


# --- the window and the history, by bytes -----------------------------------------------------


def test_the_dedupe_window_is_capped_by_bytes() -> None:
    events = [event("IDENTITY_ADDED", event_id=_long("et", i, ID_LENGTH), at=i) for i in range(300)]
    journal = apply_all(new_journal("u"), events, dedupe_window=10_000, dedupe_window_bytes=2501)
    assert len(journal.seen) == 100  # 25 bytes each, and the brackets less one comma
    assert len(to_json(journal.seen)) == 2501
    # the count cap still applies when it is the smaller
    journal = apply_all(new_journal("u"), events, dedupe_window=7, dedupe_window_bytes=2501)
    assert len(journal.seen) == 7


def test_the_history_is_capped_by_bytes_dropping_the_oldest() -> None:
    events = [
        event(_long("T", i, TYPE_LENGTH), event_id=_long("et", i, ID_LENGTH), at=i)
        for i in range(200)
    ]
    budget = 8 * 1024
    journal = apply_all(new_journal("u"), events, history_limit=500, history_bytes=budget)
    kept = len(journal.history)
    assert 0 < kept < 200
    assert len(to_json(journal.history)) <= budget
    assert [r.id for r in journal.history] == [e.id for e in events[-kept:]]
    # one more record would not have fitted
    assert len(to_json(journal.history)) + len(to_json(journal.history[0])) + 1 > budget


def test_out_of_order_events_drop_the_oldest_by_created_at() -> None:
    events = [event("IDENTITY_ADDED", event_id=_long("et", i, ID_LENGTH), at=i) for i in range(60)]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    journal = apply_all(new_journal("u"), shuffled, history_bytes=8 * 1024)
    kept = len(journal.history)
    assert [r.id for r in journal.history] == [e.id for e in events[-kept:]]


# --- facts the widget can grow --------------------------------------------------------------


def _widget_account(i: int, provider: str = "abccorp", kind: str = "onAccountCreated") -> Event:
    return event(kind, source=Source.WIDGET, at=i, accountId=f"w-{i:03}", providerId=provider)


def test_widget_only_accounts_are_capped_but_proof_never_is() -> None:
    hints = [_widget_account(i) for i in range(MAX_WIDGET_ONLY_ACCOUNTS + 5)]
    journal = apply_all(new_journal("u"), hints)
    assert sorted(journal.facts.accounts) == [f"w-{i:03}" for i in range(MAX_WIDGET_ONLY_ACCOUNTS)]
    # the ignored hints are still in the history
    assert len(journal.history) == MAX_WIDGET_ONLY_ACCOUNTS + 5
    # a kept account still takes hints
    journal = apply_all(journal, [_widget_account(0, kind="onAccountConnected")])
    assert journal.facts.accounts["w-000"].status == "connected"
    # a webhook creates any account, widget-only cap or not
    proofs = [event("ACCOUNT_CREATED", accountId=f"a-{i}", at=100 + i) for i in range(30)]
    proofs.append(event("ACCOUNT_CONNECTED", accountId="w-024", at=200))
    journal = apply_all(journal, proofs)
    assert len(journal.facts.accounts) == MAX_WIDGET_ONLY_ACCOUNTS + 31
    # once proven, an account no longer counts, which frees a place for a new widget account
    journal = apply_all(journal, [event("ACCOUNT_CONNECTED", accountId="w-000", at=300)])
    journal = apply_all(journal, [_widget_account(900)])
    assert "w-900" in journal.facts.accounts
    journal = apply_all(journal, [_widget_account(901)])
    assert "w-901" not in journal.facts.accounts


def test_the_widget_adds_few_providers_to_an_account_but_proof_adds_any() -> None:
    hints = [_widget_account(0, provider=f"p-{i}") for i in range(10)]
    journal = apply_all(new_journal("u"), hints)
    assert journal.facts.accounts["w-000"].providers == [
        f"p-{i}" for i in range(MAX_WIDGET_PROVIDERS)
    ]
    proof = event("ACCOUNT_CONNECTED", accountId="w-000", providers=[f"q-{i}" for i in range(8)])
    journal = apply_all(journal, [proof])
    assert len(journal.facts.accounts["w-000"].providers) == MAX_WIDGET_PROVIDERS + 8


@pytest.mark.parametrize("seed", range(5))
def test_unknown_types_and_mfa_providers_keep_their_smallest_in_any_order(seed: int) -> None:
    unknown = [event(f"NEW_TYPE_{i:03}", at=i) for i in range(MAX_UNKNOWN_TYPES + 20)]
    mfa = [
        event(
            "onUIEvent",
            source=Source.WIDGET,
            at=i % 4,
            eventName="MfaPageOpened",
            account={"providerId": f"p-{i % (MAX_MFA_PROVIDERS + 10):03}"},
        )
        for i in range(120)
    ]
    events = unknown + mfa
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    facts = apply_all(new_journal("u"), shuffled).facts
    in_order = apply_all(new_journal("u"), events).facts
    assert facts.unknown_types == [f"NEW_TYPE_{i:03}" for i in range(MAX_UNKNOWN_TYPES)]
    assert facts.widget.mfa_providers == in_order.widget.mfa_providers
    assert sorted(facts.widget.mfa_providers) == [f"p-{i:03}" for i in range(MAX_MFA_PROVIDERS)]
    assert in_order.widget.mfa_providers["p-000"] == max(
        e.created_at for e in mfa if e.data["account"]["providerId"] == "p-000"
    )


def test_limits_come_from_the_options() -> None:
    options = _options(dedupe_window_bytes=50 * SEEN_ENTRY_BYTES + 1, history_limit=3)
    machine = StateMachine.for_options(new_journal("u"), options)
    for i in range(80):
        machine.apply(event("IDENTITY_ADDED", event_id=f"et-{i}", at=i))
    assert len(machine.journal.seen) == 50
    assert len(machine.journal.history) == 3
