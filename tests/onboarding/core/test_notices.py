"""Notices: which changes the lifecycle announces (checked against the stage and status it went
through), what a notice says, and the log that delivers them in order."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onboarding.core import notices
from onboarding.core.lifecycle import (
    Announce,
    CancelRequested,
    ClockTick,
    Input,
    NotifyStalled,
    ReconcileFinished,
    Resumed,
    StageObserved,
    TimeoutsChanged,
    start,
    step,
)
from onboarding.core.models import (
    Account,
    Change,
    ConnectionStatus,
    DataReceived,
    DeliveryReport,
    DeliveryState,
    EndpointOutcome,
    NoticeLog,
    NoticeType,
    Source,
    Stage,
    Status,
    TimeoutsChange,
)
from tests.onboarding.core.test_lifecycle import CANCEL, INPUTS, TIMEOUTS, runs
from tests.smile_samples import BASE_TIME

ENDINGS = {
    NoticeType.COMPLETED,
    NoticeType.EXPIRED,
    NoticeType.FAILED,
    NoticeType.CANCELLED,
}


def announced(journey: list[tuple[Input, int]]) -> tuple[list[Change], list[tuple[Stage, Status]]]:
    """Every change announced over ``journey`` (from a fresh start, first input ``Resumed`` as
    in the workflow), and the (stage, status) after each step."""
    now = BASE_TIME
    state = start(TIMEOUTS, now)
    changes: list[Change] = []
    trail = [(state.life.stage, state.life.status)]
    for event, wait in [(Resumed(), 0), *journey]:
        now += timedelta(seconds=wait)
        decision = step(state, event, now)
        state = decision.state
        said = [c.change for c in decision.commands if isinstance(c, Announce)]
        for change in said:
            if change.type is not NoticeType.STARTED:
                assert (change.stage, change.status) == (state.life.stage, state.life.status)
            if change.previous_status is change.status and change.type is not NoticeType.STALLED:
                assert change.reason is None  # a reason only where the status changed
        if any(c.type is NoticeType.STALLED for c in said):
            # a stall is announced with its notice to the operator, once Smile was asked
            assert isinstance(event, ReconcileFinished)
            assert any(isinstance(c, NotifyStalled) for c in decision.commands)
        changes += said
        trail.append((state.life.stage, state.life.status))
    return changes, trail


@settings(max_examples=400, deadline=None)
@given(journey=runs(INPUTS | CANCEL))
def test_each_change_is_announced_once_and_in_order(journey: list[tuple[Input, int]]) -> None:
    changes, trail = announced(journey)
    kinds = [c.type for c in changes]
    # the start, first and once, as it began
    assert kinds[0] is NoticeType.STARTED and kinds.count(NoticeType.STARTED) == 1
    assert (changes[0].stage, changes[0].status) == (Stage.CREATED, Status.ACTIVE)
    # stage changes chain from created to the stage it is in now
    moves = [c for c in changes if c.type is NoticeType.STAGE_CHANGED]
    stages = [Stage.CREATED] + [c.stage for c in moves]
    assert all(m.previous_stage is s for m, s in zip(moves, stages, strict=False))
    assert stages[-1] is trail[-1][0]
    assert len(moves) == sum(1 for a, b in pairwise(trail) if a[0] != b[0])
    # data ready: each time the stage became data_ready, right after that stage change
    entered = sum(
        1 for a, b in pairwise(trail) if b[0] is Stage.DATA_READY and a[0] is not Stage.DATA_READY
    )
    assert kinds.count(NoticeType.DATA_READY) == entered
    for i, kind in enumerate(kinds):
        if kind is NoticeType.DATA_READY:
            assert kinds[i - 1] is NoticeType.STAGE_CHANGED
    # the end: once, last, and the one for how it ended
    ends = [k for k in kinds if k in ENDINGS]
    final = trail[-1][1]
    if final.is_terminal:
        assert ends == [notices.ENDING_NOTICE[final]] and kinds[-1] in ENDINGS
    else:
        assert ends == []
    # a stall and its resumption alternate, and a resumption follows only an announced stall
    stalls = [k for k in kinds if k in (NoticeType.STALLED, NoticeType.RESUMED)]
    assert stalls == [(NoticeType.STALLED, NoticeType.RESUMED)[i % 2] for i in range(len(stalls))]


def test_a_stall_healed_before_smile_answered_is_neither_announced_nor_resumed() -> None:
    changes, _ = announced(
        [(ClockTick(), 60), (StageObserved(Stage.ACCOUNT_CREATED), 1), (ReconcileFinished(1), 1)]
    )
    assert [c.type for c in changes] == [NoticeType.STARTED, NoticeType.STAGE_CHANGED]


def test_a_stall_announced_then_resumed_by_a_longer_timeout() -> None:
    longer = TimeoutsChanged(TimeoutsChange(stall={"created": 3600}))
    changes, _ = announced([(ClockTick(), 60), (ReconcileFinished(1), 1), (longer, 1)])
    assert [c.type for c in changes] == [
        NoticeType.STARTED,
        NoticeType.STALLED,
        NoticeType.RESUMED,
    ]
    resumed = changes[-1]
    assert (resumed.previous_status, resumed.status) == (Status.STALLED, Status.ACTIVE)
    assert resumed.reason == "stall timeout extended"


def test_cancelled_is_announced_with_its_reason() -> None:
    changes, _ = announced([(CancelRequested("user asked"), 5)])
    assert [c.type for c in changes] == [NoticeType.STARTED, NoticeType.CANCELLED]
    assert changes[-1].reason == "user asked"
    assert changes[-1].at == BASE_TIME + timedelta(seconds=5)


def test_a_lifecycle_from_before_notices_never_announces_a_start() -> None:
    state = start(TIMEOUTS, BASE_TIME)
    old = state.life.model_copy(update={"start_announce_wanted": False})
    decision = step(type(state)(old, state.timeouts), Resumed(), BASE_TIME)
    assert not [c for c in decision.commands if isinstance(c, Announce)]


# --- what a notice says -----------------------------------------------------------------------


def change(kind: NoticeType, **fields: object) -> Change:
    values: dict[str, object] = {
        "type": kind,
        "stage": Stage.DATA_READY,
        "status": Status.ACTIVE,
        "previous_stage": Stage.CONNECTED,
        "previous_status": Status.ACTIVE,
        "at": BASE_TIME,
    }
    return Change.model_validate(values | fields)


def test_data_ready_says_what_arrived_and_from_which_accounts() -> None:
    account = Account(
        account_id="a-1",
        providers=["abccorp"],
        status=ConnectionStatus.CONNECTED,
        error_message="provider said: secret detail",
        reported_by=Source.WEBHOOK,
        updated_at=BASE_TIME,
        event_id="et-1",
    )
    body = notices.compose(
        change(NoticeType.DATA_READY),
        "u-1",
        4,
        external_metadata={"applicant": "A-9"},
        data={"incomes": DataReceived(events=1, items=3, last_at=BASE_TIME)},
        required_data=["incomes"],
        accounts=[account],
    )
    assert body == {
        "type": "onboarding.data_ready",
        "timestamp": "2021-04-14T09:30:24Z",
        "data": {
            "userId": "u-1",
            "sequence": 4,
            "stage": "data_ready",
            "status": "active",
            "reason": None,
            "changes": {"stage": {"from": "connected", "to": "data_ready"}},
            "externalMetadata": {"applicant": "A-9"},
            "requiredData": ["incomes"],
            "data": {"incomes": {"events": 1, "items": 3}},
            "accounts": [{"accountId": "a-1", "providers": ["abccorp"], "status": "connected"}],
        },
    }
    assert "secret detail" not in json.dumps(body)


def test_a_stall_says_since_when_and_which_deadline_passed() -> None:
    stalled = change(
        NoticeType.STALLED,
        stage=Stage.CONNECTED,
        status=Status.STALLED,
        previous_stage=Stage.CONNECTED,
    )
    body = notices.compose(
        stalled,
        "u-1",
        2,
        stalled_since=BASE_TIME,
        stall_deadline=BASE_TIME + timedelta(hours=6),
        stalls=1,
    )
    data = body["data"]
    assert data["changes"] == {"status": {"from": "active", "to": "stalled"}}
    assert (data["stageEnteredAt"], data["stallDeadline"], data["stalls"]) == (
        "2021-04-14T09:30:24Z",
        "2021-04-14T15:30:24Z",
        1,
    )
    assert "data" not in data and "accounts" not in data


@pytest.mark.parametrize("name", ["data_ready", "onboarding.data_ready", " data_ready "])
def test_notice_types_are_named_with_or_without_the_prefix(name: str) -> None:
    assert notices.notice_type(name) is NoticeType.DATA_READY


def test_an_unknown_notice_type_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown notice type 'ready'; choose from: started, "):
        notices.notice_type("ready")


# --- the log ---------------------------------------------------------------------------------

ALL = list(NoticeType)


def issue(log: NoticeLog, kind: NoticeType, wanted: list[NoticeType] = ALL) -> int | None:
    record = notices.issue(
        log, change(kind), f"msg_{log.issued + 1}", lambda seq: {"seq": seq}, wanted
    )
    return record.sequence if record is not None else None


def report(*delivered: bool, status: int = 200) -> DeliveryReport:
    return DeliveryReport(
        attempts=1,
        endpoints=[
            EndpointOutcome(endpoint=i + 1, delivered=d, status=200 if d else status)
            for i, d in enumerate(delivered)
        ],
    )


def test_sequence_numbers_count_only_the_wanted_types() -> None:
    log = NoticeLog()
    wanted = [NoticeType.DATA_READY, NoticeType.COMPLETED]
    assert issue(log, NoticeType.STARTED, wanted) is None
    assert issue(log, NoticeType.DATA_READY, wanted) == 1
    assert issue(log, NoticeType.STAGE_CHANGED, wanted) is None
    assert issue(log, NoticeType.COMPLETED, wanted) == 2
    assert [r.body for r in log.records] == [{"seq": 1}, {"seq": 2}]


def test_delivered_forgets_its_body_and_a_refusal_keeps_it_for_redelivery() -> None:
    log = NoticeLog()
    issue(log, NoticeType.STARTED)
    issue(log, NoticeType.STAGE_CHANGED)
    first = notices.next_pending(log)
    assert first is not None and first.sequence == 1
    notices.settle_delivered(log, 1, report(True), BASE_TIME)
    notices.settle_delivered(log, 2, report(True, False, status=410), BASE_TIME)
    done, refused = log.records
    assert (done.state, done.body, done.last_status) == (DeliveryState.DELIVERED, {}, 200)
    assert (refused.state, refused.body, refused.last_status) == (
        DeliveryState.FAILED,
        {"seq": 2},
        410,
    )
    assert notices.next_pending(log) is None
    assert notices.redeliver(log, None, BASE_TIME) == [2]
    assert notices.next_pending(log) is refused and refused.settled_at is None


def test_redelivering_the_wrong_notice_changes_nothing() -> None:
    log = NoticeLog()
    issue(log, NoticeType.STARTED)
    before = log.model_dump()
    with pytest.raises(ValueError, match="no notice with sequence 7"):
        notices.redeliver(log, 7, BASE_TIME)
    with pytest.raises(ValueError, match="notice 1 is pending; only failed notices"):
        notices.redeliver(log, 1, BASE_TIME)
    assert notices.redeliver(log, None, BASE_TIME) == []
    assert log.model_dump() == before


def test_the_log_is_bounded_but_never_forgets_a_notice_to_deliver_or_a_failed_one() -> None:
    log = NoticeLog()
    issue(log, NoticeType.STARTED)
    notices.settle_delivered(log, 1, report(False, status=410), BASE_TIME)  # failed
    for _ in range(notices.MAX_RECORDS + 20):
        issue(log, NoticeType.STAGE_CHANGED)
    assert len(log.records) == notices.MAX_RECORDS + 21  # all pending or failed: all kept
    for _ in range(30):
        record = notices.next_pending(log)
        assert record is not None
        notices.settle_delivered(log, record.sequence, report(True), BASE_TIME)
    assert len(log.records) == notices.MAX_RECORDS
    assert [r.sequence for r in log.records[:2]] == [1, 23]  # the oldest delivered went first
    assert notices.counts(log).failed == 1
    assert notices.counts(log).pending == notices.MAX_RECORDS - 10


def test_each_notice_is_retried_for_its_own_window_from_issue_or_redelivery() -> None:
    log = NoticeLog()
    issue(log, NoticeType.STARTED)
    (record,) = log.records
    window = timedelta(days=3)
    assert notices.delivery_deadline(record, window) == BASE_TIME + window
    notices.settle_failed(log, 1, 21, 503, "HTTP 503 Service Unavailable", BASE_TIME + window)
    later = BASE_TIME + timedelta(days=5)
    notices.redeliver(log, 1, later)
    assert notices.delivery_deadline(record, window) == later + window


OPS = st.lists(
    st.sampled_from(["issue", "deliver", "refuse", "give_up", "redeliver_all"]), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_the_log_against_a_plain_model(ops: list[str]) -> None:
    """Against a dict of sequence -> state: the next notice is always the lowest pending, each
    outcome lands on it, and the counts add up."""
    log = NoticeLog()
    model: dict[int, DeliveryState] = {}
    for op in ops:
        pending = sorted(s for s, state in model.items() if state is DeliveryState.PENDING)
        head = notices.next_pending(log)
        assert (head.sequence if head else None) == (pending[0] if pending else None)
        if op == "issue":
            model[len(model) + 1] = DeliveryState.PENDING
            assert issue(log, NoticeType.STAGE_CHANGED) == len(model)
        elif op == "redeliver_all":
            failed = sorted(s for s, state in model.items() if state is DeliveryState.FAILED)
            assert notices.redeliver(log, None, BASE_TIME) == failed
            model |= dict.fromkeys(failed, DeliveryState.PENDING)
        elif head is not None:
            if op == "deliver":
                notices.settle_delivered(log, head.sequence, report(True), BASE_TIME)
                model[head.sequence] = DeliveryState.DELIVERED
            elif op == "refuse":
                notices.settle_delivered(log, head.sequence, report(False), BASE_TIME)
                model[head.sequence] = DeliveryState.FAILED
            else:
                notices.settle_failed(log, head.sequence, 30, 503, "HTTP 503", BASE_TIME)
                model[head.sequence] = DeliveryState.FAILED
    assert {r.sequence: r.state for r in log.records} == model
    counts = notices.counts(log)
    assert counts.issued == len(model)
    assert counts.pending + counts.delivered + counts.failed == len(model)
