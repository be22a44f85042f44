"""Replay the recorded histories of representative journeys against today's workflow code: a
change that would break running onboardings fails here (use ``workflow.patched`` instead)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.onboarding import OnboardingWorkflow

HISTORIES = sorted((Path(__file__).parents[1] / "fixtures" / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "happy_path",
        "stall_progress_cancel",
        "uploads_then_expiry",
        "continue_as_new",
        "notices",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[OnboardingWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
