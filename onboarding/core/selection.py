"""Which onboardings an operator means: a filter (stage, status, started before/after, in the
stage since before) and the Temporal visibility query that selects them.

Pure: the list endpoint, ``stats``, the console and the bulk operations build their queries
here, so one filter means the same onboardings everywhere. Every value put into a query is an
enum member or a formatted datetime, never user text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, ValidationError, model_validator

from onboarding.core.durations import parse_duration
from onboarding.core.identity import WORKFLOW_TYPE
from onboarding.core.models import CamelModel, Stage, Status

# The search attributes' names (workflows/search_attributes.py builds its typed keys from these).
STAGE_ATTRIBUTE = "OnboardingStage"
STATUS_ATTRIBUTE = "OnboardingStatus"
STAGE_ENTERED_ATTRIBUTE = "OnboardingStageEnteredAt"

# Before any real onboarding: ``entered >= EPOCH`` selects exactly those that carry the attribute.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Times a filter may name: visibility and Python's datetime both handle these without overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
OPEN_STATUSES = (Status.ACTIVE, Status.STALLED)


class SelectionError(ValueError):
    """A filter that cannot be understood; the message says which part and why."""


class OnboardingFilter(CamelModel):
    stage: Stage | None = None
    status: Status | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    # In the current stage since before this time (``waiting longer than`` resolved at a moment).
    entered_stage_before: datetime | None = None
    # Only open onboardings: active or stalled, and running (an ended one held open for its
    # notices to the customer is ended here too).
    open_only: bool = False

    @model_validator(mode="after")
    def _sensible_times(self) -> OnboardingFilter:
        for name in ("started_after", "started_before", "entered_stage_before"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None:
                raise SelectionError(f"{name}: give a time with its zone, e.g. 2026-11-30T12:00Z")
            if not EARLIEST <= value <= LATEST:
                raise SelectionError(f"{name}: give a time between 1970 and 9000")
        after, before = self.started_after, self.started_before
        if after is not None and before is not None and after >= before:
            raise SelectionError("started_after must be before started_before")
        return self

    @property
    def is_everything(self) -> bool:
        """True when nothing narrows it: every onboarding there is."""
        return not self.model_dump(exclude_defaults=True)


def query_time(value: datetime) -> str:
    """RFC 3339 in UTC, the form visibility compares Datetime attributes in."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def visibility_query(
    selection: OnboardingFilter,
    *,
    entered_from: datetime | None = None,
    entered_until: datetime | None = None,
) -> str:
    """The visibility query for ``selection``. ``entered_from``/``entered_until`` (inclusive,
    exclusive) add a window on the time the current stage was entered, which also leaves out
    onboardings that do not carry that attribute yet (started before it existed)."""
    # A run that continued as new is history: only the latest run of each onboarding counts.
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'", "ExecutionStatus != 'ContinuedAsNew'"]
    if selection.stage is not None:
        clauses.append(f"{STAGE_ATTRIBUTE} = '{selection.stage.value}'")
    if selection.status is not None:
        clauses.append(f"{STATUS_ATTRIBUTE} = '{selection.status.value}'")
    if selection.open_only:
        statuses = ", ".join(f"'{status.value}'" for status in OPEN_STATUSES)
        clauses.append(f"{STATUS_ATTRIBUTE} IN ({statuses})")
    if selection.open_only or (selection.status is not None and not selection.status.is_terminal):
        # Active or stalled means running: a workflow terminated from outside (by an
        # operator in Temporal's UI, say) keeps the status it last published.
        clauses.append("ExecutionStatus = 'Running'")
    if selection.started_after is not None:
        clauses.append(f"StartTime >= '{query_time(selection.started_after)}'")
    if selection.started_before is not None:
        clauses.append(f"StartTime < '{query_time(selection.started_before)}'")
    upper = _earliest(selection.entered_stage_before, entered_until)
    if upper is not None or entered_from is not None:
        clauses.append(f"{STAGE_ENTERED_ATTRIBUTE} >= '{query_time(entered_from or EPOCH)}'")
    if upper is not None:
        clauses.append(f"{STAGE_ENTERED_ATTRIBUTE} < '{query_time(upper)}'")
    return " AND ".join(clauses)


def _earliest(*times: datetime | None) -> datetime | None:
    given = [t for t in times if t is not None]
    return min(given) if given else None


def waiting_longer_than(age: timedelta, now: datetime) -> datetime:
    """The ``entered_stage_before`` that means "in the stage for longer than ``age``"."""
    return now - age


class Where(CamelModel):
    """A parsed ``--where`` expression: the filter plus an age still to resolve at a moment."""

    selection: OnboardingFilter = Field(default_factory=OnboardingFilter)
    waiting_longer_than: timedelta | None = None
    everything: bool = False  # ``all``: nothing narrows it, on purpose

    def at(self, now: datetime) -> OnboardingFilter:
        if self.waiting_longer_than is None:
            return self.selection
        return self.selection.model_copy(
            update={"entered_stage_before": waiting_longer_than(self.waiting_longer_than, now)}
        )


WHERE_KEYS = ("stage", "status", "started_after", "started_before", "waiting_longer_than")


def parse_where(text: str) -> Where:
    """``stage=connected,status=stalled,waiting_longer_than=2d,started_before=2026-11-01``, or
    ``all`` for every onboarding. Each key once; an unknown key or value is an error naming it;
    nothing at all is an error too (a forgotten filter must not mean everyone)."""
    if text.strip().lower() == "all":
        return Where(everything=True)
    fields: dict[str, object] = {}
    age: timedelta | None = None
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().replace("-", "_").lower(), value.strip()
        if not sep or not value:
            raise SelectionError(f"{part[:40]!r}: expected key=value, e.g. stage=connected")
        if key not in WHERE_KEYS:
            raise SelectionError(f"unknown key {key[:40]!r}: use one of {', '.join(WHERE_KEYS)}")
        if key in fields or (key == "waiting_longer_than" and age is not None):
            raise SelectionError(f"{key} is given twice")
        if key == "stage":
            fields[key] = _enum(Stage, value, key)
        elif key == "status":
            fields[key] = _enum(Status, value, key)
        elif key == "waiting_longer_than":
            age = _duration(value, key)
        else:
            fields[key] = _time(value, key)
    if not fields and age is None:
        raise SelectionError(f"give key=value pairs ({', '.join(WHERE_KEYS)}), or all")
    try:
        selection = OnboardingFilter.model_validate(fields)
    except ValidationError as err:
        raise SelectionError(first_reason(err)) from None
    return Where(selection=selection, waiting_longer_than=age)


def first_reason(err: ValidationError) -> str:
    """The first reason pydantic gives, without its "Value error, " prefix."""
    message = str(err.errors()[0].get("msg", "invalid filter"))
    return message.removeprefix("Value error, ")


def _enum(kind: type[Stage] | type[Status], value: str, key: str) -> Stage | Status:
    try:
        return kind(value.lower())
    except ValueError:
        options = ", ".join(member.value for member in kind)
        raise SelectionError(f"{key}: unknown value {value[:40]!r} (one of {options})") from None


def _duration(value: str, key: str) -> timedelta:
    try:
        parsed = parse_duration(value)
    except ValueError as err:
        raise SelectionError(f"{key}: {err}") from None
    if parsed <= timedelta(0):
        raise SelectionError(f"{key}: give a positive duration such as 2h")
    return parsed


def _time(value: str, key: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{key}: {value[:40]!r} is not a date or time such as 2026-11-30 or 2026-11-30T12:00Z"
        ) from None
    # A date alone, or a time without a zone, is taken as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
