"""The spool and the dead-letter through the real FastAPI app: Temporal away (a closed port,
or a hung server that accepts connections and never answers), the spool full or broken, a
restart with events waiting, and operators working the dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.breaker import BreakerState
from onboarding.service.settings import Settings
from onboarding.service.spool import open_spool
from onboarding.service.spool.sqlite import SqliteSpool
from onboarding.service.temporal import connect
from onboarding.tooling.pgcluster import PostgresCluster
from onboarding.tooling.serving import serving
from tests.api.test_webhooks import URL, signed
from tests.conftest import ADMIN_TOKEN, eventually, free_port, unique_user, workflow_exists
from tests.smile_samples import BASE_TIME, webhook_body

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INGEST_TIMEOUT = 3.0


async def unreachable() -> Client:
    return await connect(f"127.0.0.1:{free_port()}", lazy=True, use_environment=False)


@contextlib.asynccontextmanager
async def hung_temporal() -> AsyncIterator[str]:
    """Accepts connections, reads what it is sent, never answers: a frozen server."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


def app_client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(URL, content=body, headers=signed(body))


async def test_a_hung_temporal_falls_back_to_the_spool_and_the_breaker_opens(
    api_settings: Settings, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(
        update={
            "data_dir": tmp_path,
            "ingest_timeout": timedelta(seconds=INGEST_TIMEOUT),
            "breaker_cooldown": timedelta(hours=1),
        }
    )
    async with hung_temporal() as address:
        client = await connect(address, lazy=True, use_environment=False)
        app = create_app(settings, client)
        async with app_client(app) as api:
            bodies = [webhook_body("ACCOUNT_CREATED", unique_user()) for _ in range(6)]
            for body in bodies[:3]:
                response = await post(api, body)
                assert response.status_code == 202, response.text
                assert response.json()["outcome"] == "spooled"
            # Three time-outs in a row: the slow path is no longer tried, so the next ones
            # do not wait out the time-out (a bound far above the spool's few milliseconds).
            assert app.state.gate.state is BreakerState.OPEN
            started = time.monotonic()
            answers = await asyncio.gather(*(post(api, body) for body in bodies[3:]))
            assert time.monotonic() - started < INGEST_TIMEOUT
            assert [a.json()["outcome"] for a in answers] == ["spooled"] * 3
            assert app.state.gate.state is BreakerState.OPEN
            ready = (await api.get("/readyz")).json()
            assert (ready["temporal"], ready["breaker"], ready["spool"]["depth"]) == (
                "unreachable",
                "open",
                6,
            )


async def test_neither_temporal_nor_a_writable_spool_is_503_and_not_ready(
    api_settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the spool's directory cannot be made under a file")
    spool = SqliteSpool(blocker / "spool.sqlite3", max_bytes=1 << 20)
    app = create_app(api_settings, await unreachable(), spool=spool)
    async with app_client(app) as api:
        response = await post(api, webhook_body("USER_CREATED", unique_user()))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert "spool" in response.json()["detail"]
        ready = await api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["spool"]["writable"] is False


async def test_a_full_spool_refuses_with_503_rather_than_fill_the_disk(
    api_settings: Settings, tmp_path: Path
) -> None:
    spool = open_spool(str(tmp_path / "spool.sqlite3"), max_bytes=1024)
    app = create_app(api_settings, await unreachable(), spool=spool)
    async with app_client(app) as api:
        outcomes = []
        for _ in range(10):
            response = await post(api, webhook_body("USER_CREATED", unique_user()))
            outcomes.append(response.status_code)
            if response.status_code == 503:
                assert "full" in response.json()["detail"]
                break
        assert outcomes[0] == 202 and outcomes[-1] == 503, outcomes
        ready = await api.get("/readyz")
        assert ready.status_code == 503
        spool_health = ready.json()["spool"]
        assert spool_health["depth"] == len(outcomes) - 1
        assert spool_health["bytes"] <= 1024


@pytest.fixture(params=["sqlite", "postgres"])
def spool_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'spool.sqlite3'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database(f"spool_{uuid.uuid4().hex[:12]}")


async def test_a_spool_shared_by_two_apis_is_drained_in_order_after_a_restart(
    api_settings: Settings,
    dev_env: WorkflowEnvironment,
    dev_worker: None,
    spool_url: str,
) -> None:
    """Events spooled by an API that cannot reach Temporal reach their onboardings through
    another API on the same spool, started later (a restart with a non-empty spool), oldest
    first; and what the first keeps spooling meanwhile is delivered too."""
    settings = api_settings.model_copy(update={"spool_url": SecretStr(spool_url)})
    users = [unique_user() for _ in range(4)]
    journey = ["USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED"]

    async def spool_journey(api: httpx.AsyncClient, user: str) -> None:
        for second, type_ in reversed(list(enumerate(journey))):  # arrive newest first
            body = webhook_body(type_, user, created_at=BASE_TIME + timedelta(seconds=second))
            assert (await post(api, body)).json()["outcome"] == "spooled"

    away = create_app(settings, await unreachable())
    async with app_client(away) as cut_off:
        for user in users[:3]:
            await spool_journey(cut_off, user)
        assert (await cut_off.get("/readyz")).json()["spool"]["depth"] == 9
        assert not await workflow_exists(dev_env.client, users[0])

        port = free_port()
        async with (
            serving(create_app(settings, dev_env.client), "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api,
        ):
            await spool_journey(cut_off, users[3])

            async def delivered() -> None:
                for user in users:
                    view = (await api.get(f"/onboardings/{user}", headers=ADMIN)).json()
                    assert view.get("stage") == "connected", view
                    assert view["eventsTotal"] == 3
                    if user != users[3]:  # spooled before any drainer ran: one batch
                        assert [e["type"] for e in view["events"]] == journey  # createdAt order
                ready = (await api.get("/readyz")).json()
                assert ready["spool"]["depth"] == 0 and ready["status"] == "ready"

            await eventually(delivered, timeout=30)


async def test_dead_letters_are_listed_shown_replayed_after_a_fix_and_discarded(
    api: httpx.AsyncClient, api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    broken = json.dumps({"id": "evt-broken", "type": "ACCOUNT_CREATED", "data": {"userId": user}})
    ack = (await post(api, broken.encode())).json()
    assert ack["outcome"] == "dead_lettered"
    # A body an older release refused, which the code running now can use (as after a fix).
    usable = webhook_body("ACCOUNT_CREATED", user)
    spool = open_spool(api_settings.spool_location, api_settings.spool_max_bytes)
    await spool.open()
    try:
        fixed = await spool.add_dead_letter(
            usable, "refused by an older release", "evt-x", "ACCOUNT_CREATED", datetime.now(UTC)
        )
    finally:
        await spool.close()

    listed = (await api.get("/dead-letters", params={"pageSize": 500}, headers=ADMIN)).json()
    ids = [item["id"] for item in listed["items"]]
    assert ack["deadLetterId"] in ids and fixed.id in ids
    assert "body" not in listed["items"][0]  # the list never shows bodies

    still = await api.post(f"/dead-letters/{ack['deadLetterId']}/replay", headers=ADMIN)
    assert still.status_code == 422, still.text
    assert "createdAt" in still.json()["detail"]
    kept = (await api.get(f"/dead-letters/{ack['deadLetterId']}", headers=ADMIN)).json()
    assert kept["replays"] == 1 and "createdAt" in kept["lastError"]

    replayed = await api.post(f"/dead-letters/{fixed.id}/replay", headers=ADMIN)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["outcome"] == "signalled" and replayed.json()["userId"] == user
    assert (await api.get(f"/dead-letters/{fixed.id}", headers=ADMIN)).status_code == 404
    assert await workflow_exists(dev_env.client, user)

    gone = await api.delete(f"/dead-letters/{ack['deadLetterId']}", headers=ADMIN)
    assert gone.status_code == 204
    again = await api.delete(f"/dead-letters/{ack['deadLetterId']}", headers=ADMIN)
    assert again.status_code == 404


@pytest.mark.parametrize("path", ["/dead-letters", "/dead-letters/x", "/dead-letters/x/replay"])
async def test_dead_letters_need_the_operator_token(api: httpx.AsyncClient, path: str) -> None:
    method = api.post if path.endswith("replay") else api.get
    assert (await method(path)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await method(path, headers=wrong)).status_code == 401


async def test_unsigned_bodies_are_401_and_never_kept(
    api_settings: Settings, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(update={"data_dir": tmp_path})
    app = create_app(settings, await unreachable())
    async with app_client(app) as api:
        body = b'{"id": "evt", "type": "X"}'
        for headers in ({}, {"Smile-Signature": "0" * 128}):
            assert (await api.post(URL, content=body, headers=headers)).status_code == 401
        good = webhook_body("USER_CREATED", unique_user())
        forged = await api.post(URL, content=good, headers={"Smile-Signature": "ab" * 64})
        assert forged.status_code == 401
        spool = (await api.get("/readyz")).json()["spool"]
        assert (spool["depth"], spool["deadLetters"]) == (0, 0)


async def test_an_event_temporal_refuses_is_kept_as_a_dead_letter(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    """Over Temporal's payload limit after compaction (thousands of fields): sending it again
    would fail again, so it is kept for an operator instead of retried forever."""
    user = unique_user()
    body = webhook_body("IDENTITY_ADDED", user, **{f"field{i}": "z" * 500 for i in range(6000)})
    response = await post(api, body)
    assert response.status_code == 202, response.text
    ack = response.json()
    assert ack["outcome"] == "dead_lettered" and "refused" in ack["detail"]
    kept = (await api.get(f"/dead-letters/{ack['deadLetterId']}", headers=ADMIN)).json()
    assert kept["type"] == "IDENTITY_ADDED" and kept["size"] == len(body)
    assert not await workflow_exists(dev_env.client, user)


async def test_dead_letter_pages_continue_after_a_discard_and_refuse_forged_tokens(
    api_settings: Settings, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(update={"data_dir": tmp_path})
    app = create_app(settings, await unreachable())
    async with app_client(app) as api:
        ids = []
        for n in range(5):
            ack = (await post(api, f'{{"n": {n}}}'.encode())).json()
            ids.append(ack["deadLetterId"])
        first = (await api.get("/dead-letters", params={"pageSize": 2}, headers=ADMIN)).json()
        assert [item["id"] for item in first["items"]] == ids[:2]
        assert (await api.delete(f"/dead-letters/{ids[1]}", headers=ADMIN)).status_code == 204
        token = first["nextPageToken"]
        second = await api.get(
            "/dead-letters", params={"pageSize": 2, "pageToken": token}, headers=ADMIN
        )
        assert [item["id"] for item in second.json()["items"]] == ids[2:4]
        for forged in ("!!", "YWJj", "%%%", token[:-2], token + "AA"):
            answer = await api.get("/dead-letters", params={"pageToken": forged}, headers=ADMIN)
            assert answer.status_code == 400, (forged, answer.text)
