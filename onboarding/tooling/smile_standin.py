"""A local stand-in for Smile's API, speaking its real shape, for offline development and tests.

- ``/v1/users``, ``/v1/tokens``, ``/v1/accounts``, ``/v1/archives``, ``/v1/uploads``,
  ``/v1/tasks`` and the data endpoints (``/v1/identities``, ``/v1/employments``,
  ``/v1/incomes``, ...): HTTP Basic auth checked, the ``{code, message, requestId, data}``
  envelope for answers *and* errors, ids like ``a-…``, times to the second, tokens with
  ``expiresAt``, lists paged with ``size``/``cursor`` and filtered by ``userId``/``sourceId``.
  ``POST /v1/users`` enforces the ``externalMetadata`` limits of the spec (a 400, as Smile).
- ``/_control/faults``: fail the next N calls with a status, answer 429 with ``Retry-After``,
  delay answers past the client's time-out, reject credentials.
- ``/_control/webhooks``: build a real webhook envelope, sign it (``Smile-Signature``) and send it
  to the service, updating the stand-in's own records as Smile would (accounts, archives,
  tasks, data items). Without an ``accountId``/``archiveId``/``sourceId`` an event is about the
  user's latest account (or archive); only ``ACCOUNT_CREATED``/``ARCHIVE_STARTED`` invent a new
  one. With ``"deliver": false`` the records change and nothing is sent: a lost webhook.
- ``/_control/accounts/{id}``, ``/_control/uploads/{id}``: change Smile's records *without* a
  webhook, the way a missed delivery looks from our side.
- ``/_control/calls``: the calls received, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, Query, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from onboarding.core.external_metadata import check_external_metadata
from onboarding.core.signatures import sign

TENANT = "standin"
TOKEN_LIFETIME = timedelta(hours=5)

_ACCOUNT_EVENTS = {
    "ACCOUNT_CREATED": "PENDING",
    "ACCOUNT_CONNECTED": "CONNECTED",
    "ACCOUNT_FAILED": "ERROR",
    "ACCOUNT_DISCONNECTED": "DISCONNECTED",
}
_ARCHIVE_EVENTS = {
    "ARCHIVE_STARTED": "STARTED",
    "ARCHIVE_ANALYZED": "ANALYZED",
    "ARCHIVE_FAILED": "ERROR",
    "ARCHIVE_REVOKED": "REVOKED",
}
# Webhook prefix of ``<PREFIX>_ADDED`` -> (data endpoint, ``RefDatapoint``, id prefix).
_DATA_EVENTS = {
    "IDENTITY": ("identities", "IDENTITIES", "i"),
    "RATING": ("ratings", "RATINGS", "r"),
    "TRANSACTIONS": ("transactions", "TRANSACTIONS", "t"),
    "DOCUMENTS": ("documents", "DOCUMENTS", "d"),
    "EMPLOYMENTS": ("employments", "EMPLOYMENTS", "e"),
    "INCOMES": ("incomes", "INCOMES", "in"),
    "CONTRIBUTIONS": ("contributions", "CONTRIBUTIONS", "c"),
    "EINCOMES": ("eincomes", "EINCOMES", "ei"),
    "LIABILITIES": ("liabilities", "LIABILITIES", "l"),
    "INSIGHT": ("insights", "INSIGHTS", "ins"),
    "LINK": ("links", "LINK", "lk"),
}
DATA_PATHS = tuple(path for path, _, _ in _DATA_EVENTS.values())
# What a successful task saved when the webhook played names no ``datapoints``.
_DEFAULT_DATAPOINTS = {
    "ACCOUNT": ["IDENTITIES", "EMPLOYMENTS", "INCOMES"],
    "ARCHIVE": ["DOCUMENTS"],
}
_SESSION_EVENTS = {"USER_SESSION_COMPLETED": "COMPLETED", "USER_SESSION_RESET": "IN_PROGRESS"}
# Smile's ``code`` for each HTTP status it documents (Chapter 2, "Error Messages").
_CODES = {
    400: "INVALID_PARAMETERS",
    401: "INVALID_CREDENTIALS",
    403: "UNAUTHORIZED_ACCESS",
    404: "MISSING_RESOURCE",
    408: "TIME_LIMIT_EXCEEDED",  # not in Smile's table; its nearest code
    415: "UNSUPPORTED_TYPE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "SERVER_ERROR",
    501: "UNSUPPORTED_METHOD",
    503: "SERVER_UNAVAILABLE",
    504: "TIME_LIMIT_EXCEEDED",
}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _hex() -> str:
    return uuid.uuid4().hex


class Faults(BaseModel):
    fail_next: int = Field(0, alias="failNext", ge=0)
    fail_status: int = Field(500, alias="failStatus", ge=400, le=599)
    rate_limit_next: int = Field(0, alias="rateLimitNext", ge=0)
    retry_after: int = Field(1, alias="retryAfter", ge=0)
    delay_next: int = Field(0, alias="delayNext", ge=0)
    delay_seconds: float = Field(0.0, alias="delaySeconds", ge=0)
    reject_credentials: bool = Field(False, alias="rejectCredentials")
    only_path: str | None = Field(None, alias="onlyPath", description="e.g. /v1/users")

    model_config = {"populate_by_name": True}


class AccountChange(BaseModel):
    user_id: str = Field(alias="userId")
    provider_id: str = Field("abccorp", alias="providerId")
    connection_status: str = Field(alias="connectionStatus")
    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")


class UploadChange(BaseModel):
    user_id: str = Field(alias="userId")
    status: str = "STARTED"
    type: str = "PAYSLIP"
    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")


class WebhookRequest(BaseModel):
    user_id: str | None = Field(None, alias="userId")
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(None, alias="eventId")
    deliver: bool = Field(True, description="false: update Smile's records, send nothing")


@dataclass
class Call:
    method: str
    path: str
    query: str
    status: int | None  # None while still being answered
    at: datetime


@dataclass
class StandinState:
    api_key: str
    api_secret: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    archives: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {path: {} for path in DATA_PATHS}
    )
    calls: list[Call] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def ensure_user(self, user_id: str) -> None:
        self.users.setdefault(
            user_id,
            {"id": user_id, "externalMetadata": {}, "createdAt": _iso(_now()), "providers": []},
        )

    def latest(self, records: dict[str, dict[str, Any]], user_id: str) -> dict[str, Any] | None:
        """The user's most recently created record (insertion order breaks ties)."""
        mine = list(enumerate(r for r in records.values() if r.get("userId") == user_id))
        if not mine:
            return None
        return max(mine, key=lambda pair: (pair[1].get("createdAt") or "", pair[0]))[1]


