"""Traces with OpenTelemetry, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: one trace follows a
webhook from the API's server span through the client's ``SignalWithStartWorkflow`` into the
workflow (``RunWorkflow``, ``HandleSignal``) and its activities. The workflow's spans stay in the
trace that started it, so a later webhook's ``HandleSignal`` span is there too, linked to the
webhook's trace.

The parts are the SDK's own: a :class:`~opentelemetry.sdk.trace.TracerProvider` with a
``BatchSpanProcessor`` and the OTLP/HTTP exporter (which reads the standard ``OTEL_EXPORTER_OTLP_*``
variables itself: endpoint, headers, certificates, compression, timeout), Temporal's
:class:`~temporalio.contrib.opentelemetry.TracingInterceptor` on the client (a worker built from
that client inherits it, workflow side included) and the FastAPI instrumentation. The sandbox
needs no passthrough for it: the interceptor's module is under ``temporalio`` (passed through by
default) and makes its workflow spans outside the sandbox; workflow code never calls OpenTelemetry.
With the instrumentation in the app, FastAPI's own telemetry (newer FastAPI turns it on when a
global provider is set) stands aside, so a request has one server span.

Unset, tracing is off and free: no provider is set, the client has no interceptor, the app no
middleware, and the SDK and the instrumentation are never imported.

The process-wide provider is set once, by :func:`setup_tracing` in the ``api``, ``worker`` and
``dev`` commands. Everything else takes the provider as an argument, so tests use one of their
own without touching the global (which OpenTelemetry lets a process set only once)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from onboarding.service.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from temporalio.client import Interceptor

logger = logging.getLogger("onboarding.tracing")

API_SERVICE = "onboarding-api"
WORKER_SERVICE = "onboarding-worker"
DEV_SERVICE = "onboarding-dev"

# Probes, scrapes and the console's static files are not traced (regexes, searched in the
# request's URL without its query string).
EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$,/console/static/"

# Should an operator capture request headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*),
# these are still recorded only as "[REDACTED]": bearer tokens, the webhook signature, cookies.
SENSITIVE_HEADERS = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "smile-signature",
    "webhook-signature",
    "idempotency-key",
    ".*token.*",
    ".*secret.*",
    ".*api-key.*",
]

REDACTED = "REDACTED"
# Attributes the HTTP instrumentation fills from the request that are not ours to export: the
# query string (a page token, whatever a caller appends) and the caller's address (for a
# widget callback, the end user's browser).
_URL_ATTRIBUTES = ("http.url", "url.full")
_REDACTED_ATTRIBUTES = ("url.query", "net.peer.ip", "client.address", "http.client_ip")


def tracing_enabled(settings: Settings) -> bool:
    """On when OpenTelemetry's endpoint variable (for everything, or for traces) is set: the
    exporter then reads it, and the rest of ``OTEL_EXPORTER_OTLP_*``, itself."""
    endpoints = (settings.otlp_endpoint, settings.otlp_traces_endpoint)
    return any(endpoint and endpoint.strip() for endpoint in endpoints)


def new_tracer_provider(service_name: str) -> TracerProvider:
    """A provider exporting to the OTLP/HTTP endpoint of the ``OTEL_EXPORTER_OTLP_*`` variables,
    in batches. It is not made the global one. It shuts down, flushing what is left, when the
    process exits (the SDK's ``shutdown_on_exit``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; ours is the default
    # when neither names the service (the SDK would say "unknown_service").
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=True)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def setup_tracing(settings: Settings, service_name: str) -> TracerProvider | None:
    """For a real process: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a new provider made the
    process's global one and returned; otherwise None and nothing is touched."""
    if not tracing_enabled(settings):
        return None
    from opentelemetry import trace

    provider = new_tracer_provider(service_name)
    trace.set_tracer_provider(provider)
    # Not the endpoint itself: a URL may carry credentials.
    logger.info("tracing: spans of %s go out over OTLP/HTTP (OTEL_EXPORTER_OTLP_*)", service_name)
    return provider


def temporal_interceptors(tracer_provider: TracerProvider | None) -> list[Interceptor]:
    """The client's interceptors: Temporal's tracing interceptor on ``tracer_provider``, or
    none without one. On the client it also applies to every worker built from that client."""
    if tracer_provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer_provider.get_tracer("onboarding.temporal"))]


def instrument_app(app: FastAPI, tracer_provider: TracerProvider | None) -> bool:
    """Add the FastAPI instrumentation's server spans to ``app`` (not for the probes and
    ``/metrics``, without the per-message ``receive``/``send`` spans, without query strings,
    client addresses or secret headers). Without a provider: nothing, and False."""
    if tracer_provider is None:
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls=EXCLUDED_URLS,
        server_request_hook=scrub_server_span,
        http_capture_headers_sanitize_fields=SENSITIVE_HEADERS,
        exclude_spans=["receive", "send"],
    )
    return True


def scrub_server_span(span: Span, scope: dict[str, Any]) -> None:
    """Overwrite what the instrumentation took from the request that must not leave: the URL's
    query string and the caller's address. (An attribute cannot be removed, only replaced.)"""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            parts = urlsplit(value)
            span.set_attribute(key, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    for key in _REDACTED_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, REDACTED)
