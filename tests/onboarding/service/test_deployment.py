"""Worker versioning settings: off unless a build id is given, clear errors, and no workflow
declaring a behaviour of its own (an unversioned worker could not run it)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion

import workflows
from onboarding.service.deployment import deployment_config, describe
from onboarding.service.settings import Settings


def test_without_a_build_id_the_worker_is_unversioned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONBOARDING_BUILD_ID", raising=False)
    assert deployment_config(Settings()) is None
    assert deployment_config(Settings(build_id="   ")) is None  # blank counts as unset
    assert describe(None).startswith("unversioned")


def test_a_build_id_makes_a_versioned_auto_upgrade_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONBOARDING_BUILD_ID", "2025.06.1")
    monkeypatch.setenv("ONBOARDING_DEPLOYMENT_NAME", "onboarding-eu")
    config = deployment_config(Settings())
    assert config is not None
    assert config.version == WorkerDeploymentVersion("onboarding-eu", "2025.06.1")
    assert config.use_worker_versioning
    assert config.default_versioning_behavior is VersioningBehavior.AUTO_UPGRADE
    assert describe(config) == "deployment version onboarding-eu.2025.06.1 (auto-upgrade)"


def test_the_deployment_name_defaults_to_the_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ONBOARDING_DEPLOYMENT_NAME", raising=False)
    config = deployment_config(Settings(build_id="abc123"))
    assert config is not None and config.version.deployment_name == "smile-onboarding"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ONBOARDING_DEPLOYMENT_NAME", "smile.onboarding", "contains '.'"),
        ("ONBOARDING_DEPLOYMENT_NAME", "", "must not be empty"),
        ("ONBOARDING_BUILD_ID", "build 7", "spaces or control characters"),
        ("ONBOARDING_BUILD_ID", "x" * 256, "Temporal allows 255"),
        ("ONBOARDING_BUILD_ID", "__unversioned__", "unversioned workers"),
    ],
)
def test_bad_values_are_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert variable in str(err.value) and message in str(err.value)


def test_no_workflow_declares_its_own_versioning_behavior() -> None:
    """The behaviour is the versioned worker's default (auto-upgrade). Declared on
    ``@workflow.defn``, the SDK sends it with every task completion, and the server refuses it
    from an unversioned worker: onboardings would stop when ONBOARDING_BUILD_ID is unset."""
    found = []
    for module_info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"workflows.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            defn = workflow._Definition.from_class(cls)
            if defn is not None and cls.__module__ == module.__name__:
                found.append(cls.__name__)
                assert defn.versioning_behavior is VersioningBehavior.UNSPECIFIED, cls
    assert "OnboardingWorkflow" in found and "CreateSmileUserWorkflow" in found
