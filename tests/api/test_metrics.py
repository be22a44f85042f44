"""``GET /metrics`` through the real FastAPI app: every webhook and callback counted by type and
outcome, signature failures by door, latency by route template, the spool and the open
onboardings read at scrape time (kept a few seconds, one read at a time), and nothing personal in
any of it. Counts are checked as exact deltas between two scrapes of the same app; apps are made
``fresh`` (their scrape-time figures read on every scrape) except where the keeping is tested."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.types import Message
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.deps import get_ingest
from api.metrics import OPEN_STATUSES, SCRAPE_TTL, ApiMetrics
from onboarding.core import callback_tokens
from onboarding.core.models import Event
from onboarding.service.onboardings import EventRefused
from onboarding.service.settings import Settings
from onboarding.service.spool import SpoolStats
from onboarding.service.spool.sqlite import SqliteSpool
from onboarding.service.spooling import Spooler, TemporalGate
from tests.api.test_spool import app_client, unreachable
from tests.api.test_webhooks import URL, signed
from tests.conftest import CALLBACK_SECRET, WEBHOOK_SECRET, eventually, unique_user
from tests.smile_samples import webhook_body

Sample = tuple[str, frozenset[tuple[str, str]]]
COUNT = "onboarding_http_request_duration_seconds_count"


def fresh(app: FastAPI) -> FastAPI:
    """``app`` with its scrape-time figures read on every scrape (kept for no time)."""
    app.state.metrics.figures.ttl = 0
    return app


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app against the real dev server and worker, made ``fresh``."""
    async with app_client(fresh(create_app(api_settings, dev_env.client))) as client:
        yield client


class Scrape:
    """One scrape, its samples by name and labels."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        self.text = response.text
        self.content_type = response.headers["content-type"]
        self.samples: dict[Sample, float] = {}
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str) -> bool:
        return any(sample_name == name for sample_name, _ in self.samples)

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)

    def deltas(self, before: Scrape, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every series of ``name`` that moved, by its labels."""
        moved = {}
        for (sample_name, labels), value in self.samples.items():
            if sample_name == name and value != before.samples.get((name, labels), 0.0):
                moved[labels] = value - before.samples.get((name, labels), 0.0)
        return moved


