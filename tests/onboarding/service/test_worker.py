"""What building a worker does besides registering the workflows and activities."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from onboarding.service.worker import build_worker
from tests.conftest import Standin
from workflows.create_user import CreateSmileUserWorkflow
from workflows.onboarding import OnboardingWorkflow


async def test_building_a_worker_writes_the_workflow_bytecode(
    dev_env: WorkflowEnvironment, shared_standin: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    caches = [
        Path(importlib.util.cache_from_source(str(sys.modules[cls.__module__].__file__)))
        for cls in (OnboardingWorkflow, CreateSmileUserWorkflow)
    ]
    for cache in caches:
        cache.unlink(missing_ok=True)
    smile = shared_standin.client()
    try:
        build_worker(dev_env.client, "bytecode-check", smile)
    finally:
        await smile.aclose()
    assert all(cache.is_file() for cache in caches)
