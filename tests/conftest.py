"""Shared fixtures: Temporal's real servers from the pip-installed binaries (nothing downloads),
the API app, and helpers to poll with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.smile_client import SmileClient
from api.app import create_app
from onboarding.core.identity import workflow_id_for
from onboarding.service.codec import codec_from_keys
from onboarding.service.settings import Settings
from onboarding.service.temporal import data_converter
from onboarding.service.worker import build_worker
from onboarding.tooling.binaries import temporal_cli, temporal_test_server
from onboarding.tooling.pgcluster import PostgresCluster
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.smile_standin import StandinState, create_standin_app
from workflows import search_attributes

T = TypeVar("T")

WEBHOOK_SECRET = "a little secret"
OLD_WEBHOOK_SECRET = "the previous secret"
ADMIN_TOKEN = "admin-token-for-tests"
CALLBACK_SECRET = "callback-secret-for-tests"
SMILE_KEY = "smile-test-key"
SMILE_SECRET = "smile-test-secret-value"
# ID:BASE64 (32 bytes): the tests' servers hold encrypted payloads, as production does
ENCRYPTION_KEY = "tests-1:dGVzdHMtb25seSBrZXksIDMyIGJ5dGVzIGxvbmchISE="
ENCRYPTION_KEYS = [ENCRYPTION_KEY]
# the converter of the tests' environments: built as connect() builds it, with the codec
TEST_CONVERTER = data_converter(codec_from_keys(ENCRYPTION_KEYS))


class Standin:
    """A running Smile stand-in: its URL, its records, and its control endpoints over HTTP."""

    def __init__(self, base_url: str, state: StandinState) -> None:
        self.base_url = base_url
        self.api_url = f"{base_url}/v1"
        self.state = state
        self.control = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def faults(self, **faults: object) -> None:
        response = await self.control.post("/_control/faults", json=faults)
        assert response.status_code == 200, response.text

    async def calls(self) -> list[dict[str, object]]:
        response = await self.control.get("/_control/calls")
        return response.json()  # type: ignore[no-any-return]

    async def reset(self) -> None:
        await self.control.delete("/_control/faults")
        await self.control.delete("/_control/calls")

    def client(self, timeout: float = 2.0) -> SmileClient:
        from datetime import timedelta

        return SmileClient(self.api_url, SMILE_KEY, SecretStr(SMILE_SECRET),
                           timeout=timedelta(seconds=timeout))  # fmt: skip


@contextlib.asynccontextmanager
async def running_standin(**options: str) -> AsyncIterator[Standin]:
    app = create_standin_app(SMILE_KEY, SMILE_SECRET, **options)
    port = free_port()
    async with serving(app, "127.0.0.1", port):
        standin = Standin(f"http://127.0.0.1:{port}", app.state.standin)
        try:
            yield standin
        finally:
            await standin.control.aclose()


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Retry ``check`` until it returns without AssertionError, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


def unique_user() -> str:
    return f"tenantId-{uuid.uuid4().hex}"


async def workflow_exists(client: Client, user_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id_for(user_id)).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def start_time_skipping() -> WorkflowEnvironment:
    """Temporal's time-skipping test server, with the service's search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER,
        test_server_existing_path=str(temporal_test_server()),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in search_attributes.ALL
            },
        )
    )
    return env


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_time_skipping() as env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=search_attributes.ALL,
    ) as env:
        yield env


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (Debian's server binaries)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
async def shared_standin() -> AsyncIterator[Standin]:
    """One stand-in for the session's workers (fault tests start their own)."""
    async with running_standin() as standin:
        yield standin


@pytest.fixture(scope="session")
def api_settings(shared_standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),  # the API's SQLite spool lives here
        webhook_secrets=[SecretStr(WEBHOOK_SECRET), SecretStr(OLD_WEBHOOK_SECRET)],
        admin_tokens=[SecretStr(ADMIN_TOKEN)],
        callback_secret=SecretStr(CALLBACK_SECRET),
        encryption_keys=[SecretStr(ENCRYPTION_KEY)],
        task_queue=f"api-tests-{uuid.uuid4().hex[:8]}",
        smile_api_base_url=shared_standin.api_url,
        smile_api_key=SMILE_KEY,
        smile_api_secret=SecretStr(SMILE_SECRET),
    )


@pytest.fixture(scope="session")
async def dev_worker(
    dev_env: WorkflowEnvironment, api_settings: Settings, shared_standin: Standin
) -> AsyncIterator[None]:
    smile = shared_standin.client()
    async with build_worker(dev_env.client, api_settings.task_queue, smile):
        yield
    await smile.aclose()


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The real FastAPI app, in process, against the real dev server and a real worker."""
    app = create_app(api_settings, dev_env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
