"""FastAPI dependencies: settings, the service layer, and the operator's bearer token.

They are ``async def`` although none of them awaits: FastAPI runs a plain ``def`` dependency in
a worker thread, and that hop cost more CPU per webhook than anything the handler does."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import ProblemError
from onboarding.core.models import Event
from onboarding.service.batching import SignalBatcher
from onboarding.service.dead_letters import DeadLetters
from onboarding.service.onboardings import IngestResult, Onboardings
from onboarding.service.settings import Settings
from onboarding.service.spooling import DurableIngest, Spooler

_bearer = HTTPBearer(auto_error=False, description="ONBOARDING_ADMIN_TOKEN")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_onboardings(request: Request) -> Onboardings:
    onboardings: Onboardings = request.app.state.onboardings
    return onboardings


async def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Operator endpoints need ``Authorization: Bearer <ONBOARDING_ADMIN_TOKEN>``; with no token
    configured they admit nobody."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(401, "missing bearer token", headers=challenge)
    presented = credentials.credentials.encode()
    matched = False
    for token in settings.admin_tokens:
        matched = hmac.compare_digest(token.get_secret_value().encode(), presented) or matched
    if not matched:
        raise ProblemError(401, "invalid bearer token", headers=challenge)


class Ingest:
    """Delivers events for one user: through the batcher, or one signal per event."""

    def __init__(self, onboardings: Onboardings, batch: bool) -> None:
        self.batcher = SignalBatcher(onboardings) if batch else None
        self.onboardings = onboardings

    async def __call__(self, user_id: str, event: Event) -> IngestResult:
        if self.batcher is not None:
            return await self.batcher.submit(user_id, event)
        return await self.onboardings.ingest(user_id, [event])


async def get_ingest(request: Request) -> DurableIngest:
    ingest: DurableIngest = request.app.state.ingest
    return ingest


async def get_dead_letters(request: Request) -> DeadLetters:
    dead_letters: DeadLetters = request.app.state.dead_letters
    return dead_letters


async def get_spooler(request: Request) -> Spooler:
    spooler: Spooler = request.app.state.spooler
    return spooler


SettingsDep = Annotated[Settings, Depends(get_settings)]
OnboardingsDep = Annotated[Onboardings, Depends(get_onboardings)]
IngestDep = Annotated[DurableIngest, Depends(get_ingest)]
DeadLettersDep = Annotated[DeadLetters, Depends(get_dead_letters)]
SpoolerDep = Annotated[Spooler, Depends(get_spooler)]
AdminDep = Depends(require_admin)
