"""The default timeouts of new onboardings, read and changed at run time (``GET``/``PUT
/defaults``), with their audit. Admin-authenticated like the other operator endpoints.

Who made a change (the audit's ``actor``) is the admin credential used, named by its position in
``ONBOARDING_ADMIN_TOKEN`` (``admin token #1``), never by its value; an operator may add their own
name in ``X-Onboarding-Actor`` (``alice (admin token #1)``). The header is the caller's word,
the credential is checked."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import AdminDep, OnboardingsDep, SettingsDep
from api.problems import Problem
from api.routes.onboardings import TimeoutsBody, timeouts_change
from onboarding.core.defaults import MAX_ACTOR_LENGTH, DefaultsState

router = APIRouter(
    prefix="/defaults",
    tags=["defaults"],
    dependencies=[AdminDep],
    responses={
        401: {"model": Problem, "description": "Missing or invalid bearer token"},
        503: {"model": Problem, "description": "Temporal unreachable"},
    },
)

_bearer = HTTPBearer(auto_error=False, description="ONBOARDING_ADMIN_TOKEN")
# The header's own name is short; the credential's name is added to it.
_OPERATOR_NAME_LENGTH = MAX_ACTOR_LENGTH - 40


def credential_name(settings: SettingsDep, presented: str) -> str:
    """``admin token #N``: the position of the admin token presented, found in constant time."""
    position = 0
    for index, token in enumerate(settings.admin_tokens, start=1):
        if hmac.compare_digest(token.get_secret_value().encode(), presented.encode()):
            position = position or index
    return f"admin token #{position}" if position else "admin token"


async def get_actor(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    operator: Annotated[
        str | None,
        Header(
            alias="X-Onboarding-Actor",
            min_length=1,
            max_length=_OPERATOR_NAME_LENGTH,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="Who is making the change, for the audit (your own name for it)",
        ),
    ] = None,
) -> str:
    """Who is calling, for the audit (``require_admin`` has already admitted them)."""
    name = credential_name(settings, credentials.credentials if credentials else "")
    return f"{operator.strip()} ({name})" if operator and operator.strip() else name


ActorDep = Annotated[str, Depends(get_actor)]


@router.get("", response_model=DefaultsState)
async def get_defaults(onboardings: OnboardingsDep) -> DefaultsState:
    """The timeouts new onboardings start with (``current``), and the audit of their changes,
    oldest first (the newest 100)."""
    return await onboardings.defaults.state()


@router.put(
    "",
    response_model=DefaultsState,
    responses={422: {"model": Problem, "description": "Unknown stage or non-positive duration"}},
)
async def set_defaults(
    body: TimeoutsBody, onboardings: OnboardingsDep, actor: ActorDep
) -> DefaultsState:
    """Change the default stall timeouts (per stage), ``expireAfter`` or ``settleWindow`` for
    onboardings started from now on; those already running keep theirs. Audited."""
    return await onboardings.defaults.change(timeouts_change(body), actor)
