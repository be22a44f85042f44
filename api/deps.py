"""FastAPI dependencies: settings, the service layer, and the operator's bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import ProblemError
from onboarding.operations import Onboardings
from onboarding.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="ONBOARDING_ADMIN_TOKEN")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_onboardings(request: Request) -> Onboardings:
    onboardings: Onboardings = request.app.state.onboardings
    return onboardings


def require_admin(
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
OnboardingsDep = Annotated[Onboardings, Depends(get_onboardings)]
AdminDep = Depends(require_admin)
