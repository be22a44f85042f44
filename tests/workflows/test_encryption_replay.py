"""Recorded histories replay with the codec-bearing converter: as recorded (payloads from
before encryption pass through), and with every payload encrypted as the codec writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from onboarding.core.encryption_keys import new_key
from onboarding.service.codec import codec_from_keys
from onboarding.service.temporal import data_converter
from tests.conftest import ENCRYPTION_KEY, TEST_CONVERTER
from tests.workflows.test_encryption import PATCH_MARKER, UNENCRYPTABLE, payloads_in
from tests.workflows.test_replay import WORKFLOWS
from workflows.onboarding import OnboardingWorkflow

HISTORIES = sorted((Path(__file__).parents[1] / "fixtures" / "histories").glob("*.json"))


def encrypted_copy(path: Path) -> WorkflowHistory:
    history = WorkflowHistory.from_json(f"encrypted-{path.stem}", path.read_text())
    codec = codec_from_keys([ENCRYPTION_KEY])
    for event in history.events:
        if event.marker_recorded_event_attributes.marker_name == PATCH_MARKER:
            continue
        for payload in payloads_in(event, skip=UNENCRYPTABLE):
            if payload.metadata.get("encoding") == b"binary/encrypted":
                continue  # recorded with the tests' codec already
            (sealed,) = codec.encode_sync([payload])
            payload.CopyFrom(sealed)
    return history


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_an_encrypted_history_replays(path: Path) -> None:
    history = encrypted_copy(path)
    assert any(
        p.metadata.get("encoding") == b"binary/encrypted"
        for e in history.events
        for p in payloads_in(e)
    )
    replayer = Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_without_its_key_an_encrypted_history_does_not_replay() -> None:
    history = encrypted_copy(HISTORIES[0])
    other = data_converter(codec_from_keys([new_key("another")]))
    replayer = Replayer(workflows=[OnboardingWorkflow], data_converter=other)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