def _envelope(data: Any, *, code: str = "OK", message: str = "Success") -> dict[str, Any]:
    return {"code": code, "message": message, "requestId": str(uuid.uuid4()), "data": data}


def _error(status: int, code: str | None, message: str,
           headers: dict[str, str] | None = None) -> Response:  # fmt: skip
    code = code or _CODES.get(status, "SERVER_ERROR" if status >= 500 else "INVALID_PARAMETERS")
    return JSONResponse(_envelope({}, code=code, message=message), status_code=status,
                        headers=headers)  # fmt: skip


def _token() -> dict[str, Any]:
    return {
        "accessToken": f"standin.{secrets.token_urlsafe(24)}",
        "expiresAt": _iso(_now() + TOKEN_LIFETIME),
        "mode": "SANDBOX",
    }


def create_standin_app(
    api_key: str,
    api_secret: str,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> FastAPI:
    state = StandinState(api_key, api_secret, webhook_url, webhook_secret)
    app = FastAPI(title="Smile stand-in", docs_url="/_docs", openapi_url="/_openapi.json")
    app.state.standin = state

    @app.middleware("http")
    async def faults_and_auth(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)  # type: ignore[no-any-return]
        # Recorded on arrival, so a call still being delayed is already visible.
        call = Call(request.method, request.url.path, request.url.query, None, _now())
        state.calls.append(call)
        response = await _apply_faults_and_auth(state, request)
        if response is None:
            response = await call_next(request)
        call.status = response.status_code
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await request_validation_exception_handler(request, exc)
        where = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors()[:5])
        return _error(400, "INVALID_PARAMETERS", f"Missing or invalid parameters: {where}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == 405:  # Smile answers an unsupported method with 501
            return _error(501, "UNSUPPORTED_METHOD", "The HTTP method is not supported")
        return _error(exc.status_code, None, str(exc.detail))

    @app.post("/v1/users", status_code=201)
    async def create_user(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return _error(400, "INVALID_PARAMETERS", "The body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "INVALID_PARAMETERS", "The body must be a JSON object")
        metadata = body.get("externalMetadata", {})
        if metadata is None:  # ObjectExternalMetadata is a non-null object
            return _error(400, "INVALID_PARAMETERS", "externalMetadata must be an object")
        try:
            check_external_metadata(metadata)
        except ValueError as err:
            return _error(400, "INVALID_PARAMETERS", f"externalMetadata: {err}")
        user_id = f"{TENANT}-{_hex()}"
        user: dict[str, Any] = {
            "id": user_id,
            "externalMetadata": metadata,
            "createdAt": _iso(_now()),
            "providers": [],
        }
        state.users[user_id] = user
        return JSONResponse(
            _envelope({"user": user, "token": _token()}, code="CREATED", message="Created"),
            status_code=201,
        )

    @app.get("/v1/users/{user_id}")
    async def get_user(user_id: str) -> Response:
        if user_id not in state.users:
            return _error(404, "MISSING_RESOURCE", "User not found")
        return JSONResponse(_envelope(state.users[user_id]))

    @app.post("/v1/tokens", status_code=201)
    async def create_token(
        user_id: Annotated[str | None, Query(alias="userId")] = None,
    ) -> Response:
        if not user_id:
            return _error(400, "INVALID_PARAMETERS", "userId is required")
        if user_id not in state.users:
            return _error(404, "MISSING_RESOURCE", "User not found")
        return JSONResponse(_envelope(_token(), code="CREATED", message="Created"), status_code=201)

    def _listing(path: str, records: Callable[[], dict[str, dict[str, Any]]]) -> None:
        """``GET /v1/{path}``: paged like Smile's lists, filtered by ``userId``/``sourceId``
        (found on the record or in its ``metadata``)."""

        async def list_records(
            user_id: Annotated[str | None, Query(alias="userId")] = None,
            source_id: Annotated[str | None, Query(alias="sourceId")] = None,
            size: Annotated[int, Query(ge=1, le=150)] = 10,
            cursor: str | None = None,
        ) -> dict[str, Any]:
            items = [
                r for r in records().values()
                if (user_id is None or _field(r, "userId") == user_id)
                and (source_id is None or _field(r, "sourceId") == source_id)
            ]  # fmt: skip
            start = int(cursor) if cursor and cursor.isdigit() else 0
            chunk = items[start : start + size]
            more = start + size < len(items)
            return _envelope({"nextCursor": str(start + size) if more else None, "items": chunk})

        app.get(f"/v1/{path}", name=f"list_{path}")(list_records)

    _listing("accounts", lambda: state.accounts)
    _listing("archives", lambda: state.archives)
    _listing("uploads", lambda: state.uploads)
    _listing("tasks", lambda: state.tasks)
    for data_path in DATA_PATHS:
        _listing(data_path, partial(state.data.__getitem__, data_path))

    # --- control ---------------------------------------------------------------------------

    @app.post("/_control/faults")
    async def set_faults(faults: Faults) -> dict[str, Any]:
        state.faults = faults
        return faults.model_dump(by_alias=True)

    @app.delete("/_control/faults", status_code=204)
    async def clear_faults() -> None:
        state.faults = Faults()

    @app.get("/_control/calls")
    async def calls() -> list[dict[str, Any]]:
        return [
            {"method": c.method, "path": c.path, "query": c.query, "status": c.status,
             "at": _iso(c.at)}
            for c in state.calls
        ]  # fmt: skip

    @app.delete("/_control/calls", status_code=204)
    async def clear_calls() -> None:
        state.calls.clear()

    @app.put("/_control/accounts/{account_id}")
    async def put_account(account_id: str, change: AccountChange) -> dict[str, Any]:
        state.ensure_user(change.user_id)
        return _record_account(
            state,
            account_id,
            change.user_id,
            change.provider_id,
            change.connection_status,
            change.error_code,
            change.error_message,
        )

    @app.put("/_control/uploads/{upload_id}")
    async def put_upload(upload_id: str, change: UploadChange) -> dict[str, Any]:
        state.ensure_user(change.user_id)
        now = _iso(_now())
        upload = state.uploads.get(upload_id) or {
            "id": upload_id, "createdAt": now, "providerId": "user-provided",
            "userId": change.user_id, "type": change.type, "rawFiles": [],
        }  # fmt: skip
        upload["state"] = {"status": change.status, "errorCode": change.error_code,
                           "errorMessage": change.error_message, "updatedAt": now}  # fmt: skip
        state.uploads[upload_id] = upload
        return upload

    @app.post("/_control/webhooks")
    async def send_webhook(
        request: WebhookRequest,
        target: Annotated[str | None, Header(alias="X-Webhook-Url")] = None,
    ) -> dict[str, Any]:
        envelope = _webhook_envelope(state, request)
        if not request.deliver:
            return {"sent": False, "envelope": envelope, "detail": "recorded, not delivered"}
        body = _encode(envelope)
        url = target or state.webhook_url
        if url is None or state.webhook_secret is None:
            return {"sent": False, "envelope": envelope, "detail": "no webhook target configured"}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                url, content=body,
                headers={"Smile-Signature": sign(body, state.webhook_secret),
                         "Content-Type": "application/json"},
            )  # fmt: skip
        return {"sent": True, "status": response.status_code, "envelope": envelope,
                "response": response.json() if response.content else None}  # fmt: skip

    return app


def _encode(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()


def _record_account(
    state: StandinState,
    account_id: str,
    user_id: str,
    provider_id: str,
    status: str,
    error_code: str | None,
    error_message: str | None,
) -> dict[str, Any]:
    now = _iso(_now())
    account = state.accounts.get(account_id) or {
        "id": account_id, "createdAt": now, "providerId": provider_id, "userId": user_id,
        "monitorStatus": "UNSUPPORTED", "monitor": {"status": "UNSUPPORTED", "updatedAt": None},
    }  # fmt: skip
    account["connectionStatus"] = status
    account["connection"] = {"status": status, "errorCode": error_code,
                             "errorMessage": error_message, "updatedAt": now}  # fmt: skip
    state.accounts[account_id] = account
    user = state.users.get(user_id)
    if user is not None and status == "CONNECTED" and provider_id not in user["providers"]:
        user["providers"].append(provider_id)
    return account


def _field(record: dict[str, Any], key: str) -> Any:
    """A record's own field, or its ``metadata``'s (tasks and data items keep ids there)."""
    if key in record:
        return record[key]
    metadata = record.get("metadata")
    return metadata.get(key) if isinstance(metadata, dict) else None


def _webhook_envelope(state: StandinState, request: WebhookRequest) -> dict[str, Any]:
    """The envelope Smile would send for ``request``, after updating the stand-in's records as
    Smile would have them."""
    data = dict(request.data)
    if request.user_id is not None:
        data["userId"] = request.user_id
        state.ensure_user(request.user_id)
    user_id = data.get("userId")
    kind = request.type
    if isinstance(user_id, str):
        if kind in _ACCOUNT_EVENTS:
            _account_webhook(state, kind, user_id, data)
        elif kind in _ARCHIVE_EVENTS:
            _archive_webhook(state, kind, user_id, data)
        elif kind in ("TASK_STARTED", "TASK_FINISHED"):
            _task_webhook(state, kind, user_id, data)
        elif kind.endswith("_ADDED") and kind.removesuffix("_ADDED") in _DATA_EVENTS:
            _data_webhook(state, kind.removesuffix("_ADDED"), user_id, data)
        elif kind in _SESSION_EVENTS:
            # Smile puts the session's user at data.session.userId, not at data.userId.
            del data["userId"]
            session = {"userId": user_id, "channel": "Default", "channelId": None,
                       "status": _SESSION_EVENTS[kind], **data.get("session", {})}  # fmt: skip
            data["session"] = session
            if kind == "USER_SESSION_COMPLETED":
                data.setdefault("payload", {"metadata": session, "forms": [], "accounts": [],
                                            "archives": []})  # fmt: skip
    return {
        "id": request.event_id or f"et-{_hex()}",
        "version": 1,
        "type": kind,
        "createdAt": _iso(_now()),
        "data": data,
    }


def _account_webhook(state: StandinState, kind: str, user_id: str, data: dict[str, Any]) -> None:
    if "accountId" not in data:
        # A new account only when one is created; otherwise the user's latest one, so
        # ACCOUNT_CREATED then ACCOUNT_CONNECTED played by hand are about the same account.
        latest = None if kind == "ACCOUNT_CREATED" else state.latest(state.accounts, user_id)
        data["accountId"] = latest["id"] if latest else f"a-{_hex()}"
    known = state.accounts.get(data["accountId"])
    providers = data.setdefault("providers", [known["providerId"] if known else "abccorp"])
    _record_account(state, data["accountId"], user_id, providers[0], _ACCOUNT_EVENTS[kind],
                    data.get("errorCode"), data.get("errorMessage"))  # fmt: skip


def _archive_webhook(state: StandinState, kind: str, user_id: str, data: dict[str, Any]) -> None:
    if "archiveId" not in data:
        latest = None if kind == "ARCHIVE_STARTED" else state.latest(state.archives, user_id)
        data["archiveId"] = latest["id"] if latest else f"archive-{_hex()}"
    now = _iso(_now())
    archive = state.archives.get(data["archiveId"]) or {
        "id": data["archiveId"], "createdAt": now, "providerId": "user-provided",
        "userId": user_id, "type": "PAYSLIP",
    }  # fmt: skip
    archive["state"] = {"status": _ARCHIVE_EVENTS[kind], "errorCode": data.get("errorCode"),
                        "errorMessage": data.get("errorMessage"), "updatedAt": now}  # fmt: skip
    state.archives[data["archiveId"]] = archive


def _source(state: StandinState, user_id: str, data: dict[str, Any]) -> tuple[str, str, str]:
    """``(sourceId, sourceType, providerId)`` of an event: as given, else the user's latest
    account (or archive, for ``sourceType: ARCHIVE``), else a new id."""
    source_type = str(data.get("sourceType") or "ACCOUNT").upper()
    records = state.archives if source_type == "ARCHIVE" else state.accounts
    source_id = data.get("sourceId") or data.get("accountId")
    if not source_id:
        latest = state.latest(records, user_id)
        prefix = "archive" if source_type == "ARCHIVE" else "a"
        source_id = latest["id"] if latest else f"{prefix}-{_hex()}"
    known = records.get(source_id)
    provider = (known or {}).get("providerId") or (
        "user-provided" if source_type == "ARCHIVE" else "abccorp"
    )
    return source_id, source_type, provider


def _task_webhook(state: StandinState, kind: str, user_id: str, data: dict[str, Any]) -> None:
    source_id, source_type, provider = _source(state, user_id, data)
    task_type = data.get("taskType") or (
        "ANALYZE_ARCHIVE" if source_type == "ARCHIVE" else "LINK_ACCOUNT"
    )
    data.update(sourceId=source_id, sourceType=source_type, taskType=task_type)
    data.setdefault("providers", [provider])
    now = _iso(_now())
    running = [
        t for t in state.tasks.values()
        if t["status"] == "Started" and t["type"] == task_type
        and t["metadata"]["sourceId"] == source_id and t["metadata"]["userId"] == user_id
    ]  # fmt: skip
    task = running[-1] if running else None
    if task is None or kind == "TASK_STARTED":
        task = {
            "id": f"task-{_hex()}", "type": task_type, "startedAt": now, "finishedAt": None,
            "status": "Started", "datapoints": [],
            "metadata": {"createdAt": now, "itemCreatedAt": now, "sourceId": source_id,
                         "sourceType": source_type, "userId": user_id, "providerId": provider},
        }  # fmt: skip
        state.tasks[task["id"]] = task
    if kind == "TASK_FINISHED":
        status = str(data.setdefault("status", "SUCCEEDED")).upper()
        data.setdefault("errorCode", None)
        if "datapoints" not in data:
            succeeded = status == "SUCCEEDED"
            data["datapoints"] = list(_DEFAULT_DATAPOINTS.get(source_type, [])) if succeeded else []
        # Smile's Task says only Finished; what was saved is in its datapoints.
        task.update(status="Finished", finishedAt=now, datapoints=list(data["datapoints"]))


def _data_webhook(state: StandinState, prefix: str, user_id: str, data: dict[str, Any]) -> None:
    path, _, id_prefix = _DATA_EVENTS[prefix]
    source_id, source_type, provider = _source(state, user_id, data)
    data.setdefault("accountId", source_id)
    data.setdefault("providers", [provider])
    count = data.get("count")
    count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
    now = _iso(_now())
    for _ in range(count):
        item_id = f"{id_prefix}-{_hex()}"
        if prefix == "IDENTITY":
            item_id = data.setdefault("identityId", item_id)
        state.data[path][item_id] = {
            "id": item_id, **_DATA_SKELETONS.get(prefix, {}),
            "metadata": {"createdAt": now, "itemCreatedAt": now, "sourceId": source_id,
                         "sourceType": source_type, "userId": user_id, "providerId": provider},
        }  # fmt: skip


# The required fields of each data schema, with made-up values (no real person's data).
_DATA_SKELETONS: dict[str, dict[str, Any]] = {
    "IDENTITY": {"fullName": "Stand-in User", "emails": [], "phones": [], "socialProfiles": [],
                 "addresses": []},
    "DOCUMENTS": {"name": "stand-in document"},
    "EMPLOYMENTS": {"startDate": "2020-01-01"},
    "INCOMES": {"startDate": "2020-01-01", "currency": "PHP"},
    "TRANSACTIONS": {"date": "2020-01-01", "currency": "PHP", "amount": 0},
    "LIABILITIES": {"type": "LOAN", "startDate": "2020-01-01", "loanAmount": 0,
                    "currency": "PHP", "amortizationFrequency": "MONTHLY"},
    "EINCOMES": {"month": "2020-01", "currency": "PHP", "baseAmount": 0, "amount": 0},
    "LINK": {"endDate": None},
}  # fmt: skip


async def _apply_faults_and_auth(state: StandinState, request: Request) -> Response | None:
    faults = state.faults
    if faults.only_path is not None and request.url.path != faults.only_path:
        return (
            None
            if _authorized(state, request.headers.get("Authorization"))
            else _error(401, "INVALID_CREDENTIALS", "Invalid API key or secret")
        )
    if faults.delay_next > 0:
        faults.delay_next -= 1
        await asyncio.sleep(faults.delay_seconds)
    if faults.reject_credentials or not _authorized(state, request.headers.get("Authorization")):
        return _error(401, "INVALID_CREDENTIALS", "Invalid API key or secret")
    if faults.fail_next > 0:
        faults.fail_next -= 1
        return _error(faults.fail_status, None, "Injected failure")
    if faults.rate_limit_next > 0:
        faults.rate_limit_next -= 1
        return _error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests",
                      headers={"Retry-After": str(faults.retry_after)})  # fmt: skip
    return None


def _authorized(state: StandinState, header: str | None) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    expected = f"{state.api_key}:{state.api_secret}"
    return hmac.compare_digest(decoded.encode(), expected.encode())
