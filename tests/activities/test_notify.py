"""The notice delivery activity against a real local receiver over HTTP that verifies every
request with ``standardwebhooks``: classification of answers (ActivityEnvironment), and retries,
Retry-After and the endpoints settled by earlier attempts (real Temporal servers)."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.notify import (
    NOTICE_ENDPOINT_UNAVAILABLE,
    NOTICE_MAX_RETRY_INTERVAL,
    NOTICES_NOT_CONFIGURED,
    NoticeSender,
    NotifyConfig,
    OutgoingNotice,
)
from onboarding.core.models import CamelModel, DeliveryReport, EndpointOutcome, NoticeType
from onboarding.service.settings import Settings, new_notify_secret
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from tests.conftest import start_time_skipping
from workflows.policies import DELIVER_NOTICE

SECRET = new_notify_secret()
OLD_SECRET = new_notify_secret()
NEW_SECRET = new_notify_secret()
TOKEN = "tok-" + uuid.uuid4().hex  # a URL's token: must never show
RESPONSE_BODY = "receiver-said-" + uuid.uuid4().hex  # an answer's body: must never show
TIMEOUT = timedelta(seconds=2)


# --- the receiver -----------------------------------------------------------------------------


@dataclasses.dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified_by: list[str]  # the secrets (of the endpoint's) whose verify() passed


@dataclasses.dataclass
class Endpoint:
    secrets: tuple[str, ...]
    script: list[tuple[int, dict[str, str]]]  # answers to give, in order; then 200
    hang: bool = False
    received: list[Received] = dataclasses.field(default_factory=list)


class Receiver:
    """A customer's backend: endpoints under ``/hooks/{name}`` with scripted answers."""

    def __init__(self) -> None:
        self.base = ""
        self.endpoints: dict[str, Endpoint] = {}
        self.release = anyio.Event()  # lets hanging handlers end at teardown
        self.app = Starlette(routes=[Route("/hooks/{name}", self._hook, methods=["POST"])])

    def add(
        self, *script: int | tuple[int, dict[str, str]], secrets: tuple[str, ...] = (SECRET,),
        hang: bool = False,
    ) -> tuple[str, Endpoint]:  # fmt: skip
        """A new endpoint: its URL (carrying a token) and its record."""
        name = uuid.uuid4().hex
        answers = [s if isinstance(s, tuple) else (s, {}) for s in script]
        self.endpoints[name] = Endpoint(secrets=secrets, script=answers, hang=hang)
        return f"{self.base}/hooks/{name}?token={TOKEN}", self.endpoints[name]

    async def _hook(self, request: Request) -> Response:
        endpoint = self.endpoints[request.path_params["name"]]
        body = await request.body()
        headers = dict(request.headers)
        verified_by = []
        for secret in endpoint.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified_by.append(secret)
        endpoint.received.append(Received(headers, body, verified_by))
        if endpoint.hang:
            await self.release.wait()
        status, extra = endpoint.script.pop(0) if endpoint.script else (200, {})
        return Response(RESPONSE_BODY, status_code=status, headers=extra)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    port = free_port()
    receiver.base = f"http://127.0.0.1:{port}"
    async with serving(receiver.app, "127.0.0.1", port):
        yield receiver
        receiver.release.set()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hooks/nobody?token={TOKEN}"


def config(*urls: str, secrets: tuple[str, ...] = (SECRET,)) -> NotifyConfig:
    return NotifyConfig(urls=urls, secrets=secrets, timeout=TIMEOUT)


def a_notice() -> OutgoingNotice:
    return OutgoingNotice(
        id=f"ntc_{uuid.uuid4().hex}",
        user_id="tenantId-notify",
        sequence=3,
        type=NoticeType.STALLED,
        body={
            "type": "onboarding.stalled",
            "timestamp": "2025-01-02T03:04:05Z",
            "data": {"userId": "tenantId-notify", "sequence": 3, "stage": "connected",
                     "reason": "café ☕"},
        },
    )  # fmt: skip


@pytest.fixture
async def make_sender() -> AsyncIterator[Any]:
    made: list[NoticeSender] = []

    def make(cfg: NotifyConfig | None) -> NoticeSender:
        made.append(NoticeSender(cfg))
        return made[-1]

    yield make
    for sender in made:
        await sender.aclose()


class Heartbeats:
    def __init__(self, env: ActivityEnvironment) -> None:
        self.seen: list[tuple[Any, ...]] = []
        env.on_heartbeat = lambda *details: self.seen.append(details)


