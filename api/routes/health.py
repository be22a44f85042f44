"""Liveness and readiness."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import OnboardingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Temporal is unreachable"}})
async def readyz(onboardings: OnboardingsDep) -> JSONResponse:
    """Temporal is reachable, so events can be made durable."""
    try:
        healthy = await onboardings.client.service_client.check_health(timeout=timedelta(seconds=3))
    except Exception:  # any failure to reach Temporal means "not ready"
        healthy = False
    if healthy:
        return JSONResponse({"status": "ready", "temporal": "reachable"})
    return JSONResponse({"status": "not ready", "temporal": "unreachable"}, status_code=503)