async def scrape(api: httpx.AsyncClient) -> Scrape:
    return Scrape(await api.get("/metrics"))


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def callback_auth(user: str, ttl: timedelta = timedelta(hours=1)) -> dict[str, str]:
    token, _ = callback_tokens.issue(user, SecretStr(CALLBACK_SECRET), ttl, datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


def envelope(event_type: str, user: str | None) -> bytes:
    body = json.loads(webhook_body(event_type, user or "tenantId-x"))
    if user is None:
        del body["data"]["userId"]
    return json.dumps(body).encode()


async def test_metrics_are_served_unauthenticated_in_prometheus_text_outside_the_api_docs(
    api: httpx.AsyncClient,
) -> None:
    first = await scrape(api)  # no Authorization header
    assert first.content_type.startswith("text/plain; version=0.0.4")
    assert first.has("onboarding_spool_up")
    assert "/metrics" not in (await api.get("/openapi.json")).json()["paths"]
    openmetrics = await api.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_each_webhook_is_counted_by_type_and_outcome(
    api: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = unique_user()
    before = await scrape(api)

    good = webhook_body("ACCOUNT_CONNECTED", user)
    for _ in range(2):  # the second is a duplicate: only the workflow can tell (worker metrics)
        response = await api.post(URL, content=good, headers=signed(good))
        assert response.json()["outcome"] == "signalled"
    new_type = webhook_body("A_TYPE_SMILE_ADDS_LATER", user)
    assert (await api.post(URL, content=new_type, headers=signed(new_type))).status_code == 202
    no_user = envelope("USER_CREATED", None)
    response = await api.post(URL, content=no_user, headers=signed(no_user))
    assert response.json()["outcome"] == "no_user"
    unusable = b"{not json"
    response = await api.post(URL, content=unusable, headers=signed(unusable))
    assert response.json()["outcome"] == "dead_lettered"
    forged = webhook_body("ACCOUNT_CREATED", user)
    response = await api.post(URL, content=forged, headers=signed(forged, "not the secret"))
    assert response.status_code == 401
    response = await api.post(URL, content=forged, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert (await api.get(f"/onboardings/{user}", headers=admin)).status_code in (200, 404)

    after = await scrape(api)
    assert after.deltas(before, "onboarding_webhooks_total") == {
        labels(type="ACCOUNT_CONNECTED", outcome="signalled"): 2,
        labels(type="other", outcome="signalled"): 1,
        labels(type="USER_CREATED", outcome="no_user"): 1,
        labels(type="none", outcome="dead_lettered"): 1,
        labels(type="none", outcome="refused_signature"): 2,
    }
    assert after.deltas(before, "onboarding_signature_failures_total") == {
        labels(door="webhooks", reason="invalid"): 1,
        labels(door="webhooks", reason="missing"): 1,
    }
    assert after.delta(before, "onboarding_spool_dead_letters") == 1
    assert after.value("onboarding_spool_up") == 1
    # Latency by route template and status; the operator's read is under its template.
    count = "onboarding_http_request_duration_seconds_count"
    webhook_route = {"route": "/webhooks/smile", "method": "POST"}
    assert after.delta(before, count, **webhook_route, status="202") == 5
    assert after.delta(before, count, **webhook_route, status="401") == 2
    assert (
        sum(
            after.delta(before, count, route="/onboardings/{user_id}", method="GET", status=s)
            for s in ("200", "404")
        )
        == 1
    )
    assert (
        after.value(
            "onboarding_http_request_duration_seconds_bucket",
            **webhook_route,
            status="202",
            le="+Inf",
        )
        >= 5
    )
    # Nothing personal, nothing a sender chose: no user id, no unknown type, no secret.
    for text in (user, "A_TYPE_SMILE_ADDS_LATER", WEBHOOK_SECRET, "tenantId-"):
        assert text not in after.text


async def test_open_onboardings_are_counted_by_status_at_scrape_time(
    api: httpx.AsyncClient,
) -> None:
    user = unique_user()
    body = webhook_body("ACCOUNT_CREATED", user)
    assert (await api.post(URL, content=body, headers=signed(body))).status_code == 202

    async def counted() -> Scrape:
        now = await scrape(api)
        assert now.value("onboarding_onboardings", status="active") >= 1
        assert now.has("onboarding_onboardings")
        assert ("onboarding_onboardings", labels(status="stalled")) in now.samples
        return now

    now = await eventually(counted)
    assert now.value("onboarding_temporal_breaker", state="closed") == 1
    assert now.value("onboarding_temporal_breaker", state="open") == 0


async def test_each_callback_is_counted_by_callback_and_outcome(api: httpx.AsyncClient) -> None:
    user, other = unique_user(), unique_user()
    path = f"/onboardings/{user}/callbacks"
    connected = {"callback": "onAccountConnected", "data": {"accountId": "a-1"}}
    before = await scrape(api)

    response = await api.post(path, json=connected, headers=callback_auth(user))
    assert response.status_code == 202, response.text
    closed = {"callback": "onClose", "data": "exit"}
    assert (await api.post(path, json=closed, headers=callback_auth(user))).status_code == 202
    refusals = [
        (connected, {}, 401),  # no token
        (connected, {"Authorization": "Bearer forged"}, 401),
        (connected, callback_auth(user, ttl=timedelta(seconds=-1)), 401),  # expired
        (connected, callback_auth(other), 403),  # another onboarding's token
        ({"callback": "onSomethingNew"}, callback_auth(user), 400),
        ({"callback": "onAccountConnected", "data": {}}, callback_auth(user), 400),
    ]
    for body, headers, status in refusals:
        response = await api.post(path, json=body, headers=headers)
        assert response.status_code == status, response.text
    # A path that is not a user id is refused before the route's code runs.
    bad = await api.post("/onboardings/-bad/callbacks", json=connected, headers=callback_auth(user))
    assert bad.status_code == 422

    after = await scrape(api)
    assert after.deltas(before, "onboarding_callbacks_total") == {
        labels(type="onAccountConnected", outcome="signalled"): 1,
        labels(type="onClose", outcome="signalled"): 1,
        labels(type="none", outcome="refused_token"): 3,
        labels(type="none", outcome="refused_other_onboarding"): 1,
        labels(type="none", outcome="refused_invalid"): 3,
    }
    assert after.deltas(before, "onboarding_signature_failures_total") == {
        labels(door="callbacks", reason="missing"): 1,
        labels(door="callbacks", reason="invalid"): 1,
        labels(door="callbacks", reason="expired"): 1,
    }
    count = "onboarding_http_request_duration_seconds_count"
    route = {"route": "/onboardings/{user_id}/callbacks", "method": "POST"}
    assert after.delta(before, count, **route, status="202") == 2
    assert after.delta(before, count, **route, status="422") == 1
    for text in (user, other, CALLBACK_SECRET):
        assert text not in after.text


async def test_refusals_before_the_route_are_counted_too(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    settings = api_settings.model_copy(
        update={"webhook_max_bytes": 2048, "webhook_allowed_ips": ["192.0.2.1"]}
    )
    async with app_client(create_app(settings, dev_env.client)) as api:
        before = await scrape(api)
        body = webhook_body("ACCOUNT_CREATED", unique_user())
        # Not from an allowed address (the test client is 127.0.0.1).
        assert (await api.post(URL, content=body, headers=signed(body))).status_code == 403
        huge = b"{" + b" " * 4096 + b"}"
        assert (await api.post(URL, content=huge, headers=signed(huge))).status_code == 413
        assert (await api.get("/no/such/path/tenantId-abc")).status_code == 404
        after = await scrape(api)
    assert after.deltas(before, "onboarding_webhooks_total") == {
        labels(type="none", outcome="refused_ip"): 1,
        labels(type="none", outcome="refused_too_large"): 1,
    }
    count = "onboarding_http_request_duration_seconds_count"
    assert after.delta(before, count, route="/webhooks/smile", method="POST", status="413") == 1
    assert after.delta(before, count, route="unmatched", method="GET", status="404") == 1
    assert "tenantId-abc" not in after.text


async def test_spooled_events_show_in_the_spool_gauges(
    api_settings: Settings, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(update={"data_dir": tmp_path})
    async with app_client(fresh(create_app(settings, await unreachable()))) as api:
        before = await scrape(api)
        assert before.value("onboarding_spool_depth") == 0
        assert before.value("onboarding_spool_oldest_age_seconds") == 0
        assert not before.has("onboarding_onboardings")  # Temporal could not count them
        bodies = [webhook_body("ACCOUNT_CREATED", unique_user()) for _ in range(2)]
        for body in bodies:
            response = await api.post(URL, content=body, headers=signed(body))
            assert response.json()["outcome"] == "spooled"
        after = await scrape(api)
    assert after.deltas(before, "onboarding_webhooks_total") == {
        labels(type="ACCOUNT_CREATED", outcome="spooled"): 2,
    }
    assert after.value("onboarding_spool_up") == 1
    assert after.value("onboarding_spool_depth") == 2
    assert after.value("onboarding_spool_bytes") > 0
    assert after.value("onboarding_spool_oldest_age_seconds") > 0
    assert after.value("onboarding_spool_max_bytes") == settings.spool_max_bytes


async def test_when_neither_can_take_an_event_it_is_counted_as_refused_and_the_spool_down(
    api_settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the spool's directory cannot be made under a file")
    spool = SqliteSpool(blocker / "spool.sqlite3", max_bytes=1 << 20)
    app = fresh(create_app(api_settings, await unreachable(), spool=spool))
    async with app_client(app) as api:
        before = await scrape(api)
        body = webhook_body("USER_CREATED", unique_user())
        assert (await api.post(URL, content=body, headers=signed(body))).status_code == 503
        after = await scrape(api)
    assert after.deltas(before, "onboarding_webhooks_total") == {
        labels(type="USER_CREATED", outcome="refused_unavailable"): 1,
    }
    assert after.value("onboarding_spool_up") == 0
    assert not after.has("onboarding_spool_depth")


class CountingSpool(SqliteSpool):
    """A real SQLite spool that counts its ``stats`` reads."""

    stats_reads = 0

    async def stats(self) -> SpoolStats:
        self.stats_reads += 1
        return await super().stats()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_scrapes_share_one_read_of_the_spool_and_temporal_per_ttl(
    api_settings: Settings,
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spool = CountingSpool(tmp_path / "spool.sqlite3", max_bytes=1 << 20)
    app = create_app(api_settings, dev_env.client, spool=spool)  # the default time to keep
    clock = Clock()
    app.state.metrics.figures.clock = clock
    onboardings = app.state.onboardings
    counted = onboardings.count
    visibility_counts = 0

    async def count(*args: Any, **kwargs: Any) -> int:
        nonlocal visibility_counts
        visibility_counts += 1
        return int(await counted(*args, **kwargs))

    monkeypatch.setattr(onboardings, "count", count)
    async with app_client(app) as api:
        scrapes = await asyncio.gather(*(scrape(api) for _ in range(40)))  # all at once
        assert spool.stats_reads == 1
        assert visibility_counts == len(OPEN_STATUSES)
        assert {each.value("onboarding_spool_up") for each in scrapes} == {1}
        assert {each.value("onboarding_spool_depth") for each in scrapes} == {0}
        assert all(each.has("onboarding_onboardings") for each in scrapes)

        now = datetime.now(UTC)
        await spool.put(unique_user(), "e-1", now, b"{}", now=now)  # the drainer is not running
        clock.now += SCRAPE_TTL - 0.1
        kept = await scrape(api)
        assert kept.value("onboarding_spool_depth") == 0  # the figures of the first read
        assert spool.stats_reads == 1
        assert kept.value("onboarding_temporal_breaker", state="closed") == 1
        gate = app.state.gate
        for _ in range(3):  # the breaker's threshold
            gate.failed()
        tripped = await scrape(api)  # the breaker is read as it is, never kept
        assert tripped.value("onboarding_temporal_breaker", state="open") == 1
        assert spool.stats_reads == 1
        gate.succeeded()

        clock.now += 0.1  # SCRAPE_TTL after the first read came in
        renewed = await asyncio.gather(*(scrape(api) for _ in range(10)))
        assert {each.value("onboarding_spool_depth") for each in renewed} == {1}
        assert spool.stats_reads == 2
        assert visibility_counts == 2 * len(OPEN_STATUSES)
    await spool.close()


async def test_a_spool_read_still_running_is_awaited_again_rather_than_queued_twice(
    tmp_path: Path,
) -> None:
    class SlowSpool(CountingSpool):
        """Its reads wait for ``answer``: SQLite's one thread, busy with a long scan."""

        def __init__(self, path: Path) -> None:
            super().__init__(path, max_bytes=1 << 20)
            self.answer = asyncio.Event()

        async def stats(self) -> SpoolStats:
            self.stats_reads += 1
            await self.answer.wait()
            return await SqliteSpool.stats(self)

    spool = SlowSpool(tmp_path / "spool.sqlite3")
    metrics = ApiMetrics(Spooler(spool), TemporalGate(cooldown=30), within=0.05, ttl=0)

    def spool_up() -> float | None:
        return metrics.registry.get_sample_value("onboarding_spool_up")

    for _ in range(3):  # each refresh gives up after `within`; the read goes on
        await metrics.refresh(None)
        assert spool_up() == 0
    assert spool.stats_reads == 1
    spool.answer.set()
    await metrics.refresh(None)  # the same read's answer
    assert spool_up() == 1 and spool.stats_reads == 1
    await metrics.refresh(None)  # done: the next refresh reads again
    assert spool.stats_reads == 2
    await spool.close()


async def test_a_client_gone_before_any_answer_is_recorded_as_disconnected(
    api_settings: Settings,
) -> None:
    app = fresh(create_app(api_settings, await unreachable()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("t", 80),
    }
    # Half a body, then the client is gone.
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"type": "ACCOUNT_', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async with app_client(app) as api:
        before = await scrape(api)
        await app(scope, receive, send)
        after = await scrape(api)
    assert sent == []  # nothing was answered
    route = {"route": URL, "method": "POST"}
    assert after.delta(before, COUNT, **route, status="disconnected") == 1
    assert after.delta(before, COUNT, **route, status="500") == 0
    assert after.deltas(before, "onboarding_webhooks_total") == {}


async def test_callbacks_refused_for_want_of_a_secret_or_by_temporal_have_their_own_outcome(
    api_settings: Settings,
) -> None:
    user = unique_user()
    path = f"/onboardings/{user}/callbacks"
    connected = {"callback": "onAccountConnected", "data": {"accountId": "a-1"}}

    unconfigured = api_settings.model_copy(update={"callback_secret": None})
    async with app_client(create_app(unconfigured, await unreachable())) as api:
        before = await scrape(api)
        response = await api.post(path, json=connected, headers=callback_auth(user))
        assert response.status_code == 503, response.text
        after = await scrape(api)
    assert after.deltas(before, "onboarding_callbacks_total") == {
        labels(type="none", outcome="refused_not_configured"): 1,
    }

    async def refusing(user_id: str, event: Event) -> None:
        raise EventRefused("Temporal refused the event as an invalid argument")

    async def refusing_ingest() -> Any:
        return refusing

    app = create_app(api_settings, await unreachable())
    app.dependency_overrides[get_ingest] = refusing_ingest
    async with app_client(app) as api:
        before = await scrape(api)
        response = await api.post(path, json=connected, headers=callback_auth(user))
        assert response.status_code == 422, response.text
        after = await scrape(api)
    # Counted once, by the route, with its type (not again by the middleware as type "none").
    assert after.deltas(before, "onboarding_callbacks_total") == {
        labels(type="onAccountConnected", outcome="refused_invalid"): 1,
    }
    count = after.delta(before, COUNT, route="/onboardings/{user_id}/callbacks", method="POST",
                        status="422")  # fmt: skip
    assert count == 1
