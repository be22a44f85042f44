"""Personal data stays encrypted in Temporal: a whole journey through the real app, worker and
dev server, with the codec; then its RAW history, read by a client without the codec, holds
none of the journey's personal or secret values. The same journey without the codec (the
control) shows every one of them, so the scan is known to see what it looks for. Then key
rotation: an onboarding started before encryption, continued under key A, finished after key B
became the newest, all on the real dev server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.encryption_keys import new_key
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import StartRequest, Status
from onboarding.service.codec import ENCRYPTED, KEY_ID, EncryptionCodec, codec_from_keys
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect
from onboarding.service.worker import build_worker
from tests.conftest import (
    ADMIN_TOKEN,
    CALLBACK_SECRET,
    ENCRYPTION_KEY,
    Standin,
    eventually,
    running_standin,
)
from tests.smile_samples import event

# where payloads are not passed through the codec (headers: only with tracing, a span context)
UNENCRYPTABLE = frozenset({"search_attributes", "header"})

# workflow.patched() markers: the SDK's core writes the patch id, never through the codec
PATCH_MARKER = "core_patch"

# what the Smile stand-in answers a request with rejected credentials: a provider's message
PROVIDER_FAILURE = "Invalid API key or secret"


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[Standin]:
    async with running_standin() as running:
        yield running


async def plain_client(env: WorkflowEnvironment) -> Client:
    """A client without the codec: it reads history as anyone with access to Temporal would."""
    return await connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        use_environment=False,
    )


async def keyed_client(env: WorkflowEnvironment, *keys: str) -> Client:
    return await connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        use_environment=False,
        codec=codec_from_keys(list(keys)),
    )


@dataclass
class Journey:
    user_id: str
    secrets: dict[str, str]  # what must not be readable, by name
    workflow_ids: list[str]


async def play_journey(client: Client, standin: Standin, data_dir: Path) -> Journey:
    """Start (externalMetadata, link token, callback token), refresh the link token, a
    provider's account error with its message (reconciled from Smile), a widget callback with
    details, and a failing Smile call (the provider's error message in a failure)."""
    marker = uuid.uuid4().hex
    settings = Settings(
        task_queue=f"encryption-{marker[:8]}",
        defaults_id=f"defaults-{marker}",  # its own: another client's is encrypted differently
        admin_tokens=[SecretStr(ADMIN_TOKEN)],
        callback_secret=SecretStr(CALLBACK_SECRET),
        data_dir=data_dir,
    )
    await standin.reset()
    smile = standin.client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    metadata = f"applicant-{marker}-jane.doe@example.com"
    key = f"idem-{marker}"
    async with build_worker(client, settings.task_queue, smile):
        app = create_app(settings, client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            started = await api.post(
                "/onboardings",
                json={"externalMetadata": {"applicant": metadata}},
                headers={**admin, "Idempotency-Key": key},
            )
            assert started.status_code == 201, started.text
            issued = started.json()
            user = issued["userId"]
            fresh = await api.post(f"/onboardings/{user}/link-token", headers=admin)
            assert fresh.status_code == 200, fresh.text
            # Smile's record of an account in error, with the provider's message: reconciled
            provider_message = f"Provider says: password expired for {marker}"
            put = await standin.control.put(
                f"/_control/accounts/acct-{marker[:12]}",
                json={"userId": user, "connectionStatus": "ERROR", "errorCode": "EXPIRED",
                      "errorMessage": provider_message},
            )  # fmt: skip
            assert put.status_code == 200, put.text
            reconciled = await api.post(f"/onboardings/{user}/reconcile", headers=admin)
            assert reconciled.status_code == 200, reconciled.text
            # the widget's callback, with its details
            widget_detail = f"WIDGET_{marker[:16].upper()}"
            callback = await api.post(
                f"/onboardings/{user}/callbacks",
                json={
                    "callback": "onAccountError",
                    "data": {"accountId": f"w-{marker[:20]}", "errorCode": widget_detail},
                },
                headers={"Authorization": f"Bearer {issued['callbackToken']}"},
            )
            assert callback.status_code == 202, callback.text
            # a failing call to Smile: the provider's message ends up in a failure
            await standin.faults(rejectCredentials=True, onlyPath="/v1/tokens")
            refused = await api.post(f"/onboardings/{user}/link-token", headers=admin)
            assert refused.status_code >= 400, refused.text
            await standin.reset()

            async def applied() -> None:
                response = await api.get(f"/onboardings/{user}", headers=admin)
                assert widget_detail in response.text  # the codec-bearing client reads it
                assert metadata in response.text

            await eventually(applied)
            ended = await api.post(f"/onboardings/{user}/cancel", headers=admin)
            assert ended.status_code == 200, ended.text
    await smile.aclose()
    return Journey(
        user_id=user,
        secrets={
            "externalMetadata": metadata,
            "first link token": issued["linkToken"],
            "refreshed link token": fresh.json()["linkToken"],
            "callback token": issued["callbackToken"],
            "provider's error message": provider_message,
            "widget callback detail": widget_detail,
            "failure message": PROVIDER_FAILURE,
        },
        workflow_ids=[workflow_id_for(user), f"create-smile-user-{key}"],
    )


async def raw_histories(client: Client, workflow_ids: list[str]) -> list[History]:
    histories = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        histories.append(History(events=history.events))
    return histories


def readable(histories: list[History], secrets: dict[str, str]) -> set[str]:
    """The names of the values found in the histories' serialized protobuf (payload bytes as
    they are) or their JSON form (failure messages, and anything else stored as text)."""
    blob = b"".join(h.SerializeToString() for h in histories)
    from google.protobuf import json_format

    text = "".join(json_format.MessageToJson(h) for h in histories)
    return {name for name, value in secrets.items() if value.encode() in blob or value in text}


def payloads_in(message: object, skip: frozenset[str] = frozenset()) -> list[Payload]:
    """Every Payload anywhere in a protobuf message, but under fields named in ``skip``."""
    from google.protobuf.message import Message

    found: list[Payload] = []

    def walk(node: Message) -> None:
        if isinstance(node, Payload):
            found.append(node)
            return
        for field, value in node.ListFields():
            if field.message_type is None or field.name in skip:
                continue
            if isinstance(value, Message):
                walk(value)
                continue
            items = value.values() if hasattr(value, "values") else value  # a map, a list
            for item in items:
                if isinstance(item, Message):
                    walk(item)

    assert isinstance(message, Message)
    walk(message)
    return found


async def test_no_personal_or_secret_value_is_readable_in_raw_history(
    dev_env: WorkflowEnvironment, standin: Standin, tmp_path: Path
) -> None:
    # dev_env's client carries the codec (tests/conftest.py builds it as connect() does)
    assert isinstance(dev_env.client.data_converter.payload_codec, EncryptionCodec)
    journey = await play_journey(dev_env.client, standin, tmp_path / "encrypted")
    plain = await plain_client(dev_env)
    histories = await raw_histories(plain, journey.workflow_ids)
    assert readable(histories, journey.secrets) == set()
    # every payload of both workflows is encrypted, under the tests' key
    # (search attributes cannot be encrypted: Temporal indexes them; they hold stage, status
    # and a time, see docs/encryption.md)
    payloads = [
        p
        for h in histories
        for e in h.events
        if e.marker_recorded_event_attributes.marker_name != PATCH_MARKER
        for p in payloads_in(e, skip=UNENCRYPTABLE)
    ]
    assert len(payloads) > 20
    unencrypted = [p for p in payloads if p.metadata.get("encoding") != ENCRYPTED]
    assert unencrypted == []
    attributes = [p for h in histories for p in payloads_in(h)
                  if p.metadata.get("encoding") != ENCRYPTED]  # fmt: skip
    patches = [
        p
        for h in histories
        for e in h.events
        if e.marker_recorded_event_attributes.marker_name == PATCH_MARKER
        for p in payloads_in(e)
    ]
    assert {p.metadata.get("type") for p in attributes if p not in patches} <= {
        b"Keyword",
        b"Datetime",
        b"KeywordList",  # TemporalChangeVersion: the patch ids
    }
    assert {p.metadata[KEY_ID] for p in payloads} == {ENCRYPTION_KEY.split(":")[0].encode()}
    # what stays readable: ids, names, the search attributes (no personal data beyond the id)
    assert journey.user_id.encode() in histories[0].SerializeToString()


async def test_the_same_journey_without_the_codec_shows_them_all(
    dev_env: WorkflowEnvironment, standin: Standin, tmp_path: Path
) -> None:
    """The control: without encryption, the scan finds every value, so the test above would
    fail if the codec were not applied."""
    plain = await plain_client(dev_env)
    journey = await play_journey(plain, standin, tmp_path / "plain")
    histories = await raw_histories(plain, journey.workflow_ids)
    # all of them, but the callback token: it is issued by the API and never sent to Temporal
    assert readable(histories, journey.secrets) == set(journey.secrets) - {"callback token"}


# --- rotation ------------------------------------------------------------------------------


async def test_an_onboarding_survives_turning_encryption_on_and_rotating_the_key(
    dev_env: WorkflowEnvironment, standin: Standin
) -> None:
    key_a, key_b = new_key("key-a"), new_key("key-b")
    settings = Settings(
        task_queue=f"rotation-{uuid.uuid4().hex[:8]}",
        callback_secret=SecretStr(CALLBACK_SECRET),
        defaults_id=f"defaults-{uuid.uuid4().hex}",
    )
    smile = standin.client()
    await standin.reset()
    # before encryption: started and run by a plain worker
    plain = await plain_client(dev_env)
    async with build_worker(plain, settings.task_queue, smile):
        issued, _ = await Onboardings(plain, settings).start(
            StartRequest(external_metadata={"era": "plain"})
        )
    user = issued.user_id
    # encryption turned on with key A: the running onboarding goes on
    client_a = await keyed_client(dev_env, key_a)
    ops_a = Onboardings(client_a, settings)
    async with build_worker(client_a, settings.task_queue, smile):
        await ops_a.ingest(user, [event("ACCOUNT_CREATED", accountId="a-1", at=1)])

        async def created_under_a() -> None:
            assert (await ops_a.get(user)).stage.value == "account_created"

        await eventually(created_under_a)
        await ops_a.link_token(user)
    # key B becomes the newest ("B,A"): new worker and client, the same onboarding
    client_b = await keyed_client(dev_env, key_b, key_a)
    ops_b = Onboardings(client_b, settings)
    async with build_worker(client_b, settings.task_queue, smile):
        await ops_b.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=2)])

        async def connected_under_b() -> None:
            view = await ops_b.get(user)
            assert view.stage.value == "connected"
            assert view.external_metadata == {"era": "plain"}  # written before encryption

        await eventually(connected_under_b)
        view = await ops_b.cancel(user, "rotation done")
        assert view.status is Status.CANCELLED
        handle = client_b.get_workflow_handle(workflow_id_for(user))
        await handle.result()  # the whole history decodes under "B,A"
    await smile.aclose()
    raw = (
        await (await plain_client(dev_env))
        .get_workflow_handle(workflow_id_for(user))
        .fetch_history()
    )
    key_ids = {
        p.metadata[KEY_ID].decode() if p.metadata.get("encoding") == ENCRYPTED else "plain"
        for p in payloads_in(History(events=raw.events))
    }
    assert key_ids == {"plain", "key-a", "key-b"}
    # without key A, the history written under it cannot be read: a clear error naming the id
    only_b = codec_from_keys([key_b])
    under_a = next(
        p for p in payloads_in(History(events=raw.events)) if p.metadata.get(KEY_ID) == b"key-a"
    )
    with pytest.raises(ValueError, match="key id 'key-a'"):
        await only_b.decode([under_a])
