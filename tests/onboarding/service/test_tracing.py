"""Tracing with OpenTelemetry, against real parts: a local OTLP/HTTP collector that decodes what
the SDK's exporter sends, the real API served by uvicorn, a worker on the Temporal dev server.

The process-wide tracer provider can be set only once, so these tests hand a provider of their
own to the app and the interceptor; the global path is run in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect
from onboarding.service.tracing import (
    new_tracer_provider,
    setup_tracing,
    temporal_interceptors,
    tracing_enabled,
)
from onboarding.service.worker import build_worker
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, Standin, eventually, unique_user
from tests.smile_samples import webhook_body

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class RecordedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each linked span


@dataclass
class Collector:
    """Accepts ``POST /v1/traces`` as an OTLP/HTTP collector does (protobuf, maybe gzipped)."""

    url: str = ""
    spans: list[RecordedSpan] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        RecordedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            service=str(resource.get("service.name")),
                            attributes=_attributes(span.attributes),
                            links=tuple(
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ),
                        )
                    )
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[RecordedSpan]:
        return [span for span in self.spans if span.name == name]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@contextlib.asynccontextmanager
async def running_collector() -> AsyncIterator[Collector]:
    collector = Collector()
    app = Starlette(routes=[Route("/v1/traces", collector.receive, methods=["POST"])])
    port = free_port()
    async with serving(app, "127.0.0.1", port):
        collector.url = f"http://127.0.0.1:{port}"
        yield collector


def signed(body: bytes) -> dict[str, str]:
    return {"Smile-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"}


async def test_one_trace_follows_a_webhook_from_the_api_into_the_workflow(
    dev_env: WorkflowEnvironment,
    api_settings: Settings,
    shared_standin: Standin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_collector() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        # An operator capturing every request header still exports no secret.
        monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
        settings = api_settings.model_copy(
            update={
                "otlp_endpoint": collector.url,
                "task_queue": f"tracing-{uuid.uuid4().hex[:8]}",
                "data_dir": tmp_path,  # its own spool: this app's drainer runs
                # its own defaults workflow, which this plain (unencrypted) client can read
                "defaults_id": f"tracing-defaults-{uuid.uuid4().hex[:8]}",
            }
        )
        assert tracing_enabled(settings)
        provider = new_tracer_provider("onboarding-test")  # not the global one
        smile = shared_standin.client()
        try:
            client = await Client.connect(
                dev_env.client.service_client.config.target_host,
                namespace=dev_env.client.namespace,
                interceptors=temporal_interceptors(provider),
                data_converter=pydantic_data_converter,
            )
            app = create_app(settings, client, tracer_provider=provider)
            port = free_port()
            async with (
                build_worker(client, settings.task_queue, smile),
                serving(app, "127.0.0.1", port),
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
            ):
                assert (await http.get("/healthz")).status_code == 200
                user = unique_user()
                body = webhook_body("ACCOUNT_CREATED", user)
                response = await http.post(
                    "/webhooks/smile?probe=not-for-traces", content=body, headers=signed(body)
                )
                assert response.status_code == 202, response.text
                assert response.json()["outcome"] == "signalled"
                workflow_id = response.json()["workflowId"]

                async def one_trace() -> list[RecordedSpan]:
                    await asyncio.to_thread(provider.force_flush)  # the exporter posts to us
                    named = collector.named("POST /webhooks/smile")
                    assert len(named) == 1, named
                    server = named[0]
                    same = [s for s in collector.spans if s.trace_id == server.trace_id]
                    names = {s.name for s in same}
                    assert "SignalWithStartWorkflow:OnboardingWorkflow" in names, names
                    assert "RunWorkflow:OnboardingWorkflow" in names, names
                    assert "HandleSignal:ingest" in names, names
                    return same

                spans = await eventually(one_trace, timeout=30, interval=0.2)

                # A later webhook for the same user: its trace holds the API's span and the
                # signal; the workflow's HandleSignal span stays in the onboarding's own trace
                # (the interceptor's design) and links to the signal that brought it.
                later = webhook_body("ACCOUNT_CONNECTED", user)
                response = await http.post("/webhooks/smile", content=later, headers=signed(later))
                assert response.status_code == 202, response.text

                async def linked() -> tuple[RecordedSpan, RecordedSpan]:
                    await asyncio.to_thread(provider.force_flush)
                    # asserts, not unpacking: spans still on their way are waited for
                    servers = collector.named("POST /webhooks/smile")
                    assert len(servers) == 2, servers
                    server = servers[1]
                    signals = [
                        s
                        for s in collector.named("SignalWithStartWorkflow:OnboardingWorkflow")
                        if s.trace_id == server.trace_id
                    ]
                    assert len(signals) == 1, signals
                    handled = [
                        s
                        for s in collector.named("HandleSignal:ingest")
                        if (signals[0].trace_id, signals[0].span_id) in s.links
                    ]
                    assert len(handled) == 1, handled
                    return signals[0], handled[0]

                later_signal, later_handled = await eventually(linked, timeout=30, interval=0.2)
        finally:
            await smile.aclose()
            await asyncio.to_thread(provider.shutdown)

    by_name = {span.name: span for span in spans}
    server = by_name["POST /webhooks/smile"]
    signal = by_name["SignalWithStartWorkflow:OnboardingWorkflow"]
    assert server.parent_span_id == ""  # the trace starts at the API
    assert signal.parent_span_id == server.span_id
    assert by_name["RunWorkflow:OnboardingWorkflow"].parent_span_id == signal.span_id
    assert by_name["HandleSignal:ingest"].parent_span_id == signal.span_id
    assert signal.attributes["temporalWorkflowID"] == workflow_id
    assert {span.service for span in spans} == {"onboarding-test"}
    # One server span per request (FastAPI's own telemetry stays out of the way).
    assert len(collector.named("POST /webhooks/smile")) == 2
    # The later webhook's signal is handled in the onboarding's trace, linked to its own.
    assert later_signal.trace_id != server.trace_id
    assert later_handled.trace_id == server.trace_id
    # Probes are not traced.
    assert not [s for s in collector.spans if "healthz" in json.dumps(s.attributes)]

    # Nothing secret or personal beyond the user id: no query string, no caller address, the
    # signature and credentials redacted even when headers are captured.
    assert server.attributes["http.url"] == f"http://127.0.0.1:{port}/webhooks/smile"
    assert server.attributes["net.peer.ip"] == "REDACTED"
    assert server.attributes["http.request.header.content_type"] == ["application/json"]
    assert server.attributes["http.request.header.smile_signature"] == ["[REDACTED]"]
    exported = json.dumps([span.attributes for span in collector.spans])
    signatures = [sign(b, WEBHOOK_SECRET) for b in (body, later)]
    for secret in ("not-for-traces", *signatures, WEBHOOK_SECRET, ADMIN_TOKEN):
        assert secret not in exported


async def test_off_and_free_when_the_endpoint_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert not tracing_enabled(settings)

    provider = setup_tracing(settings, "onboarding-api")
    assert provider is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # never set
    assert temporal_interceptors(provider) == []
    client = await connect(
        "127.0.0.1:1", use_environment=False, lazy=True, interceptors=temporal_interceptors(None)
    )
    assert list(client.config()["interceptors"]) == []

    app = create_app(settings, tracer_provider=provider)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    stack: Any = app.build_middleware_stack()
    assert type(stack) is ServerErrorMiddleware  # Starlette's own outermost layer
    while stack is not None:
        assert "opentelemetry" not in type(stack).__module__
        stack = getattr(stack, "app", None)


def _python(code: str, **env: str) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter from the repository's root."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_unset_the_sdk_and_the_instrumentation_are_not_even_imported(tmp_path: Path) -> None:
    code = f"""
