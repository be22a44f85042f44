"""``POST /onboardings/{user_id}/callbacks``: the Wink Widget's callbacks, forwarded by the
customer's front end from the user's browser, authenticated with the per-onboarding callback
token. They are hints: recorded with source ``widget``, never proof (see docs/events.md)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from api.deps import IngestDep, SettingsDep
from api.metrics import ApiMetrics, mark_counted
from api.problems import Problem, ProblemError, describe_validation_error
from onboarding.core import callback_tokens
from onboarding.core.compact import compact_data
from onboarding.core.identity import USER_ID_PATTERN
from onboarding.core.models import CamelModel, Event, Source
from onboarding.service.onboardings import EventRefused
from onboarding.service.spool import SpoolError

router = APIRouter(tags=["callbacks"])
_bearer = HTTPBearer(auto_error=False, description="the onboarding's callbackToken")

_Id = Annotated[str, Field(min_length=1, max_length=128)]
# Epoch seconds or milliseconds up to the year ~5000 (in milliseconds).
_MAX_EPOCH = 10**14


def _event_time(value: Any) -> Any:
    """``eventTime`` is documented as a string; front ends also send a number (epoch
    milliseconds or seconds). Either is kept as given."""
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError("a string must be at most 64 characters")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and 0 <= value <= _MAX_EPOCH):
            raise ValueError("a number must be epoch seconds or milliseconds")
        return value
    raise ValueError("must be a string or a number (epoch milliseconds or seconds)")


class _Data(BaseModel):
    """A callback's ``data``: the documented fields, typed and bounded. Keys a front end adds of
    its own are tolerated and left out of the event, so a callback applies exactly what its
    documented fields say."""

    model_config = ConfigDict(extra="ignore")

    user_id: str | None = Field(None, alias="userId", max_length=200)


class AccountCallback(_Data):
    account_id: _Id = Field(alias="accountId")
    provider_id: str | None = Field(None, alias="providerId", max_length=128)


class AccountErrorCallback(_Data):
    # Without accountId the error is only recorded: there is no account to mark.
    account_id: _Id | None = Field(None, alias="accountId")
    provider_id: str | None = Field(None, alias="providerId", max_length=128)
    error_code: str | None = Field(None, alias="errorCode", max_length=128)


class TokenExpiredCallback(_Data):
    pass


class CloseCallback(_Data):
    reason: str | None = Field(
        None, max_length=64, description="close, exit or error; absent when not passed"
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        # SDK v2 passes ``{reason}``: a front end wrapping it as ``{reason: arg}`` sends it nested.
        if isinstance(value, dict) and set(value) <= {"reason", "userId"}:
            return value.get("reason")
        return value


class UploadsCallback(_Data):
    # Checked for shape, but never kept: it may name the user's files, and only the count of
    # callbacks matters to the onboarding.
    uploads: dict[str, Any] | list[Any] | None = Field(None, exclude=True)


class UIAccount(BaseModel):
    """``account`` of an ``onUIEvent``: ``providerId`` and/or ``accountId`` by screen."""

    model_config = ConfigDict(extra="ignore")

    provider_id: str | None = Field(None, alias="providerId", max_length=128)
    account_id: _Id | None = Field(None, alias="accountId")


class UIArchive(BaseModel):
    """``archive`` of an ``onUIEvent``: the kind of document (``fileType``), nothing personal."""

    model_config = ConfigDict(extra="ignore")

    archive_id: _Id | None = Field(None, alias="archiveId")
    file_type: str | None = Field(None, alias="fileType", max_length=64)


class UIEventCallback(_Data):
    event_name: str = Field(alias="eventName", min_length=1, max_length=128)
    event_time: Annotated[
        str | int | float | None, BeforeValidator(_event_time), Field(alias="eventTime")
    ] = None
    mode: str | None = Field(None, max_length=32)
    account: UIAccount | None = None
    archive: UIArchive | None = None


# One model per Wink Widget callback (shapes from Smile's "Event Notifications" chapter).
CALLBACK_MODELS: dict[str, type[_Data]] = {
    "onAccountCreated": AccountCallback,
    "onAccountConnected": AccountCallback,
    "onAccountRemoved": AccountCallback,
    "onAccountError": AccountErrorCallback,
    "onTokenExpired": TokenExpiredCallback,
    "onClose": CloseCallback,
    "onUploadsCreated": UploadsCallback,
    "onUploadsRemoved": UploadsCallback,
    "onUIEvent": UIEventCallback,
}


def _callback_argument(value: Any) -> Any:
    if value is None or isinstance(value, dict | str):
        return value
    raise ValueError("must be an object (for onClose, also the bare reason string)")


class CallbackRequest(BaseModel):
    # Keys a front end adds of its own are tolerated, and never reach the event.
    model_config = ConfigDict(extra="ignore")

    callback: str = Field(max_length=64, examples=["onAccountConnected"])
    data: Annotated[dict[str, Any] | str | None, BeforeValidator(_callback_argument)] = Field(
        None,
        description="The callback's argument: an object; absent or null when the callback "
        "has none; for onClose, also the bare reason string",
    )
    id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="Client-chosen id: a retried callback with the same id counts once",
    )


class CallbackAck(CamelModel):
    accepted: bool = True
    outcome: Literal["signalled", "spooled", "onboarding_ended"]
    event_id: str
    callback: str


# Refusals by status, as counted in onboarding_callbacks_total's outcome.
_REFUSED = {
    400: "refused_invalid",
    401: "refused_token",
    403: "refused_other_onboarding",
    503: "refused_not_configured",  # no ONBOARDING_CALLBACK_SECRET: the only 503 before ingest
}


def _authenticate(
    user_id: str,
    settings: Any,
    credentials: HTTPAuthorizationCredentials | None,
    metrics: ApiMetrics,
) -> None:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        metrics.signature_failure("callbacks", "missing")
        raise ProblemError(401, "missing callback token", headers=challenge)
    if not settings.callback_secrets:
        raise ProblemError(503, "callbacks are not configured on this service")
    try:
        token_user = callback_tokens.verify(
            credentials.credentials, settings.callback_secrets, datetime.now(UTC)
        )
    except callback_tokens.ExpiredCallbackToken:
        metrics.signature_failure("callbacks", "expired")
        raise ProblemError(401, "callback token has expired", headers=challenge) from None
    except callback_tokens.CallbackTokenError:
        metrics.signature_failure("callbacks", "invalid")
        raise ProblemError(401, "invalid callback token", headers=challenge) from None
    if token_user != user_id:
        raise ProblemError(403, "this callback token belongs to another onboarding")


def _parse(body: bytes, user_id: str) -> tuple[CallbackRequest, dict[str, Any]]:
    """The request and the data the event carries: the documented fields that were given
    (nulls dropped), under their documented names."""
    try:
        request = CallbackRequest.model_validate_json(body)
    except ValidationError as err:
        raise ProblemError(400, f"not a callback: {describe_validation_error(err)}") from None
    model = CALLBACK_MODELS.get(request.callback)
    if model is None:
        known = ", ".join(CALLBACK_MODELS)
        raise ProblemError(400, f"unknown callback {request.callback!r}; known: {known}")
    raw = request.data
    if isinstance(raw, str):
        if model is not CloseCallback:
            raise ProblemError(400, f"{request.callback} data: must be an object")
        raw = {"reason": raw}  # onClose(reason) as Smile's callback reference passes it
    try:
        data = model.model_validate(raw or {})
    except ValidationError as err:
        detail = describe_validation_error(err)
        raise ProblemError(400, f"{request.callback} data: {detail}") from None
    if data.user_id is not None and data.user_id != user_id:
        raise ProblemError(403, "callback data names another user")
    return request, data.model_dump(by_alias=True, exclude_none=True)


@router.post(
    "/onboardings/{user_id}/callbacks",
    status_code=202,
    response_model=CallbackAck,
    responses={
        400: {"model": Problem, "description": "Malformed body or unknown callback"},
        401: {"model": Problem, "description": "Missing, forged or expired callback token"},
        403: {"model": Problem, "description": "The token is for another onboarding"},
        413: {"model": Problem, "description": "Body over the size limit"},
        503: {"model": Problem, "description": "Temporal unreachable"},
    },
)
async def receive_callback(
    user_id: Annotated[str, Path(pattern=USER_ID_PATTERN)],
    request: Request,
    settings: SettingsDep,
    ingest: IngestDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> JSONResponse:
    """Record one widget callback as a hint. ``Authorization: Bearer <callbackToken>``."""
    metrics: ApiMetrics = request.app.state.metrics
    try:
        _authenticate(user_id, settings, credentials, metrics)
        body = await request.body()  # bounded by ONBOARDING_CALLBACK_MAX_BYTES in api/limits.py
        callback, data = _parse(body, user_id)
    except ProblemError as err:
        metrics.callback(None, _REFUSED.get(err.status, f"refused_{err.status}"))
        raise
    now = datetime.now(UTC)
    event = Event(
        id=callback.id or f"cb-{uuid.uuid4().hex}",
        type=callback.callback,
        source=Source.WIDGET,
        created_at=now,  # the browser's clock is not trusted
        received_at=now,
        data={**compact_data(data), "userId": user_id},
    )
    try:
        result = await ingest(user_id, event)
    except SpoolError:  # neither Temporal nor the spool could take it
        metrics.callback(callback.callback, "refused_unavailable")
        raise
    except EventRefused:  # Temporal refused the event itself: 422 from the app's error handler
        metrics.callback(callback.callback, "refused_invalid")
        mark_counted(request.scope)  # so the middleware does not count the 422 again
        raise
    outcome: Literal["signalled", "spooled", "onboarding_ended"] = (
        "signalled" if result.outcome == "accepted" else result.outcome
    )
    metrics.callback(callback.callback, outcome)
    ack = CallbackAck(outcome=outcome, event_id=event.id, callback=callback.callback)
    return JSONResponse(
        ack.model_dump(by_alias=True), status_code=200 if outcome == "onboarding_ended" else 202
    )
