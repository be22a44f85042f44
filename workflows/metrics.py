"""Domain counters recorded by the onboarding workflow, on the worker's metrics endpoint
(``ONBOARDING_WORKER_METRICS_PORT``; without it they go nowhere, at no cost).

Replay-safe: they are recorded through ``workflow.metric_meter()``, which records nothing while
a history replays, so a worker rebuilding a workflow from its history (after a restart, or once
its cache evicted it) does not count again what was counted the first time. Recording issues no
command and leaves the history untouched. The SDK adds the ``namespace``, ``task_queue`` and
``workflow_type`` attributes; every attribute of ours takes its value from a closed set (stages,
statuses, sources, outcomes), never from a user id or an event's content."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import MetricCounter

# name → meaning; the exporter adds ``_total`` (counters_total_suffix), see README "Metrics".
COUNTERS: dict[str, str] = {
    "onboarding_started": "Onboardings begun (the first run of each)",
    "onboarding_stage_transitions": "Stage changes of onboardings, by from and to stage",
    "onboarding_stalls": "Onboardings that stalled, by the stage they stalled in",
    "onboarding_ended": "Onboardings that ended, by final status",
    "onboarding_events": "Events signalled to onboardings, by source and outcome "
    "(recorded, duplicate, after_end)",
    "onboarding_reconciliations": "Reconciliations with Smile's records, by trigger (stall, "
    "operator) and outcome (new_facts, no_change, user_not_found, failed)",
}


class OnboardingMetrics:
    """One workflow instance's counters, created on first use and kept bound to their
    attributes, so that a repeated count is one call."""

    def __init__(self) -> None:
        self._bound: dict[tuple[str, tuple[tuple[str, str], ...]], MetricCounter] = {}

    def count(self, name: str, attributes: dict[str, str] | None = None) -> None:
        key = (name, tuple(sorted(attributes.items())) if attributes else ())
        counter = self._bound.get(key)
        if counter is None:
            counter = workflow.metric_meter().create_counter(name, COUNTERS[name])
            if attributes:
                counter = counter.with_additional_attributes(attributes)
            self._bound[key] = counter
        counter.add(1)
