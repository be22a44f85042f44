"""What the console's pages compute: the funnel's rows, the stuck list's order, and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.console import views
from onboarding.core.models import Stage, Status
from onboarding.service.onboardings import Funnel, OnboardingSummary

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_funnel_rows_count_those_at_or_past_each_stage() -> None:
    funnel = Funnel(
        total=10,
        by_stage={
            Stage.CREATED: 4,
            Stage.ACCOUNT_CREATED: 1,
            Stage.CONNECTED: 3,
            Stage.UPLOADS: 0,
            Stage.DATA_READY: 2,
        },
        by_status={status: 0 for status in Status},
    )
    rows = views.funnel_rows(funnel, {Stage.CREATED: 2, Stage.CONNECTED: 1})
    assert [row.stage for row in rows] == list(Stage)
    assert [row.now for row in rows] == [4, 1, 3, 0, 2]
    assert [row.reached for row in rows] == [10, 6, 5, 2, 2]
    assert [row.share for row in rows] == [100.0, 60.0, 50.0, 20.0, 20.0]
    assert [row.stalled for row in rows] == [2, None, 1, None, None]


def test_an_empty_funnel_has_no_shares() -> None:
    funnel = Funnel(total=0, by_stage={}, by_status={})
    assert all(row.share == 0.0 and row.reached == 0 for row in views.funnel_rows(funnel, {}))


def _summary(time_in_stage: float | None) -> OnboardingSummary:
    return OnboardingSummary(user_id="u", workflow_id="onboarding-u", stage=None, status=None,
                             started_at=None, ended_at=None,
                             time_in_stage=time_in_stage)  # fmt: skip


def test_a_rows_age_from_visibility_when_its_state_is_unreadable() -> None:
    assert views.summary_age(_summary(90.5)) == timedelta(seconds=90.5)
    assert views.summary_age(_summary(None)) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (12, "12s"), (59, "59s"), (60, "1m 0s"), (61, "1m 1s"), (3600, "1h 0m"),
     (3725, "1h 2m"), (86400 * 3 + 3600 * 4 + 5, "3d 4h"), (86400, "1d 0h"), (-5, "0s")],
)  # fmt: skip
def test_human_age(seconds: int, text: str) -> None:
    assert views.human_age(timedelta(seconds=seconds)) == text


def test_times_read_in_utc_and_relative_to_now() -> None:
    assert views.human_age(None) == "—"
    assert views.when(None) == "—"
    assert views.when(datetime(2025, 3, 1, 13, 30, 5, tzinfo=UTC)) == "2025-03-01 13:30:05 UTC"
    assert views.relative(NOW + timedelta(minutes=5), NOW) == "in 5m 0s"
    assert views.relative(NOW - timedelta(hours=2, minutes=1), NOW) == "2h 1m ago"
    assert views.relative(None, NOW) == ""
    assert views.duration(3600 * 6) == "6h"
    assert views.duration(None) == "—"
