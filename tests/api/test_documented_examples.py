"""Every example payload Smile documents, played through the real HTTP API into real workflows.

Webhooks: each ``x-examples`` envelope of the OpenAPI spec's ``*Event`` schemas and each JSON
example of the webhook reference (``tests/fixtures/smile/documented/webhooks.json``, extracted
by ``extract_documented.py``), with a fresh event id and a fresh user, signed and posted to
``POST /webhooks/smile``; then the same envelope with ``data`` reduced to the fields the spec
marks required. Each asserts the answer and the fact its type produces in the onboarding.

Callbacks: each Wink Widget callback of the callback reference, with every documented property
and in its minimal forms, posted to ``POST /onboardings/{id}/callbacks`` with the onboarding's
callback token.

Each example gets its own user (a workflow starts in milliseconds), so a failure names one
example and what it should have done."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from onboarding.core.datapoints import WEBHOOK_PREFIXES
from tests.api.test_webhooks import signed
from tests.conftest import eventually, unique_user
from tests.smile_samples import (
    BASE_TIME,
    NO_USER_TYPES,
    documented_callbacks,
    documented_webhooks,
    fresh_envelope,
    webhook_body,
)

URL = "/webhooks/smile"
MISSING = "<missing>"
ANY_TIME = "<any time>"  # expected: some time is recorded
EXAMPLES = documented_webhooks()
CALLBACKS = documented_callbacks()
ACCOUNT_WEBHOOKS = {
    "ACCOUNT_CREATED": "pending",
    "ACCOUNT_CONNECTED": "connected",
    "ACCOUNT_DISCONNECTED": "disconnected",
    "ACCOUNT_FAILED": "error",
}
ACCOUNT_CALLBACKS = {
    "onAccountCreated": "pending",
    "onAccountConnected": "connected",
    "onAccountRemoved": "disconnected",
    "onAccountError": "error",
}


def _at(view: Any, path: str) -> Any:
    """``a.0.b`` into the view; ``a.#`` is the length of ``a``; ``<missing>`` if absent."""
    for part in path.split("."):
        if part == "#":
            return len(view)
        try:
            view = view[int(part)] if isinstance(view, list) else view[part]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return view


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _data_type(event_type: str) -> str | None:
    for suffix in ("_ADDED", "_UPDATED"):
        if event_type.endswith(suffix):
            return WEBHOOK_PREFIXES.get(event_type.removesuffix(suffix))
    return None


