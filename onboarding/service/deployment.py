"""Worker versioning: which Worker Deployment Version a worker belongs to, and how the
workflows it runs move between versions (README, "Deploying").

With ``ONBOARDING_BUILD_ID`` unset the worker is unversioned, exactly as before versioning
existed: any worker on the task queue takes any task, and a deploy is a rolling restart kept
safe by ``workflow.patched`` and the replay tests. With it set, the worker joins the version
``ONBOARDING_DEPLOYMENT_NAME`` / ``ONBOARDING_BUILD_ID``; Temporal sends new workflows to the
deployment's *current* version only, so new workers can start, be watched and be made current
(``temporal worker deployment set-current-version``) before the old ones are drained.

The versioning behaviour is **auto-upgrade** for every workflow this worker runs, set here as the
worker's default rather than on each ``@workflow.defn``:

- An onboarding lives for days (up to ``ONBOARDING_EXPIRE_AFTER`` and a notice hold after it).
  Pinned, every build would have to keep workers running until its last onboarding ended: a
  week of old workers after every deploy, and a bug fix that never reaches the onboardings
  already running. Auto-upgrade moves each running onboarding to the current version at its
  next workflow task; that is safe because every change to the workflow's logic goes behind
  ``workflow.patched`` and every recorded history must replay on the new code
  (``tests/workflows/test_replay.py``), the same gate that keeps unversioned rolling restarts
  safe.
- ``CreateSmileUser`` (one activity, minutes at most) and the defaults workflow are short or
  trivially compatible; pinning them would buy nothing the replay gate does not already give,
  and would keep the old version draining (its workers needed) while any is open.
- Why not in the decorators: a behaviour declared on ``@workflow.defn`` is sent with every
  workflow task completion, and the server (1.32) refuses it from an unversioned worker
  ("versioning behavior cannot be specified without deployment options being set with
  versioned mode"), so the unversioned mode would break. As the worker's default it applies
  only when versioning is on, and workflows added later get it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

if TYPE_CHECKING:
    from onboarding.service.settings import Settings

DEFAULT_VERSIONING_BEHAVIOR = VersioningBehavior.AUTO_UPGRADE

# Temporal's limit on a build id (``limit.workerBuildIdSize``), also applied to the name.
MAX_LENGTH = 255
# What Temporal calls the workers with no version (e.g. as the "previous version").
UNVERSIONED = "__unversioned__"


def _check_text(value: str, what: str) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; Temporal allows {MAX_LENGTH}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{what} must not contain spaces or control characters")


def check_deployment_name(value: str) -> str:
    """A Worker Deployment name: non-empty, no spaces, and no ``.`` (Temporal writes a version
    as ``<deployment name>.<build id>`` and splits it at the first dot)."""
    _check_text(value, "the deployment name")
    if "." in value:
        raise ValueError(
            f"the deployment name {value!r} contains '.'; Temporal writes a version as "
            "NAME.BUILD_ID, so the name cannot have one (the build id may)"
        )
    return value


def check_build_id(value: str | None) -> str | None:
    """A build id, or ``None`` (blank counts as unset): versioning off."""
    if value is None or not value.strip():
        return None
    _check_text(value, "the build id")
    if value == UNVERSIONED:
        raise ValueError(f"the build id {value!r} is Temporal's name for unversioned workers")
    return value


def deployment_version(settings: Settings) -> WorkerDeploymentVersion | None:
    """This worker's Worker Deployment Version; ``None`` when versioning is off."""
    if settings.build_id is None:
        return None
    return WorkerDeploymentVersion(settings.deployment_name, settings.build_id)


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """What ``build_worker`` passes to the SDK's ``Worker``: ``None`` (unversioned) when
    ``ONBOARDING_BUILD_ID`` is unset."""
    version = deployment_version(settings)
    if version is None:
        return None
    return WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=DEFAULT_VERSIONING_BEHAVIOR,
    )


def describe(config: WorkerDeploymentConfig | None) -> str:
    """One line for the worker's start-up log."""
    if config is None:
        return "unversioned (ONBOARDING_BUILD_ID not set)"
    behavior = config.default_versioning_behavior.name.lower().replace("_", "-")
    return f"deployment version {config.version.to_canonical_string()} ({behavior})"