import sys
from api.app import create_app
from onboarding.service.settings import Settings
from onboarding.service.tracing import setup_tracing
import onboarding.cli.main, onboarding.tooling.dev

settings = Settings(data_dir={str(tmp_path)!r})
assert setup_tracing(settings, "onboarding-api") is None
create_app(settings).build_middleware_stack()
loaded = [m for m in sys.modules if m.startswith((
    "opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation",
    "temporalio.contrib.opentelemetry"))]
print(loaded)
assert not loaded
"""
    code_, output = _python(code)
    assert code_ == 0, output


async def test_a_real_process_sets_the_global_provider_and_flushes_on_exit() -> None:
    async with running_collector() as collector:
        code = """
from opentelemetry import trace
from onboarding.service.settings import Settings
from onboarding.service.tracing import WORKER_SERVICE, setup_tracing

provider = setup_tracing(Settings(), WORKER_SERVICE)
assert provider is not None and trace.get_tracer_provider() is provider
with trace.get_tracer("check").start_as_current_span("last words"):
    pass
# no shutdown, no flush: the provider's own exit hook sends the span
"""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            | {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                "OTEL_BSP_SCHEDULE_DELAY": "600000",  # the batch's timer would never fire
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, output.decode()
        (span,) = collector.named("last words")
        assert span.service == "onboarding-worker"


def test_the_service_name_is_ours_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")  # never reached
    named = []
    for environment in ({}, {"OTEL_SERVICE_NAME": "api-eu"},
                        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=api-us,region=us"}):  # fmt: skip
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        provider = new_tracer_provider("onboarding-api")
        named.append(provider.resource.attributes["service.name"])
        provider.shutdown()
        for variable in environment:
            monkeypatch.delenv(variable)
    assert named == ["onboarding-api", "api-eu", "api-us"]


@pytest.mark.parametrize(
    ("variable", "on"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", True),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", True),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", False),
    ],
)
def test_either_endpoint_variable_turns_tracing_on(
    monkeypatch: pytest.MonkeyPatch, variable: str, on: bool
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:4318")
    assert tracing_enabled(Settings()) is on
