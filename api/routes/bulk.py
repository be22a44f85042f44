"""Operator endpoints for bulk operations: change the timeouts of, reconcile or cancel every
onboarding a filter selects, as one durable operation; read its progress; stop it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from api.deps import AdminDep, OnboardingsDep
from api.problems import Problem, ProblemError
from api.routes.onboardings import TimeoutsBody, timeouts_change
from onboarding.core.bulk import MAX_RATE, MIN_RATE, BulkKind, BulkRequest
from onboarding.core.durations import parse_duration
from onboarding.core.models import CamelModel, Stage, Status
from onboarding.core.selection import OnboardingFilter, first_reason
from onboarding.service.bulk import BulkOperations, BulkStatus
from onboarding.service.onboardings import Onboardings

router = APIRouter(
    prefix="/bulk-operations",
    tags=["bulk operations"],
    dependencies=[AdminDep],
    responses={
        401: {"model": Problem, "description": "Missing or invalid bearer token"},
        503: {"model": Problem, "description": "Temporal unreachable"},
    },
)


async def get_bulk(onboardings: OnboardingsDep) -> BulkOperations:
    return BulkOperations(onboardings.client, onboardings.settings)


BulkDep = Annotated[BulkOperations, Depends(get_bulk)]
OperationId = Annotated[str, Path(pattern=r"^bulk-[a-z]+-[0-9a-f]{16}$", max_length=64)]


def _age(value: object) -> timedelta:
    age = parse_duration(value)  # type: ignore[arg-type]
    if age <= timedelta(0):
        raise ValueError("give a positive duration such as 6h")
    return age


class Where(CamelModel):
    # A misspelt criterion must be refused, not ignored: ignored, it would widen the selection.
    model_config = ConfigDict(extra="forbid")

    stage: Stage | None = None
    status: Status | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    waiting_longer_than: Annotated[timedelta | None, BeforeValidator(_age)] = Field(
        None, description="In their current stage for longer than this (6h, 2d), when submitted"
    )


class BulkBody(CamelModel):
    model_config = ConfigDict(extra="forbid")

    operation: BulkKind
    where: Where = Field(
        default_factory=Where, description="At least one criterion, unless everything is true"
    )
    everything: bool = Field(False, description="Every onboarding there is, on purpose")
    timeouts: TimeoutsBody | None = Field(None, description="For operation timeouts")
    reason: str | None = Field(None, min_length=1, max_length=500, description="For cancel")
    rate: float | None = Field(None, ge=MIN_RATE, le=MAX_RATE, description="Onboardings per second")


def _request(body: BulkBody, settings_rate: float) -> BulkRequest:
    """The request, checked whole before anything starts: a refusal is 422, naming why."""
    where = body.where
    try:
        selection = OnboardingFilter(
            stage=where.stage,
            status=where.status,
            started_after=_utc(where.started_after),
            started_before=_utc(where.started_before),
        )
        return BulkRequest(
            kind=body.operation,
            selection=selection,
            waiting_longer_than=where.waiting_longer_than,
            everything=body.everything,
            timeouts=timeouts_change(body.timeouts) if body.timeouts else None,
            reason=body.reason,
            rate=body.rate or settings_rate,
        )
    except ValidationError as err:
        raise ProblemError(422, first_reason(err)) from None


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.post("", response_model=BulkStatus, status_code=202,
             responses={422: {"model": Problem}})  # fmt: skip
async def submit(body: BulkBody, bulk: BulkDep, onboardings: OnboardingsDep) -> BulkStatus:
    """Start a bulk operation over every onboarding the filter selects (the same request while
    it runs answers with the running one). Poll ``GET /bulk-operations/{id}`` for progress."""
    return await bulk.submit(_request(body, _rate(onboardings)))


def _rate(onboardings: Onboardings) -> float:
    return onboardings.settings.bulk_rate


@router.get("/{operation_id}", response_model=BulkStatus,
            responses={404: {"model": Problem}})  # fmt: skip
async def progress(operation_id: OperationId, bulk: BulkDep) -> BulkStatus:
    """Progress: done, skipped because ended, failed (the first few with why), remaining."""
    return await bulk.get(operation_id)


@router.post("/{operation_id}/stop", response_model=BulkStatus,
             responses={404: {"model": Problem}})  # fmt: skip
async def stop(operation_id: OperationId, bulk: BulkDep) -> BulkStatus:
    """Stop after the chunk in hand; what was done stays done."""
    return await bulk.stop(operation_id)
