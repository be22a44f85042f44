"""The worker: runs the onboarding workflow and its activities on the task queue."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from activities.notices import ALL_ACTIVITIES
from workflows.onboarding import OnboardingWorkflow


def build_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[OnboardingWorkflow],
        activities=list(ALL_ACTIVITIES),
    )
