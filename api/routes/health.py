"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import OnboardingsDep, SpoolerDep
from onboarding.service.health import ServiceHealth, check

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ServiceHealth,
    responses={503: {"description": "Neither Temporal nor the spool can take events"}},
)
async def readyz(
    request: Request, onboardings: OnboardingsDep, spooler: SpoolerDep
) -> JSONResponse:
    """Ready while events can be made durable: Temporal reachable, or the spool writable and
    not full (then ``degraded``). Reports the spool's depth, oldest age and dead letters."""
    health = await check(onboardings, spooler, request.app.state.gate)
    return JSONResponse(
        health.model_dump(mode="json", by_alias=True), status_code=200 if health.ready else 503
    )
