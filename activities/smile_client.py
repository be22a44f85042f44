"""An async client for Smile's API: one pooled httpx client per worker, HTTP Basic auth, the
``{code, message, requestId, data}`` envelope, and errors classified by what a retry could fix.

Nothing here logs or raises a secret or a token: errors carry the method, the path, the status,
and Smile's own ``code``/``message``/``requestId``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from activities.smile_errors import (
    SmileBadRequest,
    SmileError,
    SmileForbidden,
    SmileNotFound,
    SmileProtocolError,
    SmileRateLimited,
    SmileServerError,
    SmileTimeout,
    SmileUnauthorized,
    SmileUnreachable,
)
from activities.smile_models import (
    SmileAccount,
    SmileArchive,
    SmileDataItem,
    SmileEnvelope,
    SmilePage,
    SmileTask,
    SmileToken,
    SmileUserCreated,
)

PAGE_SIZE = 150  # Smile's maximum
MAX_PAGES = 20


_BY_STATUS: dict[int, type[SmileError]] = {
    400: SmileBadRequest,
    401: SmileUnauthorized,
    403: SmileForbidden,
    404: SmileNotFound,
    408: SmileTimeout,  # Request Timeout: Smile gave up waiting; trying again can help
    429: SmileRateLimited,
}


def _retry_after(value: str | None) -> timedelta | None:
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when - datetime.now(UTC), timedelta(0))


class SmileClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: SecretStr,
        *,
        timeout: timedelta = timedelta(seconds=10),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            auth=httpx.BasicAuth(api_key, api_secret.get_secret_value()),
            timeout=timeout.total_seconds(),
            headers={"Accept": "application/json", "User-Agent": "smile-onboarding/0.1"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> SmileEnvelope:  # fmt: skip
        where = f"{method} /{path}"
        try:
            response = await self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException:
            raise SmileTimeout(f"{where}: Smile did not answer in time") from None
        except httpx.TransportError as err:
            raise SmileUnreachable(f"{where}: cannot reach Smile ({type(err).__name__})") from None
        envelope = self._envelope(response)
        if response.is_success:
            return envelope
        detail = f"{where}: HTTP {response.status_code}"
        if envelope.code or envelope.message:
            detail += f" {envelope.code or ''}: {envelope.message or ''}".rstrip()
        if envelope.request_id:
            detail += f" (requestId {envelope.request_id})"
        if response.status_code >= 500:
            raise SmileServerError(detail)
        error = _BY_STATUS.get(response.status_code, SmileBadRequest)
        raise error(detail, retry_after=_retry_after(response.headers.get("Retry-After")))

    @staticmethod
    def _envelope(response: httpx.Response) -> SmileEnvelope:
        try:
            return SmileEnvelope.model_validate_json(response.content or b"{}")
        except ValidationError:
            return SmileEnvelope()

    async def create_user(self, external_metadata: dict[str, Any] | None) -> SmileUserCreated:
        # ``ObjectExternalMetadata`` is a non-null object: without metadata, omit the key.
        body = {} if external_metadata is None else {"externalMetadata": external_metadata}
        envelope = await self._call("POST", "users", json=body)
        return _validate(SmileUserCreated, envelope.data, "POST /users")

    async def create_token(self, user_id: str) -> SmileToken:
        envelope = await self._call("POST", "tokens", params={"userId": user_id})
        return _validate(SmileToken, envelope.data, "POST /tokens")

    async def list_accounts(self, user_id: str) -> list[SmileAccount]:
        return [_validate(SmileAccount, item, "GET /accounts")
                for item in await self._list("accounts", user_id)]  # fmt: skip

    async def list_archives(self, user_id: str) -> list[SmileArchive]:
        return [_validate(SmileArchive, item, "GET /archives")
                for item in await self._list("archives", user_id)]  # fmt: skip

    async def list_tasks(self, user_id: str) -> list[SmileTask]:
        return [_validate(SmileTask, item, "GET /tasks")
                for item in await self._list("tasks", user_id)]  # fmt: skip

    async def count_items(self, path: str, user_id: str) -> tuple[int, datetime | None]:
        """How many items a data endpoint (``identities``, ``incomes``, ...) holds for the user,
        and when the newest was stored. The items themselves are dropped page by page."""
        count = 0
        latest: datetime | None = None
        async for page in self._pages(path, user_id):
            for item in page:
                meta = _validate(SmileDataItem, item, f"GET /{path}").metadata
                count += 1
                at = (meta.created_at or meta.item_created_at) if meta else None
                if at is not None and (latest is None or at > latest):
                    latest = at
        return count, latest

    async def _list(self, path: str, user_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self._pages(path, user_id):
            items.extend(page)
        return items

    async def _pages(self, path: str, user_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"userId": user_id, "size": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            envelope = await self._call("GET", path, params=params)
            page = _validate(SmilePage, envelope.data, f"GET /{path}")
            yield page.items
            cursor = page.next_cursor
            if not cursor or not page.items:
                break


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in err.errors()[:5])
        raise SmileProtocolError(f"{where}: unexpected response shape ({fields})") from None
