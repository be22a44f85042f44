"""Replay the recorded histories of representative journeys against today's workflow code: a
change that would break running onboardings fails here (use ``workflow.patched`` instead)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from onboarding.core.models import NoticeType
from tests.conftest import TEST_CONVERTER  # with the codec: old plain payloads pass through
from workflows.bulk import BulkOperationWorkflow
from workflows.create_user import CreateSmileUserWorkflow
from workflows.defaults import DefaultsWorkflow
from workflows.onboarding import OnboardingWorkflow

# Every workflow the worker runs: each recorded history names its own type.
WORKFLOWS = [OnboardingWorkflow, CreateSmileUserWorkflow, DefaultsWorkflow, BulkOperationWorkflow]

HISTORIES = sorted((Path(__file__).parents[1] / "fixtures" / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "happy_path",
        "stall_progress_cancel",
        "uploads_then_expiry",
        "continue_as_new",
        "notices",
        "bulk_timeouts",
        "defaults_change",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


@pytest.mark.parametrize("name", ["happy_path", "stall_reconcile_unstall", "continue_as_new"])
async def test_a_history_from_before_notices_replays_even_with_notices_asked_for(
    name: str,
) -> None:
    """A rolling deploy: the API (new code) started an onboarding with notices on, and a worker
    from before notices ran it, ignoring the option. New workers must replay that history
    without notices (``workflow.patched``), not fail it as non-deterministic."""
    path = next(p for p in HISTORIES if p.stem == name)
    recorded = json.loads(path.read_text())
    started = recorded["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    argument = json.loads(base64.b64decode(payload["data"]))
    assert "notices" not in argument["options"]  # recorded before notices existed
    argument["options"]["notices"] = [t.value for t in NoticeType]
    payload["data"] = base64.b64encode(json.dumps(argument).encode()).decode()
    history = WorkflowHistory.from_json(f"replay-{name}-notices-on", json.dumps(recorded))
    replayer = Replayer(workflows=[OnboardingWorkflow], data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
