"""Smile's API shapes (from its OpenAPI spec) and what the activities hand the workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from onboarding.models import CamelModel


class SmileModel(CamelModel):
    model_config = ConfigDict(extra="ignore")


class SmileEnvelope(SmileModel):
    """Every Smile response: ``{code, message, requestId, data}``."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    data: Any = None


class SmileToken(SmileModel):
    access_token: str
    expires_at: datetime
    mode: str | None = None


class SmileUser(SmileModel):
    id: str
    external_metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    providers: list[str] = Field(default_factory=list)


class SmileUserCreated(SmileModel):
    user: SmileUser
    token: SmileToken


class SmileConnection(SmileModel):
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    updated_at: datetime | None = None


class SmileAccount(SmileModel):
    id: str
    created_at: datetime | None = None
    provider_id: str | None = None
    user_id: str | None = None
    connection_status: str
    connection: SmileConnection | None = None


class SmileArchiveState(SmileModel):
    status: str
    error_code: str | None = None
    error_message: str | None = None
    updated_at: datetime | None = None


class SmileArchive(SmileModel):
    id: str
    created_at: datetime | None = None
    user_id: str | None = None
    state: SmileArchiveState


class SmilePage(SmileModel):
    next_cursor: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)


# --- what the activities return -------------------------------------------------------------


class LinkToken(CamelModel):
    """A single-use link token for the Wink Widget. The value travels once, to its caller."""

    access_token: str
    expires_at: datetime
    mode: str | None = None


class CreateUserRequest(BaseModel):
    external_metadata: dict[str, Any] | None = None


class CreatedUser(CamelModel):
    user_id: str
    token: LinkToken


class SmileSnapshot(CamelModel):
    """What Smile's API says about a user right now: the input to reconciliation."""

    user_id: str
    accounts: list[SmileAccount]
    archives: list[SmileArchive]
