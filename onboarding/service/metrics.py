"""The worker's metrics: the Temporal SDK's own (workflow and activity tasks, their latencies,
failures, pollers, slots) and the domain counters the onboarding workflow and its activities
record, all served by the SDK runtime's Prometheus exporter on
``ONBOARDING_WORKER_METRICS_PORT``.

A :class:`~temporalio.runtime.Runtime` carries the exporter; the client the worker polls with
must be connected with it (``connect(..., runtime=...)``), and it serves from its creation until
the process ends. Counters end in ``_total`` and durations are in seconds, the Prometheus
conventions the API's ``/metrics`` follows too (the SDK's defaults are neither)."""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


class MetricsPortUnavailable(RuntimeError):
    pass


def prometheus_runtime(port: int, host: str = "0.0.0.0") -> Runtime:
    """A runtime serving Prometheus metrics on ``host:port`` (``GET /metrics``)."""
    config = PrometheusConfig(
        bind_address=f"{host}:{port}",
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config))
    except ValueError as err:  # how the SDK reports a bind failure ("Address already in use")
        raise MetricsPortUnavailable(
            f"the worker cannot serve metrics on {host}:{port} ({err}); choose another "
            "ONBOARDING_WORKER_METRICS_PORT"
        ) from err