async def run(
    sender: NoticeSender, notice: OutgoingNotice, *, attempt: int = 1,
    details: tuple[Any, ...] = (),
) -> tuple[DeliveryReport | ApplicationError, Heartbeats]:  # fmt: skip
    """One attempt, directly: the report, or the ApplicationError it raised."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_details=details)
    heartbeats = Heartbeats(env)
    try:
        return await env.run(sender.deliver, notice), heartbeats
    except ApplicationError as err:
        return err, heartbeats


# --- one attempt, directly ----------------------------------------------------------------------


async def test_a_2xx_is_delivered_signed_as_standard_webhooks(
    receiver: Receiver, make_sender: Any
) -> None:
    url, endpoint = receiver.add(204)
    notice = a_notice()
    before = int(time.time())
    report, heartbeats = await run(make_sender(config(url)), notice)
    assert report == DeliveryReport(
        attempts=1, endpoints=[EndpointOutcome(endpoint=1, delivered=True, status=204)]
    )
    assert heartbeats.seen == []
    [got] = endpoint.received
    assert got.verified_by == [SECRET]
    assert got.body == json.dumps(notice.body, separators=(",", ":")).encode()
    assert json.loads(got.body) == notice.body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == notice.id
    assert before <= int(got.headers["webhook-timestamp"]) <= int(time.time())
    assert got.headers["webhook-signature"].startswith("v1,")
    assert " " not in got.headers["webhook-signature"]


async def test_two_secrets_both_sign_so_either_receiver_verifies(
    receiver: Receiver, make_sender: Any
) -> None:
    old_url, old_only = receiver.add(secrets=(OLD_SECRET,))
    new_url, new_only = receiver.add(secrets=(NEW_SECRET,))
    other_url, other = receiver.add(secrets=(SECRET,))
    sender = make_sender(config(old_url, new_url, other_url, secrets=(OLD_SECRET, NEW_SECRET)))
    report, _ = await run(sender, a_notice())
    assert isinstance(report, DeliveryReport)
    assert [e.delivered for e in report.endpoints] == [True, True, True]  # other says 200 too
    assert old_only.received[0].verified_by == [OLD_SECRET]
    assert new_only.received[0].verified_by == [NEW_SECRET]
    assert other.received[0].verified_by == []  # a third secret verifies nothing
    signatures = old_only.received[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "HTTP 400 Bad Request"),
        (401, "HTTP 401 Unauthorized"),
        (403, "HTTP 403 Forbidden"),
        (404, "HTTP 404 Not Found"),
        (410, "HTTP 410 Gone"),
        (413, "HTTP 413 Request Entity Too Large"),
        (422, "HTTP 422 Unprocessable Entity"),
        (301, "HTTP 301 Moved Permanently"),
        (307, "HTTP 307 Temporary Redirect"),
    ],
)
async def test_other_answers_are_refused_for_good(
    receiver: Receiver, make_sender: Any, status: int, error: str
) -> None:
    target_url, target = receiver.add()
    url, endpoint = receiver.add((status, {"location": target_url}))
    report, heartbeats = await run(make_sender(config(url)), a_notice())
    assert report == DeliveryReport(
        attempts=1,
        endpoints=[EndpointOutcome(endpoint=1, delivered=False, status=status, error=error)],
    )
    assert len(endpoint.received) == 1
    assert target.received == []  # redirects are not followed
    assert heartbeats.seen == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, "HTTP 408 Request Timeout"),
        (429, "HTTP 429 Too Many Requests"),
        (500, "HTTP 500 Internal Server Error"),
        (502, "HTTP 502 Bad Gateway"),
        (503, "HTTP 503 Service Unavailable"),
        (504, "HTTP 504 Gateway Timeout"),
        (599, "HTTP 599"),
    ],
)
async def test_transient_answers_are_retried(
    receiver: Receiver, make_sender: Any, status: int, error: str
) -> None:
    url, _ = receiver.add(status)
    err, _ = await run(make_sender(config(url)), a_notice())
    assert isinstance(err, ApplicationError)
    assert err.type == NOTICE_ENDPOINT_UNAVAILABLE
    assert not err.non_retryable
    assert err.next_retry_delay is None
    outcome = EndpointOutcome(endpoint=1, delivered=False, status=status, error=error)
    assert err.details == (
        {"endpoints": [outcome.model_dump(by_alias=True)], "pending": [1], "attempt": 1},
    )
    assert error in str(err)


async def test_nothing_listening_is_transient(make_sender: Any) -> None:
    err, _ = await run(make_sender(config(dead_url())), a_notice())
    assert isinstance(err, ApplicationError)
    assert err.type == NOTICE_ENDPOINT_UNAVAILABLE and not err.non_retryable
    [outcome] = err.details[0]["endpoints"]
    assert outcome == {"endpoint": 1, "delivered": False, "status": None, "error": "ConnectError"}


async def test_no_answer_in_time_is_transient(receiver: Receiver) -> None:
    url, endpoint = receiver.add(hang=True)
    sender = NoticeSender(NotifyConfig(urls=(url,), secrets=(SECRET,),
                                       timeout=timedelta(milliseconds=300)))  # fmt: skip
    try:
        err, _ = await run(sender, a_notice())
    finally:
        await sender.aclose()
    assert isinstance(err, ApplicationError) and not err.non_retryable
    assert err.details[0]["endpoints"][0]["error"] == "ReadTimeout"
    assert len(endpoint.received) == 1


def http_date(after: timedelta) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + after, usegmt=True)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([(429, {"retry-after": "120"})], timedelta(seconds=120)),
        ([(503, {"retry-after": "45"})], timedelta(seconds=45)),
        ([(429, {"retry-after": "99999999999999999999"})], NOTICE_MAX_RETRY_INTERVAL),
        ([(429, {})], None),
        ([(429, {"retry-after": "0"})], None),
        ([(429, {"retry-after": "soon"})], None),
        ([(500, {"retry-after": "120"})], None),  # only 429 and 503 are heeded
        ([(429, {"retry-after": "30"}), (503, {"retry-after": "90"}), (502, {})],
         timedelta(seconds=90)),  # the largest wait of all endpoints
    ],
)  # fmt: skip
async def test_retry_after_sets_the_next_retry_delay(
    receiver: Receiver, make_sender: Any,
    answers: list[tuple[int, dict[str, str]]], expected: timedelta | None,
) -> None:  # fmt: skip
    urls = [receiver.add(answer)[0] for answer in answers]
    err, _ = await run(make_sender(config(*urls)), a_notice())
    assert isinstance(err, ApplicationError) and err.type == NOTICE_ENDPOINT_UNAVAILABLE
    assert err.next_retry_delay == expected


async def test_retry_after_as_an_http_date(receiver: Receiver, make_sender: Any) -> None:
    urls = [
        receiver.add((429, {"retry-after": http_date(timedelta(minutes=10))}))[0],
        receiver.add((503, {"retry-after": http_date(timedelta(days=2))}))[0],
    ]
    err, _ = await run(make_sender(config(*urls[:1])), a_notice())
    assert isinstance(err, ApplicationError) and err.next_retry_delay is not None
    assert timedelta(minutes=9) < err.next_retry_delay <= timedelta(minutes=10)
    err, _ = await run(make_sender(config(*urls[1:])), a_notice())
    assert isinstance(err, ApplicationError)
    assert err.next_retry_delay == NOTICE_MAX_RETRY_INTERVAL
    past = receiver.add((429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 -0000"}))[0]
    err, _ = await run(make_sender(config(past)), a_notice())
    assert isinstance(err, ApplicationError) and err.next_retry_delay is None


async def test_settled_endpoints_are_heartbeaten_and_skipped_next_time(
    receiver: Receiver, make_sender: Any
) -> None:
    ok_url, ok = receiver.add(200)
    gone_url, gone = receiver.add(410)
    sick_url, sick = receiver.add(503)
    sender = make_sender(config(ok_url, gone_url, sick_url))
    notice = a_notice()
    err, heartbeats = await run(sender, notice)
    assert isinstance(err, ApplicationError)
    assert err.details[0]["pending"] == [3]
    [details] = heartbeats.seen
    report, _ = await run(sender, notice, attempt=2, details=details)
    assert report == DeliveryReport(
        attempts=2,
        endpoints=[
            EndpointOutcome(endpoint=1, delivered=True, status=200),
            EndpointOutcome(endpoint=2, delivered=False, status=410, error="HTTP 410 Gone"),
            EndpointOutcome(endpoint=3, delivered=True, status=200),
        ],
    )
    assert (len(ok.received), len(gone.received), len(sick.received)) == (1, 1, 2)
    assert ok.received[0].headers["webhook-id"] == sick.received[1].headers["webhook-id"]
    # Outcomes recorded under another URL list are not trusted: everything is tried again.
    other = make_sender(config(sick_url, ok_url, gone_url))
    report, _ = await run(other, notice, attempt=3, details=details)
    assert isinstance(report, DeliveryReport) and [e.status for e in report.endpoints] == [
        200, 200, 200,
    ]  # fmt: skip
    assert (len(ok.received), len(sick.received)) == (2, 3)


async def test_without_configuration_nothing_can_be_sent(make_sender: Any) -> None:
    err, _ = await run(make_sender(None), a_notice())
    assert isinstance(err, ApplicationError)
    assert err.type == NOTICES_NOT_CONFIGURED and err.non_retryable
    assert "ONBOARDING_NOTIFY_URL" in str(err) and "ONBOARDING_NOTIFY_SECRET" in str(err)
    policy = DELIVER_NOTICE.get("retry_policy")
    assert policy is not None and policy.non_retryable_error_types == [NOTICES_NOT_CONFIGURED]


def test_config_from_settings() -> None:
    assert NotifyConfig.from_settings(Settings()) is None
    url = f"https://hooks.example.com/in?token={TOKEN}"
    settings = Settings(
        notify_urls=[SecretStr(url), SecretStr("http://b.example/x")],
        notify_secrets=[SecretStr(OLD_SECRET), SecretStr(NEW_SECRET)],
        notify_timeout=timedelta(seconds=3),
    )
    cfg = NotifyConfig.from_settings(settings)
    assert cfg == NotifyConfig(
        urls=(url, "http://b.example/x"), secrets=(OLD_SECRET, NEW_SECRET),
        timeout=timedelta(seconds=3),
    )  # fmt: skip
    assert TOKEN not in repr(cfg) and OLD_SECRET not in repr(cfg) and TOKEN not in str(cfg)
    with pytest.raises(ValueError, match="ONBOARDING_NOTIFY_SECRET") as unsigned:
        NotifyConfig.from_settings(Settings(notify_urls=[SecretStr(url)]))
    assert TOKEN not in str(unsigned.value)
    with pytest.raises(ValueError, match="number 2 cannot sign") as bad:
        NotifyConfig(urls=(url,), secrets=(SECRET, "whsec_!!not-base64!!"), timeout=TIMEOUT)
    assert "not-base64" not in str(bad.value)


async def test_no_url_body_or_secret_in_errors_or_logs(
    receiver: Receiver, make_sender: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As configure_logging holds them: httpx logs every request's URL at INFO.
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.INFO, logger="httpcore")
    ok_url, _ = receiver.add(200)
    gone_url, _ = receiver.add(410)
    sick_url, _ = receiver.add((503, {"retry-after": "5"}))
    urls = (ok_url, gone_url, sick_url, dead_url())
    sender = make_sender(config(*urls, secrets=(OLD_SECRET, NEW_SECRET)))
    err, heartbeats = await run(sender, a_notice())
    assert isinstance(err, ApplicationError)
    texts = [str(err), repr(err.details), repr(heartbeats.seen), caplog.text]
    report, _ = await run(sender, a_notice(), attempt=2, details=heartbeats.seen[0])
    texts += [repr(report), report.model_dump_json() if isinstance(report, DeliveryReport) else ""]
    assert "endpoint 4" in caplog.text and "ConnectError" in caplog.text
    assert "HTTP 410" in caplog.text
    for text in texts:
        for secret in (TOKEN, RESPONSE_BODY, OLD_SECRET, NEW_SECRET, "127.0.0.1", "/hooks/"):
            assert secret not in text
        for url in urls:
            assert url not in text


# --- retries on real Temporal servers ---------------------------------------------------------


class DeliveryJob(CamelModel):
    notice: OutgoingNotice
    fast: bool = False  # short retry intervals (for the dev server, which does not skip time)


class DeliveryResult(CamelModel):
    report: DeliveryReport | None = None
    failure_type: str | None = None
    non_retryable: bool | None = None
    failure_details: list[Any] = []
    waited: float = 0.0  # workflow time the delivery took, in seconds


@workflow.defn(sandboxed=False)
class DeliverWorkflow:
    @workflow.run
    async def run(self, job: DeliveryJob) -> DeliveryResult:
        policy = DELIVER_NOTICE.copy()
        if job.fast:
            policy["retry_policy"] = RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                non_retryable_error_types=[NOTICES_NOT_CONFIGURED],
            )
        started = workflow.now()
        try:
            report = await workflow.execute_activity_method(
                NoticeSender.deliver, job.notice, **policy
            )
        except ActivityError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError)
            return DeliveryResult(
                failure_type=cause.type,
                non_retryable=cause.non_retryable,
                failure_details=list(cause.details),
            )
        waited = (workflow.now() - started).total_seconds()
        return DeliveryResult(report=report, waited=waited)


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server: a Retry-After of an hour moves its clock."""
    async with await start_time_skipping() as env:
        yield env