def webhook_facts(envelope: dict[str, Any]) -> dict[str, Any]:
    """What the onboarding should show after ``envelope`` alone: paths into the view."""
    kind: str = envelope["type"]
    data: dict[str, Any] = envelope["data"]
    account_id = data.get("accountId")
    facts: dict[str, Any] = {"status": "active", "stage": "created", "accounts.#": 0}

    def account(status: str, *, proven: bool, **more: Any) -> None:
        facts.update({
            "accounts.#": 1, "accounts.0.accountId": account_id, "accounts.0.status": status,
            "accounts.0.reportedBy": "webhook", "accounts.0.everConnected": proven,
            **{f"accounts.0.{k}": v for k, v in more.items()},
        })  # fmt: skip

    if kind == "USER_CREATED":
        facts["userCreatedAt"] = _when(envelope["createdAt"])
    elif kind in ACCOUNT_WEBHOOKS:
        status = ACCOUNT_WEBHOOKS[kind]
        more: dict[str, Any] = {"providers": sorted(data.get("providers", []))}
        if kind == "ACCOUNT_FAILED":
            more |= {"errorCode": data.get("errorCode"), "errorMessage": data.get("errorMessage")}
        account(status, proven=kind == "ACCOUNT_CONNECTED", **more)
        facts["stage"] = "connected" if status == "connected" else "account_created"
    elif kind in ("TASK_STARTED", "TASK_FINISHED", "ACCOUNT_SYNC_TASK_FINISHED"):
        # A finished task whose outcome is not stated succeeded if it saved datapoints, else it
        # is FINISHED (outcome unknown): never a success, never STARTED.
        saved = "SUCCEEDED" if data.get("datapoints") else "FINISHED"
        status = "STARTED" if kind == "TASK_STARTED" else data.get("status") or saved
        succeeded = status == "SUCCEEDED"
        facts.update({
            "tasks.#": 1, "tasks.0.sourceId": data["sourceId"],
            "tasks.0.sourceType": data["sourceType"], "tasks.0.status": status,
            "tasks.0.succeeded": succeeded,
            "tasks.0.kind": "sync" if kind == "ACCOUNT_SYNC_TASK_FINISHED" else "task",
        })  # fmt: skip
        if data.get("taskType"):
            facts["tasks.0.taskType"] = data["taskType"]
        if succeeded and data["sourceType"] == "ACCOUNT":  # data proves the account connected
            account_id = data["sourceId"]
            account("connected", proven=True)
            facts["stage"] = "connected"
        if succeeded and kind == "TASK_FINISHED":
            facts["stage"] = "data_ready"
    elif kind.startswith("ARCHIVE_"):
        status = kind.removeprefix("ARCHIVE_").lower()
        facts.update({"archives.#": 1, "archives.0.archiveId": data["archiveId"],
                      "archives.0.status": status, "archives.0.reportedBy": "webhook",
                      "archives.0.everAnalyzed": status == "analyzed"})  # fmt: skip
        if status == "failed":
            facts |= {"archives.0.errorCode": data.get("errorCode"),
                      "archives.0.errorMessage": data.get("errorMessage")}  # fmt: skip
        facts["stage"] = {"started": "uploads", "analyzed": "data_ready"}.get(status, "created")
    elif kind.startswith("INVITE_"):
        facts |= {"invite.inviteId": data["inviteId"],
                  "invite.status": kind.removeprefix("INVITE_").lower()}  # fmt: skip
    elif (dtype := _data_type(kind)) is not None:
        count = data.get("count")
        items = count if isinstance(count, int) and not isinstance(count, bool) else 1
        facts |= {f"data.{dtype}.events": 1, f"data.{dtype}.items": items}
        if account_id is not None:
            account("connected", proven=True)
            facts["stage"] = "connected"
    elif kind in ("USER_SESSION_COMPLETED", "USER_SESSION_RESET"):
        session = data["session"]
        facts |= {"session.status": session["status"], "session.channel": session.get("channel"),
                  "session.eventType": kind}  # fmt: skip
    else:  # pragma: no cover - every documented type is handled above
        raise AssertionError(f"no expectation for {kind}")
    return facts


