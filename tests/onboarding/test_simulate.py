"""The simulation against the real app over real HTTP (uvicorn), a real dev server and worker,
and the Smile stand-in: every journey kind ends where it should."""

from __future__ import annotations

from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.serving import serving
from onboarding.settings import Settings
from onboarding.simulate import EXPECTED, SimulationConfig, plan, report, simulate
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, free_port


def test_plan_covers_every_journey_and_is_reproducible() -> None:
    kinds = [run.kind for run in plan(12, seed=7)]
    assert sorted(set(kinds)) == sorted(EXPECTED)
    assert kinds == [run.kind for run in plan(12, seed=7)]


async def test_simulated_users_end_where_their_journeys_say(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None
) -> None:
    port = free_port()
    console = Console(record=True, width=120)
    async with serving(create_app(api_settings, dev_env.client), "127.0.0.1", port):
        config = SimulationConfig(
            api_url=f"http://127.0.0.1:{port}",
            admin_token=ADMIN_TOKEN,
            webhook_secret=WEBHOOK_SECRET,
            users=12,
            concurrency=6,
            seed=3,
            stall_after=1.0,
            settle_timeout=30.0,
        )
        result = await simulate(config, console)
    report(result, console)
    text = console.export_text()
    assert result.mismatches == 0, text
    assert {run.kind for run in result.runs} == set(EXPECTED)
    assert all(run.error is None for run in result.runs), text
    assert "mismatches: 0" in text
