"""Chaos harness: the service as real processes (Temporal dev server, ``onboarding worker``,
``onboarding api``) killed, frozen and restarted under a Smile-like load of signed webhooks,
then every user read back to count what was acknowledged, applied, lost or given up.

``tests/chaos`` runs the scenarios briefly in CI; ``bench/chaos.py`` runs them at length."""

from onboarding.tooling.chaos.accounting import TABLE_COLUMNS, ChaosResult, count, settle
from onboarding.tooling.chaos.cluster import Cluster, ClusterConfig, Secrets, running_cluster
from onboarding.tooling.chaos.journeys import (
    JOURNEYS,
    Delivery,
    Journey,
    LoadPlan,
    PlannedEvent,
    plan_load,
)
from onboarding.tooling.chaos.processes import (
    ONBOARDING,
    ApiProcess,
    ManagedProcess,
    ProcessError,
    TemporalProcess,
    WorkerProcess,
    clean_environment,
)
from onboarding.tooling.chaos.scenarios import (
    SCENARIOS,
    ChaosSettings,
    OutageMode,
    api_kill,
    replicas_kill,
    run_scenario,
    temporal_kill,
    temporal_outage,
    worker_kill,
)
from onboarding.tooling.chaos.sender import Attempt, EventLedger, Sender, SenderConfig
from onboarding.tooling.chaos.spoolview import SpoolSnapshot, read_spool
from onboarding.tooling.ports import free_port

__all__ = [
    "JOURNEYS",
    "ONBOARDING",
    "SCENARIOS",
    "TABLE_COLUMNS",
    "ApiProcess",
    "Attempt",
    "ChaosResult",
    "ChaosSettings",
    "Cluster",
    "ClusterConfig",
    "Delivery",
    "EventLedger",
    "Journey",
    "LoadPlan",
    "ManagedProcess",
    "OutageMode",
    "PlannedEvent",
    "ProcessError",
    "Secrets",
    "Sender",
    "SenderConfig",
    "SpoolSnapshot",
    "TemporalProcess",
    "WorkerProcess",
    "api_kill",
    "clean_environment",
    "count",
    "free_port",
    "plan_load",
    "read_spool",
    "replicas_kill",
    "run_scenario",
    "running_cluster",
    "settle",
    "temporal_kill",
    "temporal_outage",
    "worker_kill",
]
