"""Connecting to Temporal: the SDK's envconfig conventions plus the pydantic data converter.

``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*`` and the
``temporal.toml`` profile file all work as they do for the ``temporal`` CLI, so Temporal Cloud
needs no code change."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"


async def connect(
    address: str | None = None,
    *,
    namespace: str | None = None,
    lazy: bool = False,
    use_environment: bool = True,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """Connect a client. ``address``/``namespace`` override the environment; with
    ``use_environment=False`` (the embedded dev server) the environment is ignored entirely.
    ``interceptors`` (tracing: :func:`onboarding.service.tracing.temporal_interceptors`) also
    apply to every worker built from the client. ``runtime`` (metrics:
    :func:`onboarding.service.metrics.prometheus_runtime`) is the SDK runtime the client and
    its workers record into; ``None``, the SDK's default."""
    config: ClientConnectConfig = (
        ClientConfig.load_client_connect_config() if use_environment else {}
    )
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return await Client.connect(
        **config,
        data_converter=pydantic_data_converter,
        lazy=lazy,
        interceptors=interceptors,
        runtime=runtime,
    )
