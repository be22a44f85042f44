from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.bulk import (
    CONCURRENCY,
    ITEM_WAIT,
    MAX_FAILURE_SAMPLES,
    BulkKind,
    BulkProgress,
    BulkRequest,
    BulkState,
    ItemResult,
    Outcome,
    begun,
    bulk_id,
    chunk_time_limit,
    chunks,
    resolve,
    tally,
)
from onboarding.core.models import Stage, Status, TimeoutsChange
from onboarding.core.selection import OnboardingFilter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

results = st.lists(
    st.builds(ItemResult, user_id=st.text(min_size=1, max_size=5),
              outcome=st.sampled_from(Outcome), error=st.none() | st.text(max_size=5)),
    max_size=60,
)  # fmt: skip


@given(st.lists(results, max_size=5))
def test_tally_counts_every_result_once_in_its_outcome(batches: list[list[ItemResult]]) -> None:
    progress = BulkProgress(matched=1000)
    for batch in batches:
        progress = tally(progress, batch)
    every = [r for batch in batches for r in batch]
    assert progress.done == sum(r.outcome is Outcome.DONE for r in every)
    assert progress.skipped_ended == sum(r.outcome is Outcome.SKIPPED_ENDED for r in every)
    assert progress.failed == sum(r.outcome is Outcome.FAILED for r in every)
    failures = [r for r in every if r.outcome is Outcome.FAILED]
    assert [f.user_id for f in progress.failures] == [
        f.user_id for f in failures[:MAX_FAILURE_SAMPLES]
    ]
    assert progress.remaining == 1000 - len(every)


def test_tally_leaves_its_input_alone() -> None:
    before = BulkProgress(matched=3)
    tally(before, [ItemResult(user_id="u", outcome=Outcome.FAILED, error="no")])
    assert before == BulkProgress(matched=3)


def test_remaining_is_none_once_completed_and_what_was_left_once_stopped() -> None:
    progress = BulkProgress(matched=10, done=4)
    assert progress.remaining == 6
    assert progress.model_copy(update={"state": BulkState.CANCELLED}).remaining == 6
    assert progress.model_copy(update={"state": BulkState.COMPLETED}).remaining == 0
    assert BulkProgress(matched=2, done=5).remaining == 0  # the selection grew while it ran


@given(st.lists(st.text(max_size=3), max_size=40), st.integers(min_value=1, max_value=7))
def test_chunks_keep_order_and_size(items: list[str], size: int) -> None:
    parts = chunks(items, size)
    assert [i for part in parts for i in part] == items
    assert all(0 < len(part) <= size for part in parts)


def _timeouts(selection: OnboardingFilter, **more: object) -> BulkRequest:
    change = TimeoutsChange(stall={"connected": 7200})
    return BulkRequest(kind=BulkKind.TIMEOUTS, selection=selection, timeouts=change, **more)


def test_the_same_change_over_the_same_selection_is_the_same_operation() -> None:
    stalled = OnboardingFilter(stage=Stage.CONNECTED, status=Status.STALLED)
    first = bulk_id(_timeouts(stalled, rate=5, actor="a"))
    assert first == bulk_id(_timeouts(stalled, rate=50, actor="b", chunk=7))
    assert first.startswith("bulk-timeouts-") and len(first) == len("bulk-timeouts-") + 16
    assert first != bulk_id(_timeouts(OnboardingFilter(stage=Stage.CONNECTED)))
    other_change = BulkRequest(kind=BulkKind.TIMEOUTS, selection=stalled,
                               timeouts=TimeoutsChange(stall={"connected": 7201}))  # fmt: skip
    assert first != bulk_id(other_change)
    assert bulk_id(BulkRequest(kind=BulkKind.RECONCILE, selection=stalled)).startswith(
        "bulk-reconcile-"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "timeouts"}, "needs at least one timeout"),
        ({"kind": "timeouts", "timeouts": TimeoutsChange(stall={"nowhere": 5})}, "nowhere"),
        ({"kind": "timeouts", "timeouts": TimeoutsChange(expire_after=-1)}, "positive"),
        ({"kind": "cancel", "timeouts": TimeoutsChange(expire_after=5)}, "only for a timeouts"),
        ({"kind": "reconcile", "reason": "why"}, "only for cancelling"),
        ({"kind": "cancel", "rate": 0.05}, "greater than or equal to 0.1"),
        ({"kind": "cancel", "chunk": 0}, "greater than or equal to 1"),
        ({"kind": "cancel", "page": 1001}, "less than or equal to 1000"),
        ({"kind": "cancel", "everything": True}, "everything takes no other criterion"),
        ({"kind": "cancel", "waiting_longer_than": timedelta(0)}, "positive duration"),
    ],
)
def test_a_request_that_does_not_fit_its_kind_is_refused(
    fields: dict[str, object], message: str
) -> None:
    selection = OnboardingFilter(stage=Stage.CONNECTED)
    with pytest.raises(ValueError, match=message):
        BulkRequest.model_validate({"selection": selection, **fields})


def test_nothing_to_narrow_it_is_refused_unless_everything_is_meant() -> None:
    with pytest.raises(ValueError, match="give at least one of stage"):
        BulkRequest(kind=BulkKind.CANCEL, selection=OnboardingFilter())
    everyone = BulkRequest(kind=BulkKind.CANCEL, selection=OnboardingFilter(), everything=True)
    assert bulk_id(everyone) != bulk_id(
        BulkRequest(kind=BulkKind.CANCEL, selection=OnboardingFilter(), waiting_longer_than=HOUR)
    )


def test_a_resolved_time_is_refused_in_favour_of_the_duration() -> None:
    with pytest.raises(ValueError, match="give waiting_longer_than, not a resolved time"):
        BulkRequest(kind=BulkKind.RECONCILE,
                    selection=OnboardingFilter(entered_stage_before=NOW))  # fmt: skip


def test_waiting_longer_than_is_resolved_when_the_operation_begins() -> None:
    request = BulkRequest(kind=BulkKind.RECONCILE, selection=OnboardingFilter(stage=Stage.CREATED),
                          waiting_longer_than=HOUR)  # fmt: skip
    resolved = resolve(request, NOW)
    assert resolved.entered_stage_before == NOW - HOUR and resolved.stage is Stage.CREATED
    plain = BulkRequest(kind=BulkKind.RECONCILE, selection=OnboardingFilter(stage=Stage.CREATED))
    assert resolve(plain, NOW) == plain.selection
    # The same request at another moment is the same operation: the duration is named, not a time.
    again = BulkRequest.model_validate_json(request.model_dump_json())
    assert bulk_id(again) == bulk_id(request)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_begun_counts_the_already_ended_as_skipped(matched: int, still_open: int) -> None:
    progress = begun(matched, still_open)
    assert progress.matched == matched
    assert progress.skipped_ended == max(matched - still_open, 0)
    assert progress.done == progress.failed == 0
    assert progress.remaining == min(still_open, matched)


@given(
    st.integers(min_value=1, max_value=500),
    st.floats(min_value=0.1, max_value=500, allow_nan=False),
)
def test_a_chunk_has_time_for_its_rate_and_its_slowest_changes(chunk: int, rate: float) -> None:
    request = BulkRequest(kind=BulkKind.RECONCILE, selection=OnboardingFilter(stage=Stage.CREATED),
                          chunk=chunk, rate=rate)  # fmt: skip
    limit = chunk_time_limit(request)
    assert limit >= timedelta(seconds=chunk / rate) + ITEM_WAIT
    assert limit >= ITEM_WAIT * -(-chunk // CONCURRENCY)
