"""The worker's metrics endpoint, as ``onboarding worker`` serves it with
``ONBOARDING_WORKER_METRICS_PORT``: a worker whose client lives in a runtime exporting Prometheus
metrics runs a journey on the dev server, and both the Temporal SDK's own metrics and the
onboarding's domain counters move on a scrape of that endpoint."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from onboarding.core.models import StartRequest, Status, TimeoutsChange
from onboarding.service.metrics import MetricsPortUnavailable, prometheus_runtime
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect
from onboarding.service.worker import build_worker
from onboarding.tooling.ports import free_port
from tests.conftest import CALLBACK_SECRET, Standin, eventually, running_standin
from tests.smile_samples import event

TASK_QUEUE = f"metrics-{uuid.uuid4().hex[:8]}"


@dataclass
class MetricsWorker:
    client: Client
    url: str
    standin: Standin


@pytest.fixture(scope="module")
async def metrics_worker(dev_env: WorkflowEnvironment) -> AsyncIterator[MetricsWorker]:
    """A worker as ``onboarding worker`` runs it with the metrics port set: its own runtime
    (never the SDK's default one, which the other tests' clients share) and a client in it,
    calling a stand-in of its own (this test makes it fail on purpose)."""
    port = free_port()
    runtime = prometheus_runtime(port, host="127.0.0.1")
    client = await connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        use_environment=False,
        runtime=runtime,
    )
    async with running_standin() as standin:
        smile = standin.client(timeout=10.0)
        async with build_worker(client, TASK_QUEUE, smile):
            yield MetricsWorker(client, f"http://127.0.0.1:{port}/metrics", standin)
        await smile.aclose()


class Scrape:
    """The samples of one scrape that carry this test's task queue, by name and labels (the
    SDK's own attributes, namespace, service_name, … left out)."""

    KEPT_OUT = frozenset({"namespace", "task_queue", "service_name", "workflow_type"})

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("task_queue") != TASK_QUEUE:
                    continue
                kept = frozenset((k, v) for k, v in sample.labels.items() if k not in self.KEPT_OUT)
                key = (sample.name, kept)
                self.samples[key] = self.samples.get(key, 0.0) + sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` that has ``labels`` (and any others)."""
        wanted = set(labels.items())
        return sum(v for (n, kept), v in self.samples.items() if n == name and wanted <= kept)


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    assert response.status_code == 200
    return Scrape(response.text)


async def test_sdk_metrics_and_domain_counters_move_as_a_journey_runs(
    metrics_worker: MetricsWorker,
) -> None:
    settings = Settings(
        task_queue=TASK_QUEUE,
        callback_secret=SecretStr(CALLBACK_SECRET),
        defaults_id=f"{TASK_QUEUE}-defaults",  # its own: this client's payloads are plain
    )
    ops = Onboardings(metrics_worker.client, settings)
    url = metrics_worker.url
    before = await scrape(url)

    issued, _ = await ops.start(StartRequest())  # the stand-in creates the user
    user = issued.user_id
    created = event("ACCOUNT_CREATED", accountId="a-1")
    await ops.ingest(user, [created])
    await ops.ingest(user, [created])  # a duplicate (Smile retried it)
    await ops.ingest(user, [event("ACCOUNT_CONNECTED", accountId="a-1", at=1)])
    # A fresh link token: Smile fails the first try (503), the retry gets it.
    await metrics_worker.standin.faults(failNext=1, failStatus=503, onlyPath="/v1/tokens")
    await ops.link_token(user)
    await ops.set_timeouts(user, TimeoutsChange(stall={"connected": 1}, settle_window=1))

    async def stalled() -> None:
        assert (await ops.get(user)).status is Status.STALLED

    await eventually(stalled)
    # The data arrives (signals: nothing here waits on the stall's reconciliation and notice)
    # and, a settle window later, the onboarding completes.
    data = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")
    await ops.ingest(user, [event(t, accountId="a-1", at=2 + i) for i, t in enumerate(data)])

    async def completed() -> None:
        assert (await ops.get(user)).status is Status.COMPLETED

    await eventually(completed)

    async def counted() -> Scrape:
        after = await scrape(url)

        def moved(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        # The onboarding's own, recorded replay-safe by the workflow and its activities.
        assert moved("onboarding_started_total") == 1
        transitions = "onboarding_stage_transitions_total"
        assert moved(transitions, **{"from": "created", "to": "account_created"}) == 1
        assert moved(transitions, **{"from": "account_created", "to": "connected"}) == 1
        assert moved("onboarding_stalls_total", stage="connected") == 1
        assert moved(transitions, **{"from": "connected", "to": "data_ready"}) == 1
        assert moved("onboarding_ended_total", status="completed") == 1
        assert moved("onboarding_events_total", source="webhook", outcome="recorded") == 5
        assert moved("onboarding_events_total", source="webhook", outcome="duplicate") == 1
        reconciled = after.total("onboarding_reconciliations_total", trigger="stall")
        assert reconciled - before.total("onboarding_reconciliations_total", trigger="stall") == 1
        token = {"activity_type": "smile_create_token"}
        refreshes = "onboarding_token_refreshes_total"
        assert moved(refreshes, **token, outcome="SmileServerError") == 1
        assert moved(refreshes, **token, outcome="issued") == 1
        # The SDK's own: workflows completed (the user's creation, then the onboarding),
        # activities run and failed, workflow tasks handled.
        completed = "temporal_workflow_completed_total"
        assert after.total(completed) - before.total(completed) == 2
        failed = "temporal_activity_execution_failed_total"  # also by failure_reason
        assert after.total(failed, **token) - before.total(failed, **token) == 1
        ran = "temporal_activity_execution_latency_seconds_count"
        assert after.total(ran) - before.total(ran) >= 4  # user, token twice, reconcile, …
        tasks = "temporal_workflow_task_execution_latency_seconds_count"
        assert after.total(tasks) > before.total(tasks)
        return after

    after = await eventually(counted)
    # Nothing personal: no user id in any label.
    assert user not in after.text


async def test_a_taken_metrics_port_is_a_clear_error() -> None:
    port = free_port()
    serving = prometheus_runtime(port, host="127.0.0.1")  # serves while it is referenced
    with pytest.raises(MetricsPortUnavailable, match=f"127.0.0.1:{port}.*in use"):
        prometheus_runtime(port, host="127.0.0.1")
    del serving
