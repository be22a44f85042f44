"""Connecting to Temporal: the SDK's envconfig conventions plus the data converter (pydantic,
and the encrypting payload codec when keys are configured).

``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*`` and the
``temporal.toml`` profile file all work as they do for the ``temporal`` CLI, so Temporal Cloud
needs no code change. :func:`data_converter` is the one place the converter is built: the
worker, the API, the CLI, ``onboarding dev`` and the tests' environments all go through it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import Runtime

from onboarding.service.codec import EncryptionCodec

DEFAULT_ADDRESS = "localhost:7233"


def data_converter(codec: EncryptionCodec | None = None) -> DataConverter:
    """The pydantic data converter; with ``codec`` (:func:`onboarding.service.codec.codec_for`)
    every payload goes through it, and, when it encrypts, failure messages and stack traces too
    (moved into the failure's encoded attributes, which the codec encrypts: history then reads
    "Encoded failure")."""
    if codec is None:
        return pydantic_data_converter
    if not codec.encrypts:  # decrypting what was written before encryption was turned off
        return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(
    address: str | None = None,
    *,
    namespace: str | None = None,
    lazy: bool = False,
    use_environment: bool = True,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    codec: EncryptionCodec | None = None,
) -> Client:
    """Connect a client. ``address``/``namespace`` override the environment; with
    ``use_environment=False`` (the embedded dev server) the environment is ignored entirely.
    ``interceptors`` (tracing: :func:`onboarding.service.tracing.temporal_interceptors`) also
    apply to every worker built from the client. ``runtime`` (metrics:
    :func:`onboarding.service.metrics.prometheus_runtime`) is the SDK runtime the client and
    its workers record into; ``None``, the SDK's default. ``codec``
    (:func:`onboarding.service.codec.codec_from_settings`) encrypts the payloads of the client
    and of every worker built from it; ``None``, plain."""
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
        data_converter=data_converter(codec),
        lazy=lazy,
        interceptors=interceptors,
        runtime=runtime,
    )
