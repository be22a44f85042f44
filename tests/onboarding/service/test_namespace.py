"""The worker's start-up check that the namespace holds this version's search attributes."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from onboarding.service.namespace import missing_search_attributes
from onboarding.tooling.binaries import temporal_cli
from tests.conftest import TEST_CONVERTER
from workflows import search_attributes


async def test_a_namespace_with_every_attribute_lacks_nothing(dev_env: WorkflowEnvironment) -> None:
    assert await missing_search_attributes(dev_env.client) == []


async def test_a_namespace_from_the_previous_version_is_told_what_to_register() -> None:
    async with await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=(search_attributes.STAGE, search_attributes.STATUS),
    ) as older:
        assert await missing_search_attributes(older.client) == [
            "temporal operator search-attribute create "
            "--name OnboardingStageEnteredAt --type Datetime"
        ]
