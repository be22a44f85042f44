"""Operator endpoints: read, list and count onboardings, change their timeouts, cancel them.
Every route here needs the admin bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query
from pydantic import BeforeValidator, Field, ValidationError

from api.deps import AdminDep, OnboardingsDep
from api.problems import Problem, ProblemError
from onboarding.core.durations import parse_duration
from onboarding.core.identity import USER_ID_PATTERN
from onboarding.core.models import (
    CamelModel,
    OnboardingView,
    Stage,
    StartRequest,
    Status,
    Timeouts,
    TimeoutsChange,
)
from onboarding.core.selection import OnboardingFilter, first_reason
from onboarding.core.selection import waiting_longer_than as waiting_longer_than_at
from onboarding.service.listing import ListOrder, OnboardingPage
from onboarding.service.onboardings import IssuedToken, Stats

router = APIRouter(
    prefix="/onboardings",
    tags=["onboardings"],
    dependencies=[AdminDep],
    responses={
        401: {"model": Problem, "description": "Missing or invalid bearer token"},
        503: {"model": Problem, "description": "Temporal unreachable"},
    },
)

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": Problem, "description": "No onboarding for this user"}}
ENDED: Responses = {409: {"model": Problem, "description": "The onboarding has ended"}}
SMILE_FAILED: Responses = {502: {"model": Problem, "description": "Smile refused or kept failing"}}

UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="Smile user id")]


def _seconds(value: Any) -> float:
    return parse_duration(value).total_seconds()


Duration = Annotated[float, BeforeValidator(_seconds)]


class TimeoutsBody(CamelModel):
    """Durations as text (``90s``, ``6h``, ``1h30m``, ``7d``) or seconds."""

    stall: dict[str, Duration] = Field(
        default_factory=dict, description="Per-stage stall timeouts, e.g. {'connected': '6h'}"
    )
    expire_after: Duration | None = None
    settle_window: Duration | None = None


class StartBody(CamelModel):
    external_metadata: dict[str, Any] | None = Field(
        None, description="Stored with the Smile user and the onboarding (e.g. your own ids)"
    )
    timeouts: TimeoutsBody | None = Field(None, description="Per-onboarding timeouts")
    required_data: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        max_length=20,
        description="Data types that make this onboarding data-ready, as Smile's datapoints "
        "name them (IDENTITIES, EMPLOYMENTS, INCOMES, …; any case)",
    )


class Started(IssuedToken):
    onboarding: OnboardingView


class CancelBody(CamelModel):
    reason: str = Field("cancelled by operator", min_length=1, max_length=500)


@router.post(
    "",
    status_code=201,
    response_model=Started,
    responses={
        **ENDED,
        400: {
            "model": Problem,
            "description": "Unknown requiredData name, or externalMetadata beyond Smile's limits",
        },
        422: {"model": Problem, "description": "Invalid options"},
        **SMILE_FAILED,
    },
)
async def start_onboarding(
    onboardings: OnboardingsDep,
    body: Annotated[StartBody | None, Body()] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    ] = None,
) -> Started:
    """Create the Smile user, start its onboarding, and return the first link token with a
    callback token for the front end. Send an ``Idempotency-Key`` to make retries safe."""
    body = body or StartBody()
    timeouts = timeouts_change(body.timeouts) if body.timeouts is not None else None
    request = StartRequest(
        external_metadata=body.external_metadata,
        required_data=body.required_data,
        timeouts=timeouts,
    )
    issued, view = await onboardings.start(request, idempotency_key)
    return Started(**issued.model_dump(), onboarding=view)


def timeouts_change(timeouts: TimeoutsBody) -> TimeoutsChange:
    return TimeoutsChange(
        stall=timeouts.stall,
        expire_after=timeouts.expire_after,
        settle_window=timeouts.settle_window,
    )


@router.get("", response_model=OnboardingPage, responses={422: {"model": Problem}})
async def list_onboardings(
    onboardings: OnboardingsDep,
    stage: Stage | None = None,
    status: Status | None = None,
    started_after: Annotated[datetime | None, Query(alias="startedAfter")] = None,
    started_before: Annotated[datetime | None, Query(alias="startedBefore")] = None,
    waiting_longer_than: Annotated[
        timedelta | None,
        BeforeValidator(_age),
        Query(alias="waitingLongerThan", description="In their stage longer than this: 6h, 2d"),
    ] = None,
    sort: Annotated[
        ListOrder,
        Query(description="newest: newest started first; longest_in_stage: longest first"),
    ] = ListOrder.NEWEST,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=500)] = 50,
    page_token: Annotated[str | None, Query(alias="pageToken", max_length=4096)] = None,
) -> OnboardingPage:
    """Onboardings by stage, status, start time and time in their stage, one page at a time:
    newest first, or longest in their current stage first (a page token is for one order)."""
    try:
        selection = OnboardingFilter(
            stage=stage,
            status=status,
            started_after=_aware(started_after),
            started_before=_aware(started_before),
            entered_stage_before=(
                waiting_longer_than_at(waiting_longer_than, datetime.now(UTC))
                if waiting_longer_than is not None
                else None
            ),
        )
    except ValidationError as err:  # times out of range or in the wrong order
        raise ProblemError(422, first_reason(err)) from None
    return await onboardings.list(
        page_size=page_size, page_token=page_token, selection=selection, order=sort
    )


def _age(value: object) -> timedelta:
    age = parse_duration(value)  # type: ignore[arg-type]
    if age <= timedelta(0):
        raise ValueError("give a positive duration such as 6h")
    return age


def _aware(value: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, as the CLI does.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("/stats", response_model=Stats)
async def onboarding_stats(onboardings: OnboardingsDep) -> Stats:
    """The funnel (how many onboardings are in each stage and each status), and per stage how
    many are open, how many stalled, and the open one longest in it."""
    return await onboardings.stats()


@router.get(
    "/{user_id}",
    response_model=OnboardingView,
    responses=NOT_FOUND,
)
async def get_onboarding(user_id: UserId, onboardings: OnboardingsDep) -> OnboardingView:
    """One user's onboarding: stage, status, facts, deadlines and event history."""
    return await onboardings.get(user_id)


