"""Widget callbacks through the real app: the callback token admits exactly one onboarding, and
every refusal changes nothing in Temporal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from api.routes.callbacks import CALLBACK_MODELS
from onboarding import callback_tokens
from onboarding.catalogue import WIDGET_CALLBACKS
from tests.api.test_webhooks import signed
from tests.conftest import CALLBACK_SECRET, eventually, unique_user
from tests.smile_samples import BASE_TIME, webhook_body

EXAMPLES: dict[str, dict[str, Any]] = {
    "onAccountCreated": {"accountId": "a-w1", "providerId": "abccorp"},
    "onAccountConnected": {"accountId": "a-w1", "providerId": "abccorp"},
    "onAccountRemoved": {"accountId": "a-w1", "providerId": "abccorp"},
    "onAccountError": {
        "accountId": "a-w1",
        "providerId": "abccorp",
        "errorCode": "INVALID_CREDENTIALS",
    },
    "onTokenExpired": {},
    "onClose": {"reason": "exit"},
    "onUploadsCreated": {"uploads": {"fileType": "PAYSLIP", "count": 2}},
    "onUploadsRemoved": {"uploads": {"fileType": "PAYSLIP", "count": 1}},
    "onUIEvent": {
        "eventName": "LoginPageOpened",
        "eventTime": "2024-01-01T00:00:00Z",
        "mode": "SANDBOX",
        "account": {"providerId": "abccorp"},
    },
}


class Onboarding:
    def __init__(self, api: httpx.AsyncClient, admin: dict[str, str], started: dict[str, Any]):
        self.api, self.admin = api, admin
        self.user_id: str = started["userId"]
        self.token: str = started["callbackToken"]

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def send(self, callback: str, data: dict[str, Any], **extra: Any) -> httpx.Response:
        headers = extra.pop("headers", self.auth())
        body = {"callback": callback, "data": data, **extra}
        return await self.api.post(
            f"/onboardings/{self.user_id}/callbacks", headers=headers, json=body
        )

    async def view(self) -> dict[str, Any]:
        response = await self.api.get(f"/onboardings/{self.user_id}", headers=self.admin)
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def onboarding(api: httpx.AsyncClient, admin: dict[str, str]) -> Onboarding:
    response = await api.post("/onboardings", headers=admin)
    assert response.status_code == 201, response.text
    return Onboarding(api, admin, response.json())


def test_there_is_a_shape_for_every_callback() -> None:
    assert set(CALLBACK_MODELS) == set(WIDGET_CALLBACKS) == set(EXAMPLES)


@pytest.mark.parametrize("callback", sorted(EXAMPLES))
async def test_every_callback_is_accepted_as_a_widget_fact(
    onboarding: Onboarding, callback: str
) -> None:
    response = await onboarding.send(callback, EXAMPLES[callback])
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "signalled"

    async def recorded() -> None:
        view = await onboarding.view()
        assert [(e["type"], e["source"]) for e in view["events"]] == [(callback, "widget")]

    await eventually(recorded)


async def test_a_retried_callback_with_its_id_counts_once(onboarding: Onboarding) -> None:
    for _ in range(3):
        response = await onboarding.send("onClose", {"reason": "close"}, id="front-end-42")
        assert response.status_code == 202

    async def once() -> None:
        view = await onboarding.view()
        assert (view["eventsTotal"], view["duplicatesIgnored"]) == (1, 2)
        assert view["widget"]["state"] == "closed"
        assert view["widget"]["closeReason"] == "close"

    await eventually(once)


async def test_the_webhook_wins_over_the_widget(onboarding: Onboarding) -> None:
    failed = webhook_body("ACCOUNT_FAILED", onboarding.user_id, accountId="a-x",
                          created_at=BASE_TIME)  # fmt: skip
    assert (await onboarding.api.post("/webhooks/smile", content=failed,
                                      headers=signed(failed))).status_code == 202  # fmt: skip
    # The widget claims success later (by its clock and ours): a hint, not proof.
    assert (await onboarding.send("onAccountConnected", {"accountId": "a-x"})).status_code == 202

    async def webhook_wins() -> None:
        view = await onboarding.view()
        assert view["eventsTotal"] == 2
        (account,) = view["accounts"]
        assert (account["status"], account["reportedBy"]) == ("error", "webhook")
        assert view["stage"] == "account_created"

    await eventually(webhook_wins)


def _expired_token(user_id: str) -> str:
    token, _ = callback_tokens.issue(
        user_id, SecretStr(CALLBACK_SECRET), timedelta(hours=1),
        datetime.now(UTC) - timedelta(hours=2),
    )  # fmt: skip
    return token


def _tampered(token: str) -> str:
    head, payload, mac = token.split(".")
    claims = json.loads(callback_tokens._unb64(payload))
    claims["e"] += 86400 * 365
    return f"{head}.{callback_tokens._b64(json.dumps(claims).encode())}.{mac}"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("another user's token", 403),
        ("expired token", 401),
        ("tampered token", 401),
        ("token signed with another secret", 401),
        ("admin token", 401),
        ("unknown callback", 400),
        ("missing errorCode", 400),
        ("not JSON", 400),
        ("extra top-level field", 400),
        ("data for another user", 403),
        ("oversize", 413),
    ],
)
async def test_bad_callbacks_are_refused_and_change_nothing(
    onboarding: Onboarding, admin: dict[str, str], case: str, status: int
) -> None:
    other_token, _ = callback_tokens.issue(
        unique_user(), SecretStr(CALLBACK_SECRET), timedelta(hours=1), datetime.now(UTC)
    )
    foreign, _ = callback_tokens.issue(
        onboarding.user_id, SecretStr("not our secret"), timedelta(hours=1), datetime.now(UTC)
    )
    url = f"/onboardings/{onboarding.user_id}/callbacks"
    good = {"callback": "onClose", "data": {"reason": "exit"}}
    requests: dict[str, dict[str, Any]] = {
        "no token": {"json": good, "headers": {}},
        "another user's token": {"json": good, "headers": onboarding.auth(other_token)},
        "expired token": {
            "json": good,
            "headers": onboarding.auth(_expired_token(onboarding.user_id)),
        },
        "tampered token": {"json": good, "headers": onboarding.auth(_tampered(onboarding.token))},
        "token signed with another secret": {"json": good, "headers": onboarding.auth(foreign)},
        "admin token": {"json": good, "headers": admin},
        "unknown callback": {"json": {"callback": "onSomethingElse", "data": {}}},
        "missing errorCode": {"json": {"callback": "onAccountError", "data": {"accountId": "a"}}},
        "not JSON": {"content": b"{callback: onClose"},
        "extra top-level field": {"json": {**good, "admin": True}},
        "data for another user": {
            "json": {"callback": "onClose", "data": {"reason": "x", "userId": unique_user()}}
        },
        "oversize": {"json": {"callback": "onClose", "data": {"reason": "x", "pad": "x" * 20_000}}},
    }
    kwargs = {"headers": onboarding.auth(), **requests[case]}
    response = await onboarding.api.post(url, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert onboarding.token not in response.text
    view = await onboarding.view()
    assert view["eventsTotal"] == 0