async def deliver_through_temporal(
    client: Client, cfg: NotifyConfig | None, notice: OutgoingNotice, *, fast: bool = False
) -> DeliveryResult:
    """Run DeliverWorkflow on a worker of its own whose activity uses ``cfg``."""
    task_queue = f"notify-{uuid.uuid4().hex[:8]}"
    sender = NoticeSender(cfg)
    try:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[DeliverWorkflow],
            activities=[sender.deliver],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            return await client.execute_workflow(
                DeliverWorkflow.run,
                DeliveryJob(notice=notice, fast=fast),
                id=f"deliver-{uuid.uuid4().hex}",
                task_queue=task_queue,
            )
    finally:
        await sender.aclose()


@pytest.fixture(params=["time_skipping", "dev_server"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Client, bool]]:
    """Both servers: the time-skipping one runs the real policy, the dev server (the real
    Temporal server) the same with short intervals."""
    if request.param == "time_skipping":
        env: WorkflowEnvironment = request.getfixturevalue("skipping_env")
        yield env.client, False
    else:
        env = request.getfixturevalue("dev_env")
        yield env.client, True


async def test_503_then_200_is_retried_and_delivered(
    receiver: Receiver, server: tuple[Client, bool]
) -> None:
    client, fast = server
    url, endpoint = receiver.add(503)
    notice = a_notice()
    result = await deliver_through_temporal(client, config(url), notice, fast=fast)
    assert result.report == DeliveryReport(
        attempts=2, endpoints=[EndpointOutcome(endpoint=1, delivered=True, status=200)]
    )
    assert [r.headers["webhook-id"] for r in endpoint.received] == [notice.id] * 2
    assert all(r.verified_by == [SECRET] for r in endpoint.received)


