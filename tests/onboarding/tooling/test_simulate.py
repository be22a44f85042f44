"""The simulation against the real app over real HTTP (uvicorn), a real dev server and worker,
and the Smile stand-in: every journey kind ends where it should."""

from __future__ import annotations

from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.service.settings import Settings
from onboarding.tooling.serving import serving
from onboarding.tooling.simulate import (
    EXPECTED,
    NEEDS_STANDIN,
    SimulationConfig,
    _iso,
    plan,
    report,
    simulate,
)
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, Standin, free_port
from tests.smile_samples import BASE_TIME


def test_plan_covers_every_journey_and_is_reproducible() -> None:
    kinds = [run.kind for run in plan(12, seed=7)]
    assert sorted(set(kinds)) == sorted(EXPECTED)
    assert kinds == [run.kind for run in plan(12, seed=7)]


def test_plan_leaves_out_the_kinds_not_playable() -> None:
    playable = [k for k in EXPECTED if k not in NEEDS_STANDIN]
    kinds = {run.kind for run in plan(30, seed=7, kinds=playable)}
    assert kinds == set(playable)


def test_created_at_has_smiles_one_second_precision() -> None:
    assert _iso(BASE_TIME.replace(microsecond=123_456)) == "2021-04-14T09:30:24Z"


def _config(port: int, users: int, standin_url: str | None) -> SimulationConfig:
    return SimulationConfig(
        api_url=f"http://127.0.0.1:{port}",
        admin_token=ADMIN_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        users=users,
        concurrency=8,
        seed=3,
        stall_after=1.0,
        settle_timeout=30.0,
        standin_url=standin_url,
    )


async def test_simulated_users_end_where_their_journeys_say(
    api_settings: Settings,
    dev_env: WorkflowEnvironment,
    dev_worker: None,
    shared_standin: Standin,
) -> None:
    port = free_port()
    console = Console(record=True, width=120)
    async with serving(create_app(api_settings, dev_env.client), "127.0.0.1", port):
        config = _config(port, len(EXPECTED) + 5, shared_standin.base_url)
        result = await simulate(config, console)
    report(result, console)
    text = console.export_text()
    assert result.mismatches == 0, text
    assert {run.kind for run in result.runs} == set(EXPECTED)
    assert all(run.error is None and run.problem is None for run in result.runs), text
    assert result.skipped == {}
    assert "mismatches: 0" in text


async def test_without_a_standin_the_healed_journeys_are_skipped_saying_why(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None
) -> None:
    port = free_port()
    console = Console(record=True, width=200)
    async with serving(create_app(api_settings, dev_env.client), "127.0.0.1", port):
        result = await simulate(_config(port, 3, None), console)
    report(result, console)
    text = console.export_text()
    assert set(result.skipped) == set(NEEDS_STANDIN) == {"healed"}
    assert "skipping the 'healed' journeys: needs the Smile stand-in" in text
    assert not {run.kind for run in result.runs} & NEEDS_STANDIN
    assert result.mismatches == 0, text
