"""Operator endpoints for one onboarding's notices to the customer's backend: what was sent,
with what answer, what is being retried; and redelivery of failed ones. Admin token needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import Field

from api.deps import AdminDep, OnboardingsDep
from api.problems import Problem
from onboarding.core.identity import USER_ID_PATTERN
from onboarding.core.models import CamelModel
from onboarding.service.notices import NoticeList, Notices

router = APIRouter(
    prefix="/onboardings/{user_id}/notices",
    tags=["notices"],
    dependencies=[AdminDep],
    responses={
        401: {"model": Problem, "description": "Missing or invalid bearer token"},
        404: {"model": Problem, "description": "No onboarding for this user"},
        503: {"model": Problem, "description": "Temporal unreachable"},
    },
)

UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="Smile user id")]


async def get_notices(onboardings: OnboardingsDep) -> Notices:
    return Notices(onboardings)


NoticesDep = Annotated[Notices, Depends(get_notices)]


class RedeliverBody(CamelModel):
    sequence: int | None = Field(
        None, ge=1, description="The notice to redeliver; omitted: every failed notice"
    )


class Redelivered(CamelModel):
    user_id: str
    sequences: list[int] = Field(description="The notices queued again, by sequence number")


@router.get("", response_model=NoticeList)
async def list_notices(user_id: UserId, notices: NoticesDep) -> NoticeList:
    """Every notice of this onboarding kept in its log, by sequence: type, state (pending,
    delivered, failed), attempts, the last HTTP status and error, and for one being retried
    when it is tried next."""
    return await notices.deliveries(user_id)


@router.post(
    "/redeliver",
    response_model=Redelivered,
    responses={
        409: {"model": Problem, "description": "The onboarding has closed"},
        422: {"model": Problem, "description": "No such failed notice, or notices are off"},
    },
)
async def redeliver_notices(
    user_id: UserId,
    notices: NoticesDep,
    body: Annotated[RedeliverBody | None, Body()] = None,
) -> Redelivered:
    """Deliver failed notices again, with their original ``webhook-id``: the one numbered
    ``sequence``, or all failed ones."""
    sequences = await notices.redeliver(user_id, (body or RedeliverBody()).sequence)
    return Redelivered(user_id=user_id, sequences=sequences)
