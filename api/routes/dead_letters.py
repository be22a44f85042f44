"""``/dead-letters``: signed webhooks that could not be used, for operators to read, replay
(after a fix is deployed) or discard. Operator token required."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import AdminDep, DeadLettersDep
from api.problems import Problem
from onboarding.service.dead_letters import DeadLetterDetail, DeadLetterPage, ReplayResult

router = APIRouter(prefix="/dead-letters", tags=["dead letters"], dependencies=[AdminDep])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such dead letter"}
}


@router.get("", response_model=DeadLetterPage, response_model_by_alias=True)
async def list_dead_letters(
    dead_letters: DeadLettersDep,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=500)] = 50,
    page_token: Annotated[str | None, Query(alias="pageToken", max_length=512)] = None,
) -> DeadLetterPage:
    """Oldest first: when each arrived, why it could not be used, replays tried."""
    return await dead_letters.list(page_size, page_token)


@router.get(
    "/{id_}", response_model=DeadLetterDetail, response_model_by_alias=True, responses=_NOT_FOUND
)
async def show_dead_letter(id_: str, dead_letters: DeadLettersDep) -> DeadLetterDetail:
    """One dead letter with its body exactly as Smile signed it."""
    return await dead_letters.get(id_)


@router.post(
    "/{id_}/replay",
    response_model=ReplayResult,
    response_model_by_alias=True,
    responses={
        **_NOT_FOUND,
        422: {"model": Problem, "description": "It still cannot be used; kept, reason recorded"},
    },
)
async def replay_dead_letter(id_: str, dead_letters: DeadLettersDep) -> ReplayResult:
    """Judge the body again with the code running now; deliver it if it can be used."""
    return await dead_letters.replay(id_)


@router.delete("/{id_}", status_code=204, responses=_NOT_FOUND)
async def discard_dead_letter(id_: str, dead_letters: DeadLettersDep) -> Response:
    """Drop it for good."""
    await dead_letters.discard(id_)
    return Response(status_code=204)
