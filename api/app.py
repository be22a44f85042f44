"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api import problems
from api.client_ip import parse_networks
from api.deps import Ingest
from api.limits import BodySizeLimit
from api.routes import callbacks, health, onboardings, webhooks
from onboarding.service.onboardings import (
    BadPageToken,
    CallbacksNotConfigured,
    InvalidChange,
    InvalidRequest,
    OnboardingEnded,
    OnboardingError,
    OnboardingNotFound,
    Onboardings,
    SmileCallFailed,
    TemporalUnavailable,
)
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect

logger = logging.getLogger("onboarding.api")

_STATUS_FOR: dict[type[OnboardingError], int] = {
    OnboardingNotFound: 404,
    OnboardingEnded: 409,
    InvalidChange: 422,
    InvalidRequest: 400,
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
            app.state.ingest = Ingest(app.state.onboardings, settings.batch_signals)
        yield

    app = FastAPI(
        title="Smile onboarding orchestrator",
        version="0.1.0",
        description="Follows each Smile user's onboarding as a durable Temporal workflow.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.webhook_allow = parse_networks(settings.webhook_allowed_ips)
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    if client is not None:
        app.state.onboardings = Onboardings(client, settings)
        app.state.ingest = Ingest(app.state.onboardings, settings.batch_signals)

    problems.install(app)

    @app.exception_handler(OnboardingError)
    async def _onboarding_error(request: Request, exc: OnboardingError) -> JSONResponse:
        status = _STATUS_FOR.get(type(exc), 500)
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 503:
            logger.warning("Temporal unavailable: %s", exc.__cause__)
        return problems.problem_response(status, str(exc), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return problems.problem_response(500, "internal error; see the service's logs")

    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(onboardings.router)
    app.include_router(callbacks.router)

    def limit_for(path: str) -> int:
        if path == "/webhooks/smile":
            return settings.webhook_max_bytes
        if path.endswith("/callbacks"):
            return settings.callback_max_bytes
        return settings.request_max_bytes

    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    if settings.cors_origins:
        # Browsers may call the callback endpoint from the customer's front end, nothing else.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return app
