"""A versioned deploy meets running onboardings (README, "Deploying"): onboardings start on
build A, build B is started and watched, made current, A is drained and stopped, and the
onboardings finish on B. On the dev server (Worker Deployments are on by default in the
Temporal server 1.32 the ``temporal`` CLI embeds), with a deployment and task queue of its own
so no other test's workers are touched."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from pydantic import SecretStr
from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionProto
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus as Version
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentResponse,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from onboarding.core.identity import workflow_id_for
from onboarding.core.models import Stage, StartRequest, Status, TimeoutsChange
from onboarding.service.deployment import deployment_config
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.service.worker import build_worker
from tests.conftest import CALLBACK_SECRET, Standin, eventually
from tests.smile_samples import event

ONBOARDINGS = 4
# Generous: two workers and the session's other tests share two cores.
DEADLINE = 60.0


def settings_for(build_id: str, deployment: str, task_queue: str) -> Settings:
    return Settings(
        task_queue=task_queue,
        deployment_name=deployment,
        build_id=build_id,
        callback_secret=SecretStr(CALLBACK_SECRET),
        defaults_id=f"defaults-{task_queue}",  # its own: nothing shared with other tests
    )


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """The worker running in the background; shut down (drained) on the way out if the test
    did not already."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if not task.done():
            await worker.shutdown()
        await task


async def describe_deployment(client: Client, name: str) -> DescribeWorkerDeploymentResponse:
    return await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
    )


async def watch_until_polled(client: Client, name: str, build_id: str, task_queue: str) -> None:
    """What an operator watches before promoting (``temporal worker deployment
    describe-version``): the new version exists and its workers poll the task queue."""

    async def polled() -> None:
        try:
            described = await client.workflow_service.describe_worker_deployment_version(
                DescribeWorkerDeploymentVersionRequest(
                    namespace=client.namespace,
                    deployment_version=VersionProto(deployment_name=name, build_id=build_id),
                )
            )
        except RPCError as err:  # not known yet: no poll has reached the server
            raise AssertionError(f"version {build_id} not there yet: {err}") from err
        queues = {q.name for q in described.worker_deployment_version_info.task_queue_infos}
        assert task_queue in queues, queues

    await eventually(polled, timeout=DEADLINE, interval=0.2)


async def make_current(client: Client, name: str, build_id: str) -> None:
    """``temporal worker deployment set-current-version``, retried while the server is still
    registering the version's pollers."""

    async def made_current() -> None:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=name,
                    build_id=build_id,
                    identity="test_versioned_deploy",
                )
            )
        except RPCError as err:
            raise AssertionError(f"cannot make {build_id} current yet: {err}") from err
        described = await describe_deployment(client, name)
        routing = described.worker_deployment_info.routing_config
        assert routing.current_deployment_version.build_id == build_id, routing

    await eventually(made_current, timeout=DEADLINE, interval=0.2)


def task_builds(events: list[HistoryEvent]) -> list[str]:
    """The build id of the worker that completed each workflow task, in order."""
    return [
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in events
        if e.HasField("workflow_task_completed_event_attributes")
    ]


async def history(client: Client, workflow_id: str) -> list[HistoryEvent]:
    return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]


