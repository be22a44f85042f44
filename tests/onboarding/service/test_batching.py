"""The batcher when Temporal refuses a batch for its size: each event is sent again alone, so
only the one too large alone fails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from onboarding.core.models import Event, Source
from onboarding.service.batching import SignalBatcher
from onboarding.service.onboardings import EventRefused, Onboardings
from onboarding.service.settings import Settings
from tests.conftest import eventually, unique_user


def event(n: int, size: int = 0) -> Event:
    at = datetime(2026, 11, 30, 8, 0, n, tzinfo=UTC)
    data = {f"k{i}": "x" * 500 for i in range(size // 500)}
    return Event(id=f"evt-{n}", type="IDENTITY_ADDED", source=Source.WEBHOOK, created_at=at,
                 received_at=at, data=data)  # fmt: skip


async def test_a_refused_batch_is_sent_again_one_event_at_a_time(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None
) -> None:
    onboardings = Onboardings(dev_env.client, api_settings)
    batcher = SignalBatcher(onboardings)
    user = unique_user()
    # Queued in one turn of the loop, so they go as one batch of three.
    outcomes = await asyncio.gather(
        batcher.submit(user, event(0)),
        batcher.submit(user, event(1, size=3_000_000)),
        batcher.submit(user, event(2)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["IngestResult", "EventRefused", "IngestResult"]
    with pytest.raises(EventRefused):
        raise outcomes[1]  # type: ignore[misc]
    assert batcher.signals_sent == 2 and batcher.events_sent == 2
    view = await onboardings.get(user)
    assert sorted(e.id for e in view.events) == ["evt-0", "evt-2"]


async def test_an_invalid_argument_that_is_not_about_size_is_not_a_refusal(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    """A namespace without this service's search attributes is refused by Temporal as an
    invalid argument too; that is a configuration to fix, so the events must stay retriable
    (in the spool), never be dead-lettered."""
    namespace = f"bare-{unique_user()}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=namespace,
        data_converter=pydantic_data_converter,
    )
    onboardings = Onboardings(client, api_settings)

    async def refused_as_invalid() -> None:
        try:
            await onboardings.ingest(unique_user(), [event(0)])
        except RPCError as err:
            assert err.status is RPCStatusCode.INVALID_ARGUMENT, err.status
        else:
            raise AssertionError("a namespace without the search attributes took the signal")

    await eventually(refused_as_invalid, timeout=30)
