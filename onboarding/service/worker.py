"""The worker: runs the workflows and their activities on the task queue."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.bulk import BulkActivities
from activities.notices import ALL_ACTIVITIES
from activities.notify import NoticeSender, NotifyConfig
from activities.smile import SmileActivities
from activities.smile_client import SmileClient
from onboarding.service.bulk import FleetPorts
from onboarding.service.bytecode import write_bytecode
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from workflows.bulk import BulkOperationWorkflow
from workflows.create_user import CreateSmileUserWorkflow
from workflows.defaults import DefaultsWorkflow
from workflows.onboarding import OnboardingWorkflow


class MissingSmileCredentials(RuntimeError):
    pass


def smile_client_from(settings: Settings) -> SmileClient:
    """The worker's one pooled Smile client."""
    if not settings.smile_api_key or settings.smile_api_secret is None:
        raise MissingSmileCredentials(
            "SMILE_API_KEY and SMILE_API_SECRET are not set: the worker cannot call Smile"
        )
    return SmileClient(
        settings.smile_api_base_url,
        settings.smile_api_key,
        settings.smile_api_secret,
        timeout=settings.smile_api_timeout,
    )


def notice_sender_from(settings: Settings) -> NoticeSender:
    """The worker's notice sender: without ``ONBOARDING_NOTIFY_URL`` it refuses every notice
    as not configured (recorded as failed, redeliverable once the worker is configured)."""
    return NoticeSender(NotifyConfig.from_settings(settings))


def build_worker(
    client: Client,
    task_queue: str,
    smile: SmileClient,
    notices: NoticeSender | None = None,
    *,
    deployment: WorkerDeploymentConfig | None = None,
    settings: Settings | None = None,
) -> Worker:
    """The worker; with ``deployment`` (``deployment_config(settings)``), a versioned one.
    ``settings`` are the process's (the bulk operations' service calls use them); without
    them, the environment's with ``task_queue``."""
    write_bytecode(
        OnboardingWorkflow, CreateSmileUserWorkflow, DefaultsWorkflow, BulkOperationWorkflow
    )
    smile_activities = SmileActivities(smile)
    # Bulk operations change onboardings through the service's own operations.
    service = settings if settings is not None else Settings(task_queue=task_queue)
    bulk = BulkActivities(FleetPorts(Onboardings(client, service)))
    sender = notices if notices is not None else NoticeSender(None)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            OnboardingWorkflow,
            CreateSmileUserWorkflow,
            DefaultsWorkflow,
            BulkOperationWorkflow,
        ],
        activities=[
            *ALL_ACTIVITIES,
            smile_activities.create_user,
            smile_activities.create_token,
            smile_activities.reconcile,
            sender.deliver,
            bulk.count,
            bulk.page,
            bulk.apply,
        ],
        deployment_config=deployment,  # None: unversioned
        # Each cached onboarding holds about 0.2 MB: this bounds the worker's memory whatever
        # the number open (10,000 open: docs/benchmarks.md, "Ten thousand open").
        max_cached_workflows=service.worker_max_cached_workflows,
    )