async def test_onboardings_started_on_one_build_finish_on_the_next(
    dev_env: WorkflowEnvironment, shared_standin: Standin
) -> None:
    client = dev_env.client
    suffix = uuid.uuid4().hex[:8]
    name, task_queue = f"onboarding-deploy-{suffix}", f"versioned-deploy-{suffix}"
    settings_a = settings_for("build-a", name, task_queue)
    settings_b = settings_for("build-b", name, task_queue)
    ops = Onboardings(client, settings_a)  # the API: it knows nothing of versions
    smile = shared_standin.client(timeout=10.0)
    users: list[str] = []
    creations: list[str] = []
    try:
        # --- build A is the current version; onboardings start and get partway ------------
        worker_a = build_worker(client, task_queue, smile, deployment=deployment_config(settings_a))
        async with running(worker_a):
            await watch_until_polled(client, name, "build-a", task_queue)
            await make_current(client, name, "build-a")
            for i in range(ONBOARDINGS):
                issued, _ = await ops.start(
                    StartRequest(timeouts=TimeoutsChange(settle_window=1)),
                    idempotency_key=f"deploy-{suffix}-{i}",
                )
                users.append(issued.user_id)
                creations.append(f"create-smile-user-deploy-{suffix}-{i}")
            for user in users:
                await ops.ingest(
                    user,
                    [
                        event("ACCOUNT_CREATED", accountId="a-1", at=1),
                        event("ACCOUNT_CONNECTED", accountId="a-1", at=2),
                    ],
                )

            async def all_connected() -> None:
                for user in users:
                    view = await ops.get(user)
                    assert (view.stage, view.status) == (Stage.CONNECTED, Status.ACTIVE), view

            await eventually(all_connected, timeout=DEADLINE)
            for user in users:
                info = (
                    await client.get_workflow_handle(workflow_id_for(user)).describe()
                ).raw_description.workflow_execution_info.versioning_info
                assert info.deployment_version.build_id == "build-a"
                assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE

            # --- start build B beside A, watch it, make it current, drain and stop A -------
            worker_b = build_worker(
                client, task_queue, smile, deployment=deployment_config(settings_b)
            )
            async with running(worker_b):
                await watch_until_polled(client, name, "build-b", task_queue)
                await make_current(client, name, "build-b")

                async def b_current_a_draining() -> None:
                    described = await describe_deployment(client, name)
                    statuses = {
                        s.deployment_version.build_id: s.status
                        for s in described.worker_deployment_info.version_summaries
                    }
                    assert (
                        statuses.get("build-b") == Version.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT
                    )
                    # No longer current: A takes no new work; its auto-upgrade onboardings move.
                    assert statuses.get("build-a") in (
                        Version.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING,
                        Version.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED,
                    ), statuses

                await eventually(b_current_a_draining, timeout=DEADLINE)
                await worker_a.shutdown()  # graceful: what it has in hand finishes first

                # --- the onboardings finish on B alone ------------------------------------
                data = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")
                for user in users:
                    await ops.ingest(
                        user, [event(t, accountId="a-1", at=3 + i) for i, t in enumerate(data)]
                    )

                async def all_completed() -> None:
                    for user in users:
                        handle = client.get_workflow_handle(workflow_id_for(user))
                        described = await handle.describe()
                        assert described.status is WorkflowExecutionStatus.COMPLETED, user

                await eventually(all_completed, timeout=DEADLINE)
                for user in users:
                    view = await ops.get(user)  # answered by B from the closed history
                    assert (view.stage, view.status) == (Stage.DATA_READY, Status.COMPLETED)
    finally:
        await smile.aclose()

    # --- who ran what: the histories say which build completed each workflow task -----------
    for user in users:
        builds = task_builds(await history(client, workflow_id_for(user)))
        switch = builds.index("build-b") if "build-b" in builds else len(builds)
        a_part, b_part = builds[:switch], builds[switch:]
        assert a_part and set(a_part) == {"build-a"}, builds  # started and advanced on A
        assert b_part and set(b_part) == {"build-b"}, builds  # finished on B, never back on A
        info = (
            await client.get_workflow_handle(workflow_id_for(user)).describe()
        ).raw_description.workflow_execution_info.versioning_info
        assert info.deployment_version.build_id == "build-b"
    for creation in creations:  # short, done before the deploy: all on A
        assert set(task_builds(await history(client, creation))) == {"build-a"}
    with contextlib.suppress(RPCError):  # this test's own defaults workflow
        await client.get_workflow_handle(settings_a.defaults_id).terminate("test over")
