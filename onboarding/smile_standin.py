"""A local stand-in for Smile's API, speaking its real shape, for offline development and tests.

- ``/v1/users``, ``/v1/tokens``, ``/v1/accounts``, ``/v1/archives``: HTTP Basic auth checked, the
  ``{code, message, requestId, data}`` envelope, ids like ``a-…``, tokens with ``expiresAt``.
- ``/_control/faults``: fail the next N calls with a status, answer 429 with ``Retry-After``,
  delay answers past the client's time-out, reject credentials.
- ``/_control/webhooks``: build a real webhook envelope, sign it (``Smile-Signature``) and send it
  to the service, updating the stand-in's own records as Smile would.
- ``/_control/accounts/{id}``: change an account in Smile's records *without* a webhook, the way
  a missed delivery looks from our side.
- ``/_control/calls``: the calls received, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.signatures import sign

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


class WebhookRequest(BaseModel):
    user_id: str | None = Field(None, alias="userId")
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(None, alias="eventId")


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
    calls: list[Call] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def ensure_user(self, user_id: str) -> None:
        self.users.setdefault(
            user_id,
            {"id": user_id, "externalMetadata": None, "createdAt": _iso(_now()), "providers": []},
        )


def _envelope(data: Any, *, code: str = "OK", message: str = "Success") -> dict[str, Any]:
    return {"code": code, "message": message, "requestId": str(uuid.uuid4()), "data": data}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
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

    @app.post("/v1/users", status_code=201)
    async def create_user(request: Request) -> dict[str, Any]:
        body = await request.json() if await request.body() else {}
        user_id = f"{TENANT}-{_hex()}"
        user: dict[str, Any] = {
            "id": user_id,
            "externalMetadata": (body or {}).get("externalMetadata"),
            "createdAt": _iso(_now()),
            "providers": [],
        }
        state.users[user_id] = user
        return _envelope({"user": user, "token": _token()}, code="CREATED", message="Created")

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

    def _page(records: dict[str, dict[str, Any]], user_id: str | None, size: int,
              cursor: str | None) -> dict[str, Any]:  # fmt: skip
        items = [r for r in records.values() if user_id is None or r["userId"] == user_id]
        start = int(cursor) if cursor and cursor.isdigit() else 0
        chunk = items[start : start + size]
        more = start + size < len(items)
        return _envelope({"nextCursor": str(start + size) if more else None, "items": chunk})

    @app.get("/v1/accounts")
    async def list_accounts(
        user_id: Annotated[str | None, Query(alias="userId")] = None,
        size: Annotated[int, Query(ge=1, le=150)] = 10,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return _page(state.accounts, user_id, size, cursor)

    @app.get("/v1/archives")
    async def list_archives(
        user_id: Annotated[str | None, Query(alias="userId")] = None,
        size: Annotated[int, Query(ge=1, le=150)] = 10,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return _page(state.archives, user_id, size, cursor)

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

    @app.post("/_control/webhooks")
    async def send_webhook(
        request: WebhookRequest,
        target: Annotated[str | None, Header(alias="X-Webhook-Url")] = None,
    ) -> dict[str, Any]:
        envelope = _webhook_envelope(state, request)
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


def _webhook_envelope(state: StandinState, request: WebhookRequest) -> dict[str, Any]:
    data = dict(request.data)
    if request.user_id is not None:
        data["userId"] = request.user_id
        state.ensure_user(request.user_id)
    user_id = data.get("userId")
    if request.type in _ACCOUNT_EVENTS and isinstance(user_id, str):
        account_id = data.setdefault("accountId", f"a-{_hex()}")
        providers = data.setdefault("providers", ["abccorp"])
        _record_account(state, account_id, user_id, providers[0], _ACCOUNT_EVENTS[request.type],
                        data.get("errorCode"), data.get("errorMessage"))  # fmt: skip
    if request.type in _ARCHIVE_EVENTS and isinstance(user_id, str):
        archive_id = data.setdefault("archiveId", f"archive-{_hex()}")
        state.archives[archive_id] = {
            "id": archive_id, "createdAt": _iso(_now()), "providerId": "user-provided",
            "userId": user_id, "type": "PAYSLIP",
            "state": {"status": _ARCHIVE_EVENTS[request.type], "errorCode": data.get("errorCode"),
                      "errorMessage": data.get("errorMessage"), "updatedAt": _iso(_now())},
        }  # fmt: skip
    return {
        "id": request.event_id or f"et-{_hex()}",
        "version": 1,
        "type": request.type,
        "createdAt": _iso(datetime.now(UTC)),
        "data": data,
    }


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
        return _error(faults.fail_status, "SERVER_ERROR", "Injected failure")
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
