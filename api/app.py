"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api import problems
from api.routes import health, onboardings, webhooks
from onboarding.operations import (
    BadPageToken,
    CallbacksNotConfigured,
    InvalidChange,
    OnboardingEnded,
    OnboardingError,
    OnboardingNotFound,
    Onboardings,
    SmileCallFailed,
    TemporalUnavailable,
)
from onboarding.settings import Settings
from onboarding.temporal import connect

logger = logging.getLogger("onboarding.api")

_STATUS_FOR: dict[type[OnboardingError], int] = {
    OnboardingNotFound: 404,
    OnboardingEnded: 409,
    InvalidChange: 422,
    BadPageToken: 400,
    TemporalUnavailable: 503,
    SmileCallFailed: 502,
    CallbacksNotConfigured: 500,
}


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    *,
    temporal_address: str | None = None,
) -> FastAPI:
    """Build the API. With ``client`` given it is used as is (tests, ``onboarding dev``);
    otherwise one is connected at startup from the environment."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "onboardings"):
            # Lazy: the API starts even while Temporal is down, answering 503 until it is back.
            temporal = await connect(temporal_address, lazy=True)
            app.state.onboardings = Onboardings(temporal, settings)
        yield

    app = FastAPI(
        title="Smile onboarding orchestrator",
        version="0.1.0",
        description="Follows each Smile user's onboarding as a durable Temporal workflow.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if client is not None:
        app.state.onboardings = Onboardings(client, settings)

    problems.install(app)

    @app.exception_handler(OnboardingError)
    async def _onboarding_error(request: Request, exc: OnboardingError) -> JSONResponse:
        status = _STATUS_FOR.get(type(exc), 500)
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 503:
            logger.warning("Temporal unavailable: %s", exc.__cause__)
        return problems.problem_response(status, str(exc), headers=headers)

    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(onboardings.router)
    return app