async def test_one_endpoint_down_the_other_gets_the_notice_once(
    receiver: Receiver, server: tuple[Client, bool]
) -> None:
    """What the heartbeat is for: the settled endpoints survive into the next attempt, although
    each attempt fails right after heartbeating and the policy has no heartbeat_timeout."""
    client, fast = server
    assert DELIVER_NOTICE.get("heartbeat_timeout") is None
    up_url, up = receiver.add()
    down_url, down = receiver.add(503, 502)
    late_url, late = receiver.add(503)  # settles in the second attempt, heartbeaten then
    notice = a_notice()
    cfg = config(up_url, down_url, late_url)
    result = await deliver_through_temporal(client, cfg, notice, fast=fast)
    assert result.report is not None and result.report.attempts == 3
    assert result.report.delivered
    assert (len(up.received), len(down.received), len(late.received)) == (1, 3, 2)
    ids = {r.headers["webhook-id"] for e in (up, down, late) for r in e.received}
    assert ids == {notice.id}


async def test_408_is_retried(receiver: Receiver, skipping_env: WorkflowEnvironment) -> None:
    url, endpoint = receiver.add(408, 408)
    result = await deliver_through_temporal(skipping_env.client, config(url), a_notice())
    assert result.report is not None and result.report.attempts == 3
    assert [e.delivered for e in result.report.endpoints] == [True]
    assert len(endpoint.received) == 3


