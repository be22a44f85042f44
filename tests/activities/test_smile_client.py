"""The Smile client against the stand-in over real HTTP: envelope, paging, error classes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import SecretStr

from activities.smile_client import SmileClient
from activities.smile_errors import (
    SmileNotFound,
    SmileRateLimited,
    SmileServerError,
    SmileTimeout,
    SmileUnauthorized,
    SmileUnreachable,
)
from tests.conftest import SMILE_KEY, SMILE_SECRET, Standin, free_port, running_standin


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


@pytest.fixture
async def client(standin: Standin) -> AsyncIterator[SmileClient]:
    smile = standin.client(timeout=0.5)
    yield smile
    await smile.aclose()


async def test_create_user_and_token(client: SmileClient) -> None:
    created = await client.create_user({"ref": "x"})
    assert created.user.id.startswith("standin-")
    assert created.user.external_metadata == {"ref": "x"}
    assert created.token.expires_at > created.user.created_at  # type: ignore[operator]
    token = await client.create_token(created.user.id)
    assert token.access_token != created.token.access_token
    assert token.mode == "SANDBOX"


async def test_accounts_are_paged(client: SmileClient, standin: Standin) -> None:
    user = (await client.create_user(None)).user.id
    for i in range(160):  # more than one page of 150
        await standin.control.put(
            f"/_control/accounts/a-{i:04d}", json={"userId": user, "connectionStatus": "PENDING"}
        )
    accounts = await client.list_accounts(user)
    assert len(accounts) == 160
    assert {a.connection_status for a in accounts} == {"PENDING"}
    assert await client.list_archives(user) == []


@pytest.mark.parametrize(
    ("faults", "error", "retryable"),
    [
        ({"failNext": 1, "failStatus": 500}, SmileServerError, True),
        ({"failNext": 1, "failStatus": 503}, SmileServerError, True),
        ({"rateLimitNext": 1, "retryAfter": 7}, SmileRateLimited, True),
        ({"rejectCredentials": True}, SmileUnauthorized, False),
        ({"delayNext": 1, "delaySeconds": 2}, SmileTimeout, True),
    ],
)
async def test_errors_are_classified(
    client: SmileClient,
    standin: Standin,
    faults: dict[str, object],
    error: type[Exception],
    retryable: bool,
) -> None:
    await standin.faults(**faults)
    with pytest.raises(error) as caught:
        await client.create_user(None)
    assert caught.value.retryable is retryable  # type: ignore[attr-defined]
    assert SMILE_SECRET not in str(caught.value)
    if error is SmileRateLimited:
        assert caught.value.retry_after == timedelta(seconds=7)  # type: ignore[attr-defined]


async def test_unknown_user_is_not_found(client: SmileClient) -> None:
    with pytest.raises(SmileNotFound, match="MISSING_RESOURCE"):
        await client.create_token("standin-nobody")


async def test_unreachable() -> None:
    smile = SmileClient(f"http://127.0.0.1:{free_port()}/v1", SMILE_KEY, SecretStr(SMILE_SECRET))
    with pytest.raises(SmileUnreachable) as caught:
        await smile.create_user(None)
    assert caught.value.retryable
    await smile.aclose()
