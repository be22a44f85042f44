"""Activities that talk to Smile. Each Smile failure becomes an ``ApplicationError`` whose type
names the case; the caller's ``RetryPolicy`` lists the non-retryable ones, and a 429's
``Retry-After`` becomes the next retry's delay."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.reconcile import (
    DATA_ENDPOINTS,
    Reconciliation,
    data_types_to_query,
    reconcile,
)
from activities.smile_client import SmileClient
from activities.smile_errors import SmileError, SmileForbidden, SmileNotFound, SmileRateLimited
from activities.smile_models import (
    CreatedUser,
    CreateUserRequest,
    DataPresence,
    LinkToken,
    SmileSnapshot,
)

logger = logging.getLogger("onboarding.smile")


def application_error(err: SmileError) -> ApplicationError:
    return ApplicationError(
        str(err),
        type=err.type_name,
        non_retryable=not err.retryable,
        next_retry_delay=err.retry_after if isinstance(err, SmileRateLimited) else None,
    )


def _count_token_refresh(outcome: str) -> None:
    """Each attempt at a link token, on the worker's metrics endpoint: ``issued``, or the
    Smile error's type (``SmileRateLimited``, …); the SDK adds ``activity_type`` and more."""
    activity.metric_meter().create_counter(
        "onboarding_token_refreshes", "Link token requests to Smile, by outcome"
    ).add(1, {"outcome": outcome})


class SmileActivities:
    """Bound to one pooled :class:`SmileClient` per worker."""

    def __init__(self, client: SmileClient) -> None:
        self._client = client

    @activity.defn(name="smile_create_user")
    async def create_user(self, request: CreateUserRequest) -> CreatedUser:
        try:
            created = await self._client.create_user(request.external_metadata)
        except SmileError as err:
            raise application_error(err) from None
        logger.info("created Smile user %s", created.user.id)
        token = created.token
        return CreatedUser(
            user_id=created.user.id,
            token=LinkToken(
                access_token=token.access_token, expires_at=token.expires_at, mode=token.mode
            ),
        )

    @activity.defn(name="smile_create_token")
    async def create_token(self, user_id: str) -> LinkToken:
        try:
            token = await self._client.create_token(user_id)
        except SmileError as err:
            _count_token_refresh(err.type_name)
            raise application_error(err) from None
        _count_token_refresh("issued")
        logger.info("issued a link token for %s, expiring %s", user_id, token.expires_at)
        return LinkToken(access_token=token.access_token, expires_at=token.expires_at,
                         mode=token.mode)  # fmt: skip

    @activity.defn(name="smile_reconcile")
    async def reconcile(
        self, user_id: str, required_data: list[str] | None = None
    ) -> Reconciliation:
        """Smile's own records of the user (accounts, archives, tasks, and how many items of
        each required data type it holds), as events to merge. Only ids, statuses and counts
        leave this activity: its result lands in the workflow's history."""
        try:
            accounts = await self._client.list_accounts(user_id)
            archives = await self._client.list_archives(user_id)
            tasks = await self._client.list_tasks(user_id)
            data = [
                presence
                for dtype in data_types_to_query(required_data)
                if (presence := await self._data_presence(dtype, user_id)) is not None
            ]
        except SmileError as err:
            raise application_error(err) from None
        snapshot = SmileSnapshot(
            user_id=user_id, accounts=accounts, archives=archives, tasks=tasks, data=data
        )
        result = reconcile(snapshot, datetime.now(UTC))
        if result.skipped:
            logger.info("reconciling %s: %d record(s) without a known status skipped",
                        user_id, result.skipped)  # fmt: skip
        return result

    async def _data_presence(self, dtype: str, user_id: str) -> DataPresence | None:
        """Best effort: a data endpoint this tenant may not use (403, 404) skips that type. It
        must not end the onboarding as "no such user", which a 404 elsewhere means."""
        try:
            count, latest = await self._client.count_items(DATA_ENDPOINTS[dtype][0], user_id)
        except (SmileNotFound, SmileForbidden) as err:
            logger.info("reconciling %s: %s data skipped (%s)", user_id, dtype, type(err).__name__)
            return None
        return DataPresence(dtype=dtype, count=count, latest_at=latest)