async def test_retry_after_is_honoured_by_the_server(
    receiver: Receiver, skipping_env: WorkflowEnvironment
) -> None:
    url, endpoint = receiver.add((429, {"retry-after": "3600"}))
    result = await deliver_through_temporal(skipping_env.client, config(url), a_notice())
    assert result.report is not None and result.report.attempts == 2
    assert len(endpoint.received) == 2
    # The policy alone would wait 5 seconds; the receiver asked for an hour.
    assert 3600 <= result.waited < 3600 + 60


@pytest.mark.parametrize("status", [410, 400])
async def test_a_refusal_is_not_retried(
    receiver: Receiver, skipping_env: WorkflowEnvironment, status: int
) -> None:
    url, endpoint = receiver.add(status)
    ok_url, ok = receiver.add()
    cfg = config(url, ok_url)
    result = await deliver_through_temporal(skipping_env.client, cfg, a_notice())
    assert result.report is not None and result.report.attempts == 1
    assert not result.report.delivered
    assert [(e.delivered, e.status) for e in result.report.endpoints] == [
        (False, status), (True, 200),
    ]  # fmt: skip
    assert (len(endpoint.received), len(ok.received)) == (1, 1)


async def test_a_worker_without_configuration_fails_at_once(
    skipping_env: WorkflowEnvironment,
) -> None:
    result = await deliver_through_temporal(skipping_env.client, None, a_notice())
    assert result.report is None
    assert result.failure_type == NOTICES_NOT_CONFIGURED and result.non_retryable
