"""Smile's API shapes (from its OpenAPI spec) and what the activities hand the workflow.

Every datetime read from Smile is aware: a naive one is taken as UTC, so nothing naive reaches
the workflow (comparing naive and aware datetimes there would fail its task forever)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from onboarding.core.models import CamelModel, UtcDatetime


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
    expires_at: UtcDatetime
    mode: str | None = None


class SmileUser(SmileModel):
    id: str
    external_metadata: dict[str, Any] | None = None
    created_at: UtcDatetime | None = None
    providers: list[str] = Field(default_factory=list)


class SmileUserCreated(SmileModel):
    user: SmileUser
    token: SmileToken


class SmileConnection(SmileModel):
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    updated_at: UtcDatetime | None = None


class SmileAccount(SmileModel):
    id: str
    created_at: UtcDatetime | None = None
    provider_id: str | None = None
    user_id: str | None = None
    # Smile has been seen to answer ``null`` here: such an account is skipped, not fatal.
    connection_status: str | None = None
    connection: SmileConnection | None = None


class SmileArchiveState(SmileModel):
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    updated_at: UtcDatetime | None = None


class SmileArchive(SmileModel):
    id: str
    created_at: UtcDatetime | None = None
    user_id: str | None = None
    state: SmileArchiveState | None = None


class SmileReferenceMetadata(SmileModel):
    """``ObjectReferenceMetadata``: where a task or a data item came from."""

    created_at: UtcDatetime | None = None
    item_created_at: UtcDatetime | None = None
    source_id: str | None = None
    source_type: str | None = None
    user_id: str | None = None
    provider_id: str | None = None


class SmileTask(SmileModel):
    """``Task`` (``GET /tasks``): ``status`` is ``Started`` or ``Finished``."""

    id: str
    type: str | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    status: str | None = None
    # null is read as none saved, so one odd task never fails the whole reconciliation
    datapoints: Annotated[list[str], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        default_factory=list
    )
    metadata: SmileReferenceMetadata | None = None


class SmileDataItem(SmileModel):
    """A data item (identity, employment, income, ...) reduced to what reconciliation may
    keep: its id and its metadata, never the user's data itself."""

    id: str | None = None
    metadata: SmileReferenceMetadata | None = None


class SmilePage(SmileModel):
    next_cursor: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)


# --- what the activities return -------------------------------------------------------------


class LinkToken(CamelModel):
    """A single-use link token for the Wink Widget. The value travels once, to its caller."""

    access_token: str
    expires_at: UtcDatetime
    mode: str | None = None


class CreateUserRequest(BaseModel):
    external_metadata: dict[str, Any] | None = None


class CreatedUser(CamelModel):
    user_id: str
    token: LinkToken


class DataPresence(CamelModel):
    """How many items of one data type Smile holds for a user (no item is ever kept)."""

    dtype: str  # the core's name: identity, employments, incomes, ...
    count: int
    latest_at: UtcDatetime | None = None


class SmileSnapshot(CamelModel):
    """What Smile's API says about a user right now: the input to reconciliation."""

    user_id: str
    accounts: list[SmileAccount]
    archives: list[SmileArchive]
    tasks: list[SmileTask] = Field(default_factory=list)
    data: list[DataPresence] = Field(default_factory=list)