async def _view(api: httpx.AsyncClient, admin: dict[str, str], user: str) -> dict[str, Any]:
    response = await api.get(f"/onboardings/{user}", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _shown(view: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    shown = {path: _at(view, path) for path in facts}
    for path, value in shown.items():
        if value == MISSING or not isinstance(value, str):
            continue
        if isinstance(facts[path], datetime):
            shown[path] = _when(value)
        elif facts[path] == ANY_TIME:
            shown[path] = ANY_TIME if _when(value) else value
    return shown


async def play_webhook(
    api: httpx.AsyncClient, admin: dict[str, str], envelope: dict[str, Any]
) -> None:
    """Post ``envelope`` signed; assert the answer, then the facts (polling to a deadline)."""
    body = json.dumps(envelope).encode()
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    ack = response.json()
    if envelope["type"] in NO_USER_TYPES:
        assert (ack["outcome"], ack["userId"], ack["workflowId"]) == ("no_user", None, None)
        return
    data = envelope["data"]
    user = data["session"]["userId"] if "session" in data else data["userId"]
    assert (ack["outcome"], ack["userId"], ack["workflowId"]) == (
        "signalled", user, f"onboarding-{user}",
    )  # fmt: skip
    facts = webhook_facts(envelope)

    async def applied() -> None:
        view = await _view(api, admin, user)
        history = [(e["id"], e["type"], e["source"], e["known"]) for e in view["events"]]
        assert history == [(envelope["id"], envelope["type"], "webhook", True)]
        assert (view["eventsTotal"], view["unknownTypes"], view["otherVersions"]) == (1, [], {})
        assert _shown(view, facts) == facts

    await eventually(applied, timeout=10)


def _example_id(example: dict[str, Any]) -> str:
    source: str = example["source"]
    if source.startswith("openapi"):
        parts = source.split("/")
        return f"spec:{parts[3]}:{parts[-1]}"
    return f"docs:{example['type']}:{source.split()[2]}"


@pytest.mark.parametrize("minimal", [False, True], ids=["full", "minimal"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[_example_id(e) for e in EXAMPLES])
async def test_every_documented_webhook_example(
    api: httpx.AsyncClient, admin: dict[str, str], example: dict[str, Any], minimal: bool
) -> None:
    envelope = fresh_envelope(example, unique_user(), minimal=minimal)
    await play_webhook(api, admin, envelope)


def test_the_examples_cover_every_documented_webhook_type() -> None:
    from tests.smile_samples import spec_event_types

    played = {e["type"] for e in EXAMPLES}
    # VERIFICATION_COMPLETED's only example is typed VERIFICATION_STARTED in Smile's spec.
    assert set(spec_event_types()) - played - {"ALL_EVENTS"} == {"VERIFICATION_COMPLETED"}
    assert len([e for e in EXAMPLES if e["source"].startswith("openapi")]) == 36
    assert len([e for e in EXAMPLES if e["source"].startswith("tag-webhooks")]) == 26


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"version": 2}, id="version 2"),
        pytest.param({"createdAt": "2021-04-14T09:30:24"}, id="createdAt without a time zone"),
        pytest.param({"createdAt": "2021-04-14T17:30:24+08:00"}, id="createdAt with an offset"),
    ],
)
async def test_documented_envelope_variants(
    api: httpx.AsyncClient, admin: dict[str, str], change: dict[str, Any]
) -> None:
    user = unique_user()
    envelope = {**json.loads(webhook_body("ACCOUNT_CONNECTED", user)), **change}
    body = json.dumps(envelope).encode()
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text

    async def applied() -> None:
        view = await _view(api, admin, user)
        assert view["otherVersions"] == ({"2": 1} if "version" in change else {})
        (record,) = view["events"]
        assert _when(record["createdAt"]) == BASE_TIME  # all three are 09:30:24 UTC
        assert (view["stage"], view["accounts"][0]["status"]) == ("connected", "connected")

    await eventually(applied, timeout=10)


