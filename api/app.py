"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api import console, problems
from api.client_ip import parse_networks
from api.deps import Ingest
from api.errors import status_for
from api.limits import BodySizeLimit
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routes import bulk as bulk_route
from api.routes import callbacks, dead_letters, health, notices, onboardings, webhooks
from api.routes import codec as codec_route
from api.routes import defaults as defaults_route
from api.routes import metrics as metrics_route
from onboarding.core.throttle import FailureThrottle
from onboarding.service.codec import codec_from_settings
from onboarding.service.dead_letters import DeadLetters
from onboarding.service.drainer import Drainer
from onboarding.service.onboardings import (
    OnboardingError,
    Onboardings,
)
from onboarding.service.settings import Settings
from onboarding.service.spool import Spool, SpoolError, SpoolFull, open_spool
from onboarding.service.spooling import DurableIngest, Spooler, TemporalGate
from onboarding.service.temporal import connect
from onboarding.service.tracing import instrument_app, temporal_interceptors

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("onboarding.api")


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    *,
    temporal_address: str | None = None,
    spool: Spool | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the API. With ``client`` given it is used as is (tests, ``onboarding dev``);
    otherwise one is connected at startup from the environment. With ``tracer_provider``
    (:func:`onboarding.service.tracing.setup_tracing`) requests are traced, and so are the
    calls of the client connected here (a given client brings its own interceptors)."""
    settings = settings or Settings()
    # Not opened yet: the first write opens it, so the API starts while its database may not.
    spooler = Spooler(spool or open_spool(settings.spool_location, settings.spool_max_bytes))
    gate = TemporalGate(cooldown=settings.breaker_cooldown.total_seconds())

    def wire(onboardings: Onboardings) -> None:
        app.state.onboardings = onboardings
        direct = Ingest(onboardings, settings.batch_signals)
        app.state.ingest = DurableIngest(
            direct, spooler, gate, timeout=settings.ingest_timeout.total_seconds()
        )
        app.state.dead_letters = DeadLetters(spooler, app.state.ingest)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "onboardings"):
            # Lazy: the API starts even while Temporal is down, spooling until it is back.
            connected = await connect(
                temporal_address,
                lazy=True,
                interceptors=temporal_interceptors(tracer_provider),
                codec=codec_from_settings(settings),
            )
            wire(Onboardings(connected, settings))
        drainer = Drainer(
            spooler,
            app.state.onboardings,
            gate,
            app.state.dead_letters,
            lease=settings.spool_lease,
            # Not the webhook path's short wait: a backlog's large signals may take longer.
            timeout=settings.rpc_timeout.total_seconds(),
            concurrency=settings.drain_concurrency,
        )
        app.state.drainer = drainer
        draining = asyncio.create_task(drainer.run(), name="drainer")
        try:
            yield
        finally:
            draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draining
            await spooler.close()

    app = FastAPI(
        title="Smile onboarding orchestrator",
        version="0.1.0",
        description="Follows each Smile user's onboarding as a durable Temporal workflow.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.webhook_allow = parse_networks(settings.webhook_allowed_ips)
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    # Failed console sign-ins per address, in this process (each replica counts its own).
    app.state.sign_in_throttle = FailureThrottle(
        settings.console_sign_in_attempts, settings.console_sign_in_window
    )
    app.state.spooler = spooler
    app.state.gate = gate
    app.state.metrics = metrics = ApiMetrics(spooler, gate)  # this app's own registry
    if client is not None:
        wire(Onboardings(client, settings))

    problems.install(app)

    @app.exception_handler(OnboardingError)
    async def _onboarding_error(request: Request, exc: OnboardingError) -> JSONResponse:
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 503:
            logger.warning("Temporal unavailable: %s", exc.__cause__)
        return problems.problem_response(status, str(exc), headers=headers)

    @app.exception_handler(SpoolError)
    async def _spool_error(request: Request, exc: SpoolError) -> JSONResponse:
        state = "full" if isinstance(exc, SpoolFull) else "unavailable"
        logger.error("the spool is %s on %s: %s", state, request.url.path, exc)
        return problems.problem_response(
            503, f"the spool is {state}; try again shortly", headers={"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return problems.problem_response(500, "internal error; see the service's logs")

    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(onboardings.router)
    app.include_router(defaults_route.router)
    app.include_router(callbacks.router)
    app.include_router(dead_letters.router)
    app.include_router(notices.router)
    app.include_router(bulk_route.router)
    app.include_router(console.router)
    app.mount(console.STATIC_PATH, console.static_files(), name="console-static")
    app.include_router(metrics_route.router)

    def limit_for(path: str) -> int:
        if path == "/webhooks/smile":
            return settings.webhook_max_bytes
        if path.endswith("/callbacks"):
            return settings.callback_max_bytes
        if codec_route.is_codec_path(path):
            return codec_route.MAX_BYTES
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
    # /codec/*, for Temporal's web UI and CLI; its own CORS (the UI's origin) outside the above
    codec_route.install(app, settings)
    # Times every request, those the middleware above answer (413) included.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost, around every middleware above; without a provider, nothing is added.
    instrument_app(app, tracer_provider)
    return app
