from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.models import Stage, Status
from onboarding.core.selection import (
    EPOCH,
    OnboardingFilter,
    SelectionError,
    parse_where,
    query_time,
    visibility_query,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_the_plain_query_selects_latest_runs_of_onboardings() -> None:
    assert visibility_query(OnboardingFilter()) == (
        "WorkflowType = 'OnboardingWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"
    )


def test_every_field_becomes_its_clause() -> None:
    query = visibility_query(
        OnboardingFilter(
            stage=Stage.CONNECTED,
            status=Status.STALLED,
            started_after=datetime(2026, 11, 1, tzinfo=UTC),
            started_before=datetime(2026, 11, 2, 6, tzinfo=UTC),
            entered_stage_before=NOW,
        )
    )
    clauses = query.split(" AND ")
    assert "OnboardingStage = 'connected'" in clauses
    assert "OnboardingStatus = 'stalled'" in clauses
    assert clauses.count("ExecutionStatus = 'Running'") == 1  # stalled means not ended
    assert "StartTime >= '2026-11-01T00:00:00.000000Z'" in clauses
    assert "StartTime < '2026-11-02T06:00:00.000000Z'" in clauses
    assert "OnboardingStageEnteredAt >= '2000-01-01T00:00:00.000000Z'" in clauses
    assert "OnboardingStageEnteredAt < '2026-11-30T12:00:00.000000Z'" in clauses


def test_an_ended_status_does_not_ask_for_running_ones() -> None:
    query = visibility_query(OnboardingFilter(status=Status.COMPLETED))
    assert "ExecutionStatus = 'Running'" not in query


def test_open_only_means_active_or_stalled_and_running() -> None:
    clauses = visibility_query(OnboardingFilter(open_only=True)).split(" AND ")
    assert "OnboardingStatus IN ('active', 'stalled')" in clauses
    assert clauses.count("ExecutionStatus = 'Running'") == 1
    both = visibility_query(OnboardingFilter(open_only=True, status=Status.STALLED))
    assert both.count("ExecutionStatus = 'Running'") == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"started_after": datetime(1, 1, 1, tzinfo=UTC)}, "between 1970 and 9000"),
        ({"entered_stage_before": datetime(9999, 12, 31, tzinfo=UTC)}, "between 1970 and 9000"),
        ({"started_after": NOW, "started_before": NOW}, "must be before started_before"),
    ],
)
def test_times_out_of_range_or_order_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OnboardingFilter.model_validate(fields)


def test_a_filter_knows_when_it_selects_everything() -> None:
    assert OnboardingFilter().is_everything
    assert not OnboardingFilter(stage=Stage.CREATED).is_everything
    assert not OnboardingFilter(open_only=True).is_everything


def test_the_entered_window_takes_the_earlier_upper_bound() -> None:
    selection = OnboardingFilter(entered_stage_before=NOW)
    earlier = NOW - timedelta(hours=1)
    query = visibility_query(selection, entered_from=earlier - timedelta(hours=1),
                             entered_until=earlier)  # fmt: skip
    assert f"OnboardingStageEnteredAt < '{query_time(earlier)}'" in query
    assert f"OnboardingStageEnteredAt < '{query_time(NOW)}'" not in query
    assert f"OnboardingStageEnteredAt >= '{query_time(earlier - timedelta(hours=1))}'" in query


def test_query_times_are_utc_whatever_zone_they_come_in() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 30, 13, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert query_time(local) == "2026-11-30T12:00:00.000000Z"
    assert query_time(EPOCH) == "2000-01-01T00:00:00.000000Z"


@given(
    stage=st.none() | st.sampled_from(Stage),
    status=st.none() | st.sampled_from(Status),
    age=st.none() | st.integers(min_value=1, max_value=10**7),
)
def test_where_round_trips_what_it_is_given(
    stage: Stage | None, status: Status | None, age: int | None
) -> None:
    parts = []
    if stage is not None:
        parts.append(f"stage={stage.value}")
    if status is not None:
        parts.append(f"status={status.value.upper()}")  # any case
    if age is not None:
        parts.append(f"waiting-longer-than={age}s")
    if not parts:  # a forgotten filter must not mean everyone
        with pytest.raises(SelectionError, match="or all"):
            parse_where(" , ")
        assert parse_where(" ALL ").everything
        return
    where = parse_where(" , ".join(parts))
    assert not where.everything
    assert where.selection.stage == stage and where.selection.status == status
    resolved = where.at(NOW)
    if age is None:
        assert resolved.entered_stage_before is None
    else:
        assert resolved.entered_stage_before == NOW - timedelta(seconds=age)


def test_where_takes_dates_and_times_as_utc_unless_zoned() -> None:
    where = parse_where("started_after=2026-11-01,started_before=2026-11-02T06:00+01:00")
    assert where.selection.started_after == datetime(2026, 11, 1, tzinfo=UTC)
    assert where.selection.started_before == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stage=nowhere", "stage: unknown value 'nowhere'"),
        ("status=stuck", "status: unknown value 'stuck'"),
        ("colour=red", "unknown key 'colour'"),
        ("stage", "expected key=value"),
        ("stage=", "expected key=value"),
        ("stage=created,stage=connected", "stage is given twice"),
        ("waiting_longer_than=soon", "waiting_longer_than: invalid duration"),
        ("waiting_longer_than=0s", "positive duration"),
        ("started_after=yesterday", "is not a date or time"),
    ],
)
def test_a_bad_where_says_which_part(text: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        parse_where(text)


def test_a_filter_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="started_after: give a time with its zone"):
        OnboardingFilter(started_after=datetime(2026, 11, 1))