async def test_an_envelope_without_data_is_accepted_and_matches_no_user(
    api: httpx.AsyncClient,
) -> None:
    body = json.dumps({"id": f"et-{uuid.uuid4().hex}", "version": 1, "type": "USER_CREATED",
                       "createdAt": "2021-04-14T09:30:24Z"}).encode()  # fmt: skip
    response = await api.post(URL, content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "no_user"


# --- Wink Widget callbacks -------------------------------------------------------------------

PROVIDER = "abccorp"
# A value for each documented callback property (Chapter-3, "List of Callbacks").
VALUES: dict[str, Any] = {
    "accountId": "a-123abc456def789abc123def456abc78",
    "providerId": PROVIDER,
    "errorCode": "INVALID_CREDENTIALS",
    "reason": "close",
    "uploads": {"fileType": "PAYSLIP", "count": 2},
    "eventTime": "2024-01-01T00:00:00Z",
    "mode": "SANDBOX",
    "archive": {"fileType": "PAYSLIP"},
}


def _full(callback: str, user: str, screen: str = "ConsentPageOpened") -> dict[str, Any] | None:
    """The callback's data with every documented property."""
    fields = CALLBACKS["callbacks"][callback]
    if not fields:
        return None
    data = {f: user if f == "userId" else VALUES.get(f) for f in fields}
    if callback == "onUIEvent":
        data["eventName"] = screen
        screen_props = CALLBACKS["uiEventScreens"][screen]
        data["account"] = {p: VALUES[p] for p in screen_props}
    return data


def callback_facts(callback: str, data: Any) -> dict[str, Any]:
    """What the onboarding should show after this one callback: paths into the view."""
    fields: dict[str, Any] = data if isinstance(data, dict) else {}
    facts: dict[str, Any] = {"status": "active", "stage": "created"}
    status = ACCOUNT_CALLBACKS.get(callback)
    if status is not None:
        if fields.get("accountId") is None:  # nothing to mark: recorded in the history only
            return facts | {"accounts.#": 0}
        facts |= {
            "accounts.#": 1, "accounts.0.accountId": fields["accountId"],
            "accounts.0.status": status, "accounts.0.reportedBy": "widget",
            "accounts.0.everConnected": False,
            "accounts.0.providers": [fields["providerId"]] if fields.get("providerId") else [],
            "stage": "connected" if status == "connected" else "account_created",
        }  # fmt: skip
        if callback == "onAccountError":
            facts["accounts.0.errorCode"] = fields.get("errorCode")
    elif callback == "onTokenExpired":
        facts["token.expiredReports"] = 1
    elif callback == "onClose":
        reason = data if isinstance(data, str) else fields.get("reason")
        facts |= {"widget.state": "closed", "widget.closeReason": reason}
    elif callback == "onUploadsCreated":
        facts |= {"widget.uploadsCreated": 1, "widget.uploadsRemoved": 0, "stage": "uploads"}
    elif callback == "onUploadsRemoved":
        facts |= {"widget.uploadsCreated": 0, "widget.uploadsRemoved": 1}
    elif callback == "onUIEvent":
        facts |= {"widget.state": "open", "widget.lastScreen": fields["eventName"]}
        account = fields.get("account") or {}
        if fields["eventName"] == "MfaPageOpened" and account.get("accountId"):
            facts |= {"accounts.#": 1, "accounts.0.accountId": account["accountId"],
                      "accounts.0.status": "awaiting_mfa", "stage": "account_created"}  # fmt: skip
        elif fields["eventName"] == "MfaPageOpened" and account.get("providerId"):
            facts |= {"accounts.#": 0, f"widget.mfaProviders.{account['providerId']}": ANY_TIME}
        else:
            facts["accounts.#"] = 0
    return facts


def _callback_cases() -> list[Any]:
    """(callback, body beside ``callback`` or None for none) for the documented forms. ``USER``
    in data stands for the onboarding's user."""
    cases: list[Any] = []
    for callback in CALLBACKS["callbacks"]:
        if callback == "onUIEvent":
            for screen in CALLBACKS["uiEventScreens"]:
                cases.append(pytest.param(callback, _full(callback, "USER", screen),
                                          id=f"{callback} {screen}, documented"))  # fmt: skip
        else:
            cases.append(pytest.param(callback, _full(callback, "USER"),
                                      id=f"{callback}, documented"))  # fmt: skip
    account = {"accountId": VALUES["accountId"]}
    minimal = [
        ("onAccountCreated", account, "accountId only"),
        ("onAccountConnected", account, "accountId only"),
        ("onAccountRemoved", account, "accountId only"),
        ("onAccountError", {**account, "errorCode": None}, "errorCode null"),
        ("onAccountError", {"providerId": PROVIDER, "errorCode": "INVALID_CREDENTIALS"},
         "without accountId"),
        ("onAccountError", {}, "no data"),
        ("onTokenExpired", None, "no data"),
        ("onTokenExpired", {}, "empty data"),
        ("onClose", None, "no reason"),
        ("onClose", {}, "empty data"),
        *[("onClose", reason, f"bare reason {reason}") for reason in ("close", "exit", "error")],
        *[("onClose", {"reason": reason}, f"reason {reason}") for reason in ("exit", "error")],
        ("onUploadsCreated", {}, "without uploads"),
        ("onUploadsCreated", None, "no data"),
        ("onUploadsRemoved", {}, "without uploads"),
        ("onUIEvent", {"eventName": "LoginPageOpened"}, "eventName only"),
        ("onUIEvent", {"eventName": "LoginPageOpened", "eventTime": 1_704_067_200_000},
         "eventTime in epoch ms"),
        ("onUIEvent", {"eventName": "LoginPageOpened", "eventTime": 1_704_067_200},
         "eventTime in epoch s"),
        ("onUIEvent", {"eventName": "MfaPageOpened", "account": {"providerId": PROVIDER}},
         "MfaPageOpened with only account.providerId"),
        ("onUIEvent", {"eventName": "MfaPageOpened", "account": account},
         "MfaPageOpened with account.accountId"),
    ]  # fmt: skip
    cases += [pytest.param(c, d, id=f"{c}, {label}") for c, d, label in minimal]
    return cases


def _with_user(data: Any, user: str) -> Any:
    if isinstance(data, dict):
        return {k: user if v == "USER" else v for k, v in data.items()}
    return data


async def _start(api: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, str]:
    response = await api.post("/onboardings", headers=admin)
    assert response.status_code == 201, response.text
    started = response.json()
    return started["userId"], started["callbackToken"]


async def _callback(
    api: httpx.AsyncClient, user: str, token: str, callback: str, data: Any
) -> httpx.Response:
    body: dict[str, Any] = {"callback": callback}
    if data is not None:
        body["data"] = data
    return await api.post(f"/onboardings/{user}/callbacks", json=body,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip


@pytest.mark.parametrize(("callback", "data"), _callback_cases())
async def test_every_documented_callback(
    api: httpx.AsyncClient, admin: dict[str, str], callback: str, data: Any
) -> None:
    user, token = await _start(api, admin)
    data = _with_user(data, user)
    response = await _callback(api, user, token, callback, data)
    assert response.status_code == 202, response.text
    assert (response.json()["outcome"], response.json()["callback"]) == ("signalled", callback)
    facts = callback_facts(callback, data)

    async def applied() -> None:
        view = await _view(api, admin, user)
        assert [(e["type"], e["source"]) for e in view["events"]] == [(callback, "widget")]
        assert _shown(view, facts) == facts

    await eventually(applied, timeout=10)


async def test_mfa_page_with_only_a_provider_shows_its_pending_accounts_awaiting_mfa(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user, token = await _start(api, admin)
    for account_id, provider in (("a-mfa", PROVIDER), ("a-other", "xyzpayroll")):
        body = webhook_body("ACCOUNT_CREATED", user, accountId=account_id, providers=[provider])
        assert (await api.post(URL, content=body, headers=signed(body))).status_code == 202
    await eventually(lambda: _has_accounts(api, admin, user, 2), timeout=10)
    documented = {
        "eventName": "MfaPageOpened",
        "eventTime": "2024-01-01T00:00:00Z",
        "mode": "SANDBOX",
        "userId": user,
        "account": {"providerId": PROVIDER},
    }
    response = await _callback(api, user, token, "onUIEvent", documented)
    assert response.status_code == 202, response.text

    async def shown() -> None:
        view = await _view(api, admin, user)
        statuses = {a["accountId"]: a["status"] for a in view["accounts"]}
        assert statuses == {"a-mfa": "awaiting_mfa", "a-other": "pending"}, json.dumps(view)
        assert view["stage"] == "account_created"

    await eventually(shown, timeout=10)


async def _has_accounts(api: httpx.AsyncClient, admin: dict[str, str], user: str, n: int) -> None:
    assert len((await _view(api, admin, user))["accounts"]) == n


def test_the_callback_cases_cover_every_documented_callback_and_screen() -> None:
    from onboarding.core.catalogue import WIDGET_CALLBACKS

    assert set(CALLBACKS["callbacks"]) == set(WIDGET_CALLBACKS)
    assert len(CALLBACKS["uiEventScreens"]) == 12