@router.put(
    "/{user_id}/timeouts",
    response_model=Timeouts,
    responses={
        **NOT_FOUND,
        **ENDED,
        422: {"model": Problem, "description": "Unknown stage or non-positive duration"},
    },
)
async def set_timeouts(
    user_id: UserId, body: TimeoutsBody, onboardings: OnboardingsDep
) -> Timeouts:
    """Change stall timeouts (per stage), expireAfter or settleWindow of a running onboarding."""
    return await onboardings.set_timeouts(user_id, timeouts_change(body))


@router.post(
    "/{user_id}/cancel",
    response_model=OnboardingView,
    responses={
        **NOT_FOUND,
        **ENDED,
    },
)
async def cancel_onboarding(
    user_id: UserId,
    onboardings: OnboardingsDep,
    body: Annotated[CancelBody | None, Body()] = None,
) -> OnboardingView:
    """End an onboarding as ``cancelled``."""
    return await onboardings.cancel(user_id, (body or CancelBody()).reason)


@router.post(
    "/{user_id}/link-token",
    response_model=IssuedToken,
    responses={
        **NOT_FOUND,
        **ENDED,
        **SMILE_FAILED,
    },
)
async def fresh_link_token(user_id: UserId, onboardings: OnboardingsDep) -> IssuedToken:
    """A fresh single-use link token (and callback token) for the widget."""
    return await onboardings.link_token(user_id)


@router.post(
    "/{user_id}/reconcile",
    response_model=OnboardingView,
    responses={
        **NOT_FOUND,
        **ENDED,
    },
)
async def reconcile_onboarding(user_id: UserId, onboardings: OnboardingsDep) -> OnboardingView:
    """Check Smile's own records now and merge what they say (missed webhooks)."""
    return await onboardings.reconcile(user_id)
