"""Widget callbacks through the real app: the callback token admits exactly one onboarding, and
every refusal changes nothing in Temporal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.routes.callbacks import CALLBACK_MODELS
from onboarding.core import callback_tokens
from onboarding.core.catalogue import WIDGET_CALLBACKS
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import Event, EventBatch
from tests.api.test_webhooks import signed
from tests.conftest import CALLBACK_SECRET, eventually, unique_user
from tests.smile_samples import BASE_TIME, webhook_body
from workflows.onboarding import INGEST_SIGNAL

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


async def signalled(client: Client, user_id: str) -> list[Event]:
    """The events that reached the workflow, as signalled (read back from its history)."""
    handle = client.get_workflow_handle(workflow_id_for(user_id))
    events: list[Event] = []
    async for entry in handle.fetch_history_events():
        if not entry.HasField("workflow_execution_signaled_event_attributes"):
            continue
        attributes = entry.workflow_execution_signaled_event_attributes
        if attributes.signal_name == INGEST_SIGNAL:
            payloads = list(attributes.input.payloads)
            # through the client's codec: history holds them encrypted
            (batch,) = await client.data_converter.decode(payloads, [EventBatch])
            events += batch.events
    return events


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


def _at(view: Any, path: str) -> Any:
    for part in path.split("."):
        view = view[int(part)] if isinstance(view, list) else view[part]
    return view


# Each documented minimal shape (Smile's callback reference, Chapter-3/Chapter-4): the request
# body beside "callback", the data the workflow is signalled with (besides userId), and what it
# does to the onboarding (paths into GET /onboardings/{id}).
DOCUMENTED: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("onClose, no data", "onClose", {}, {},
     {"widget.state": "closed", "widget.closeReason": None}),
    ("onClose, null data", "onClose", {"data": None}, {},
     {"widget.state": "closed", "widget.closeReason": None}),
    ("onClose, {}", "onClose", {"data": {}}, {},
     {"widget.state": "closed", "widget.closeReason": None}),
    ("onClose, reason null", "onClose", {"data": {"reason": None}}, {},
     {"widget.state": "closed", "widget.closeReason": None}),
    ("onClose, reason", "onClose", {"data": {"reason": "error"}}, {"reason": "error"},
     {"widget.state": "closed", "widget.closeReason": "error"}),
    ("onClose(reason), bare", "onClose", {"data": "close"}, {"reason": "close"},
     {"widget.state": "closed", "widget.closeReason": "close"}),
    ("onClose, SDK v2 {reason} wrapped", "onClose", {"data": {"reason": {"reason": "exit"}}},
     {"reason": "exit"}, {"widget.state": "closed", "widget.closeReason": "exit"}),
    ("onAccountError, errorCode null", "onAccountError",
     {"data": {"accountId": "a-e1", "providerId": "abccorp", "errorCode": None}},
     {"accountId": "a-e1", "providerId": "abccorp"},
     {"accounts.0.accountId": "a-e1", "accounts.0.status": "error",
      "accounts.0.errorCode": None, "accounts.0.reportedBy": "widget"}),
    ("onAccountError, no accountId", "onAccountError",
     {"data": {"providerId": "abccorp", "errorCode": "INVALID_CREDENTIALS"}},
     {"providerId": "abccorp", "errorCode": "INVALID_CREDENTIALS"}, {"accounts": []}),
    ("onAccountError, accountId null", "onAccountError",
     {"data": {"accountId": None, "errorCode": "INVALID_CREDENTIALS"}},
     {"errorCode": "INVALID_CREDENTIALS"}, {"accounts": []}),
    ("onUploadsCreated, no uploads", "onUploadsCreated", {"data": {}}, {},
     {"widget.uploadsCreated": 1, "widget.uploadsRemoved": 0}),
    ("onUploadsRemoved, no uploads", "onUploadsRemoved", {"data": {"uploads": None}}, {},
     {"widget.uploadsCreated": 0, "widget.uploadsRemoved": 1}),
    ("onUIEvent, eventTime in ms", "onUIEvent",
     {"data": {"eventName": "LoginPageOpened", "eventTime": 1_704_067_200_000}},
     {"eventName": "LoginPageOpened", "eventTime": 1_704_067_200_000},
     {"widget.state": "open", "widget.lastScreen": "LoginPageOpened"}),
    ("onUIEvent, eventTime in s", "onUIEvent",
     {"data": {"eventName": "ConsentPageOpened", "eventTime": 1_704_067_200.5}},
     {"eventName": "ConsentPageOpened", "eventTime": 1_704_067_200.5},
     {"widget.state": "open", "widget.lastScreen": "ConsentPageOpened"}),
    ("onUIEvent MfaPageOpened, providerId only", "onUIEvent",
     {"data": {"eventName": "MfaPageOpened", "eventTime": "2024-01-01T00:00:00Z",
               "mode": "SANDBOX", "account": {"providerId": "abccorp"}}},
     {"eventName": "MfaPageOpened", "eventTime": "2024-01-01T00:00:00Z", "mode": "SANDBOX",
      "account": {"providerId": "abccorp"}},
     {"widget.state": "open", "widget.lastScreen": "MfaPageOpened"}),
    ("onTokenExpired, no data", "onTokenExpired", {}, {}, {"token.expiredReports": 1}),
    ("onUploadsCreated, file names never kept", "onUploadsCreated",
     {"data": {"uploads": {"files": [{"name": "payslip-jane-doe.pdf"}]}}}, {},
     {"widget.uploadsCreated": 1}),
    ("onUIEvent with an archive, only its id and fileType kept", "onUIEvent",
     {"data": {"eventName": "FileTypePageOpened",
               "archive": {"fileType": "PAYSLIP", "fileName": "jane.pdf"}}},
     {"eventName": "FileTypePageOpened", "archive": {"fileType": "PAYSLIP"}},
     {"widget.lastScreen": "FileTypePageOpened"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("callback", "body", "data", "effects"),
    [case[1:] for case in DOCUMENTED],
    ids=[case[0] for case in DOCUMENTED],
)
async def test_every_documented_shape_is_accepted_and_applies_what_it_says(
    onboarding: Onboarding,
    dev_env: WorkflowEnvironment,
    callback: str,
    body: dict[str, Any],
    data: dict[str, Any],
    effects: dict[str, Any],
) -> None:
    response = await onboarding.api.post(
        f"/onboardings/{onboarding.user_id}/callbacks",
        headers=onboarding.auth(),
        json={"callback": callback, **body},
    )
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "signalled"

    async def applied() -> None:
        (event,) = await signalled(dev_env.client, onboarding.user_id)
        assert (event.type, event.source.value) == (callback, "widget")
        assert event.data == {**data, "userId": onboarding.user_id}
        view = await onboarding.view()
        assert [(e["type"], e["source"]) for e in view["events"]] == [(callback, "widget")]
        assert {path: _at(view, path) for path in effects} == effects

    await eventually(applied)


async def test_keys_of_the_front_ends_own_are_tolerated_and_left_out(
    onboarding: Onboarding, dev_env: WorkflowEnvironment
) -> None:
    data = {
        "accountId": "a-x1",
        "errorCode": "INVALID_CREDENTIALS",
        # not documented for the widget: never applied, even where a webhook would mean them
        "errorMessage": "from the browser",
        "providers": ["not-proven"],
        "screen": {"width": 390},
        "tenant": "ours",
    }
    response = await onboarding.send("onAccountError", data, sessionId="s-1", sentAt=1)
    assert response.status_code == 202, response.text

    async def applied() -> None:
        (event,) = await signalled(dev_env.client, onboarding.user_id)
        assert event.data == {
            "accountId": "a-x1",
            "errorCode": "INVALID_CREDENTIALS",
            "userId": onboarding.user_id,
        }
        (account,) = (await onboarding.view())["accounts"]
        assert (account["status"], account["errorCode"]) == ("error", "INVALID_CREDENTIALS")
        assert account["errorMessage"] is None
        assert account["providers"] == []

    await eventually(applied)


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
        ("not JSON", 400),
        ("onAccountConnected without accountId", 400),
        ("errorCode not a string", 400),
        ("reason not a string", 400),
        ("reason too long", 400),
        ("onUIEvent without eventName", 400),
        ("eventTime a boolean", 400),
        ("eventTime not a time", 400),
        ("eventTime too long", 400),
        ("account.providerId not a string", 400),
        ("uploads a string", 400),
        ("data an array", 400),
        ("data a string for another callback", 400),
        ("bad id", 400),
        ("data for another user", 403),
        ("oversize", 413),
    ],
)
async def test_bad_callbacks_are_refused_and_change_nothing(
    onboarding: Onboarding,
    admin: dict[str, str],
    dev_env: WorkflowEnvironment,
    case: str,
    status: int,
) -> None:
    other_token, _ = callback_tokens.issue(
        unique_user(), SecretStr(CALLBACK_SECRET), timedelta(hours=1), datetime.now(UTC)
    )
    foreign, _ = callback_tokens.issue(
        onboarding.user_id, SecretStr("not our secret"), timedelta(hours=1), datetime.now(UTC)
    )
    url = f"/onboardings/{onboarding.user_id}/callbacks"
    good = {"callback": "onClose", "data": {"reason": "exit"}}

    def ui(data: dict[str, Any]) -> dict[str, Any]:
        return {"callback": "onUIEvent", "data": {"eventName": "MfaPageOpened", **data}}

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
        "not JSON": {"content": b"{callback: onClose"},
        "onAccountConnected without accountId": {
            "json": {"callback": "onAccountConnected", "data": {"providerId": "abccorp"}}
        },
        "errorCode not a string": {
            "json": {"callback": "onAccountError", "data": {"accountId": "a", "errorCode": 7}}
        },
        "reason not a string": {"json": {"callback": "onClose", "data": {"reason": 1}}},
        "reason too long": {"json": {"callback": "onClose", "data": {"reason": "x" * 65}}},
        "onUIEvent without eventName": {
            "json": {"callback": "onUIEvent", "data": {"eventTime": "2024-01-01T00:00:00Z"}}
        },
        "eventTime a boolean": {"json": ui({"eventTime": True})},
        "eventTime not a time": {"json": ui({"eventTime": -5})},
        "eventTime too long": {"json": ui({"eventTime": "9" * 65})},
        "account.providerId not a string": {"json": ui({"account": {"providerId": 5}})},
        "uploads a string": {"json": {"callback": "onUploadsCreated", "data": {"uploads": "x"}}},
        "data an array": {"json": {"callback": "onClose", "data": ["close"]}},
        "data a string for another callback": {
            "json": {"callback": "onAccountCreated", "data": "a-1"}
        },
        "bad id": {"json": {**good, "id": "has spaces"}},
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
    assert await signalled(dev_env.client, onboarding.user_id) == []
