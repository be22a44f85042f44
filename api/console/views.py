"""What the console's pages show, computed without I/O: the funnel's rows, the stuck list's order
and ages, and the way times and durations read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from onboarding.core.durations import format_duration
from onboarding.core.models import OnboardingView, Stage
from onboarding.service.listing import OnboardingSummary
from onboarding.service.onboardings import Funnel


@dataclass(frozen=True)
class StageRow:
    stage: Stage
    now: int  # in this stage now
    reached: int  # at or past this stage
    share: float  # reached / total, in percent
    stalled: int | None  # stalled in this stage now; None for a stage without a stall timeout


def funnel_rows(funnel: Funnel, stalled: Mapping[Stage, int]) -> list[StageRow]:
    """One row per stage, in order. Stages are ordered, so "reached" a stage means being in it
    or in any later one; the share is of every onboarding counted."""
    rows = []
    stages = list(Stage)
    for index, stage in enumerate(stages):
        reached = sum(funnel.by_stage.get(later, 0) for later in stages[index:])
        share = 100.0 * reached / funnel.total if funnel.total else 0.0
        rows.append(StageRow(stage, funnel.by_stage.get(stage, 0), reached, share,
                             stalled.get(stage)))  # fmt: skip
    return rows


@dataclass(frozen=True)
class StuckRow:
    summary: OnboardingSummary
    view: OnboardingView | None  # None when its state could not be read
    age: timedelta | None  # time in its current stage (up to its end, if it ended)
    problem: str | None = None  # why the view is missing


def age_in_stage(view: OnboardingView, now: datetime) -> timedelta | None:
    if view.stage_entered_at is None:
        return None
    until = view.ended_at or now
    return max(until - view.stage_entered_at, timedelta(0))


def summary_age(summary: OnboardingSummary) -> timedelta | None:
    """Time in stage as visibility reported it (when the state itself cannot be read)."""
    if summary.time_in_stage is None:
        return None
    return timedelta(seconds=summary.time_in_stage)


def human_age(value: timedelta | float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``: the two largest units, for reading at a glance."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        elif parts:
            parts.append(f"0{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def duration(seconds: float | None) -> str:
    """A configured timeout as it would be typed (``6h``, ``1h30m``, ``7d``)."""
    return "—" if seconds is None else format_duration(seconds)


def when(value: datetime | None) -> str:
    """A moment in UTC, to the second."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(value: datetime | None, now: datetime) -> str:
    """``in 5m 3s`` or ``2h 1m ago``."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - now
    if delta >= timedelta(0):
        return f"in {human_age(delta)}"
    return f"{human_age(-delta)} ago"
