"""The chaos scenarios in their short form: the service as real processes (Temporal dev server,
``onboarding worker``, ``onboarding api``) killed, frozen and restarted under a Smile-like load
of signed webhooks, every user read back at the end. In every scenario every event must be
acknowledged within the sender's three tries (none given up: with Smile that would be a loss),
nothing acknowledged may be lost (among the events delivered once, too, which no on-purpose
duplicate can repair), and every journey must end where it should. ``bench/chaos.py`` runs the
same scenarios at length with Smile's own retry schedule.

Small loads and a sender that retries 2 s apart (Smile: 30 s); outages sized against that. The
time limits leave room for a busy two-core machine: the sender gives up a try after 4 s while
the API waits at most 1.5 s for Temporal before it spools."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from onboarding.tooling.chaos import (
    JOURNEYS,
    Attempt,
    ChaosResult,
    ChaosSettings,
    LoadPlan,
    Sender,
    SenderConfig,
    api_kill,
    count,
    plan_load,
    replicas_kill,
    temporal_kill,
    temporal_outage,
    worker_kill,
)
from onboarding.tooling.pgcluster import PostgresCluster

BENCH = Path(__file__).parents[2] / "bench" / "chaos.py"

pytestmark = pytest.mark.chaos

SHORT = ChaosSettings(
    users=12,
    load_seconds=8.0,
    # Smile's schedule shrunk about fivefold: three tries 2 s apart, each given up after 4 s
    # (Smile: 30 s and 10 s), so the sender gives up on an event within 16 s; the API waits
    # 1.5 s for Temporal before it spools (the default 3 s is meant for Smile's 10 s).
    retry_delay=2.0,
    request_timeout=4.0,
    ingest_timeout=1.5,
    spool_lease=3.0,  # a killed API's leases lapse soon
    settle_timeout=90.0,
    log=print,  # the timeline, shown when a test fails (no secrets in it)
)


def settings(tmp_path: Path, **changes: object) -> ChaosSettings:
    return SHORT.with_(work_dir=tmp_path / "chaos", **changes)


def check(result: ChaosResult, *, spooled: bool = False) -> None:
    summary = result.summary()
    assert result.events_sent == result.events_planned > 0, summary
    # An API answered every event within the sender's tries (Temporal's absence is the spool's
    # business): none given up, so every journey is complete and judged below.
    assert result.given_up == 0, summary
    assert result.acknowledged == result.events_sent, summary
    assert result.complete_journeys == result.journeys, summary
    assert result.lost == 0 and result.lost_once == 0, summary
    assert result.applied == result.acknowledged, summary
    assert result.acknowledged_once > 0, summary  # the once-delivered share is really there
    assert result.mismatched_journeys == 0, summary
    # Drained: what was spooled reached Temporal through a drainer, which then removed it.
    assert result.facts["spool_rows_at_end"] == 0, summary
    if spooled:  # the outage outlasted the sender's tries: only the spool kept those events
        assert result.spooled > 0, summary


def check_api_killed_mid_request(result: ChaosResult) -> None:
    """The kill struck a request the API was working on, and the API had events of its own in
    the spool then, which somebody else had to deliver."""
    summary = result.summary()
    assert result.facts["caught_in_flight"] == 1, summary
    assert result.facts["requests_cut_by_kill"] >= 1, summary
    assert result.facts["spooled_by_killed_api"] > 0, summary
    assert result.facts["spool_rows_at_kill"] > 0, summary


async def test_worker_killed_mid_load(tmp_path: Path) -> None:
    check(await worker_kill(settings(tmp_path), down_seconds=2.0))


async def test_temporal_killed_mid_load(tmp_path: Path) -> None:
    check(await temporal_kill(settings(tmp_path), down_seconds=1.0))


async def test_temporal_unreachable_longer_than_the_senders_retries(tmp_path: Path) -> None:
    """20 s without Temporal, longer than the sender's tries of one event (16 s at most), the
    sender sending throughout: only the API's spool keeps what arrives early in the outage, and
    delivers it once Temporal is back."""
    result = await temporal_outage(
        settings(tmp_path, load_seconds=24.0), outage_seconds=20.0, mode="stop", at=0.15
    )
    check(result, spooled=True)


async def test_api_killed_mid_request_with_a_non_empty_spool(tmp_path: Path) -> None:
    """Temporal frozen, so the API spools; the API killed mid-request, restarted on its data
    dir while Temporal is still frozen (3 s more), then Temporal thawed: the restarted API's
    drainer delivers what the dead one spooled. The sender's retries (5 s apart here) outlast the
    restart even on a busy machine, so nothing sent meanwhile is given up."""
    result = await api_kill(
        settings(tmp_path, load_seconds=12.0, retry_delay=5.0), down_seconds=0.5, at=0.3
    )
    check(result, spooled=True)
    check_api_killed_mid_request(result)


@pytest.fixture
def postgres_spool_url() -> Iterator[str]:
    with PostgresCluster() as cluster:
        yield cluster.create_database("chaos_spool")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_replicas_one_api_and_one_worker_killed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two of each on one spool; Temporal hangs (frozen) for 6 s and one API dies during it,
    mid-request, with events of its own in the spool; after the thaw, while webhooks still
    come, one worker dies. Both for good: the survivors deliver everything, the dead API's
    share too."""
    url = request.getfixturevalue("postgres_spool_url") if backend == "postgres" else None
    result = await replicas_kill(
        settings(tmp_path, load_seconds=18.0),
        spool_url=url,
        spool_label="PostgreSQL" if url else None,
        outage_seconds=6.0,
        outage_mode="freeze",
        at=0.2,
    )
    check(result, spooled=True)
    check_api_killed_mid_request(result)
    assert "leased_by_killed_api" in result.facts, result.summary()  # read, whatever it was
    # The worker died after the thaw, with Temporal taking signals again and webhooks coming.
    assert result.facts["worker_killed_while_signalling"] == 1, result.summary()
    assert result.facts["deliveries_left_at_worker_kill"] > 0, result.summary()


# --- the harness itself: it must see a loss when there is one -------------------------------


def test_the_load_plays_each_journey_in_order_at_a_steady_pace() -> None:
    plan = plan_load(9, 4.0, seed=3, duplicate_rate=0.5)
    assert {j.kind for j in plan.journeys} == set(JOURNEYS)
    for journey in plan.journeys:
        assert [e.type for e in journey.events] == list(JOURNEYS[journey.kind][0])
        times = [e.created_at for e in journey.events]
        assert times == sorted(times) and len(set(times)) == len(times)  # increasing
        for event in journey.events:
            envelope = json.loads(event.body)
            assert envelope["id"] == event.event_id
            assert envelope["data"]["userId"] == journey.user_id
            assert datetime.fromisoformat(envelope["createdAt"]) == event.created_at
    firsts = [d for d in plan.deliveries if not d.duplicate]
    assert len(firsts) == len(plan.events)
    assert 0 < sum(d.duplicate for d in plan.deliveries) < len(plan.events)
    assert [d.at for d in plan.deliveries] == sorted(d.at for d in plan.deliveries)
    assert plan.deliveries[-1].at <= 4.0
    # Only every third user's events are sent twice; the others' journeys once each.
    twice = plan.delivered_twice()
    assert [j.duplicated for j in plan.journeys] == [u % 3 == 1 for u in range(9)]
    for journey in plan.journeys:
        if not journey.duplicated:
            assert not twice & {e.event_id for e in journey.events}
    assert twice <= {e.event_id for j in plan.journeys if j.duplicated for e in j.events}


def _acknowledge(sender: Sender, plan: LoadPlan, outcome: str = "signalled") -> None:
    for event in plan.events:
        attempt = Attempt("http://api", 0.0, 0.1, 202, outcome)
        sender.ledger[event.event_id].attempts.append(attempt)


def _view(journey_events: list[Any], stage: str, status: str) -> dict[str, Any]:
    return {
        "stage": stage,
        "status": status,
        "events": [{"id": e.event_id, "source": "webhook"} for e in journey_events],
    }


def test_the_accounting_counts_lost_events_and_mismatched_journeys() -> None:
    plan = plan_load(4, 1.0, seed=5, duplicate_rate=0.0)
    sender = Sender(SenderConfig(["http://api"], "secret"), plan)
    _acknowledge(sender, plan)
    views: dict[str, dict[str, Any] | None] = {
        j.user_id: _view(list(j.events), *j.expected) for j in plan.journeys
    }
    whole = count("all applied", plan, sender, views, 1.0)
    assert (whole.acknowledged, whole.applied, whole.lost, whole.mismatched_journeys) == (
        len(plan.events), len(plan.events), 0, 0,
    )  # fmt: skip
    first, second = plan.journeys[0], plan.journeys[1]
    views[first.user_id] = _view(list(first.events[:-1]), *first.expected)  # one lost
    views[second.user_id] = _view(list(second.events), "connected", "stalled")
    broken = count("broken", plan, sender, views, 1.0)
    assert broken.lost == 1 and broken.applied == len(plan.events) - 1
    assert broken.lost_once == 1 and broken.acknowledged_once == len(plan.events)
    assert broken.mismatched_journeys == 1
    assert first.events[-1].event_id in broken.lost_events[0]
    assert broken.markdown_row().startswith("| broken | ")


def test_a_loss_among_the_events_delivered_once_is_counted_apart() -> None:
    plan = plan_load(3, 1.0, seed=5, duplicate_rate=1.0, duplicate_every=3)
    once, twice = plan.journeys[0], plan.journeys[1]
    assert not once.duplicated and twice.duplicated
    assert {e.event_id for e in twice.events} == plan.delivered_twice()
    sender = Sender(SenderConfig(["http://api"], "secret"), plan)
    _acknowledge(sender, plan)
    views: dict[str, dict[str, Any] | None] = {
        j.user_id: _view(list(j.events), *j.expected) for j in plan.journeys
    }
    views[twice.user_id] = _view(list(twice.events[1:]), *twice.expected)
    duplicated_loss = count("lost, sent twice", plan, sender, views, 1.0)
    assert (duplicated_loss.lost, duplicated_loss.lost_once) == (1, 0)
    assert duplicated_loss.acknowledged_once == len(plan.events) - len(twice.events)
    views[once.user_id] = _view(list(once.events[:-1]), *once.expected)
    both = count("lost, sent once too", plan, sender, views, 1.0)
    assert (both.lost, both.lost_once) == (2, 1)
    assert "delivered once" in both.summary() and "1 of the" in both.summary()


def test_an_event_never_acknowledged_is_given_up_not_lost() -> None:
    plan = plan_load(1, 1.0, seed=7, duplicate_rate=0.0)
    sender = Sender(SenderConfig(["http://api"], "secret"), plan)
    _acknowledge(sender, plan, outcome="spooled")
    refused = sender.ledger[plan.events[0].event_id]
    refused.attempts[:] = [Attempt("http://api", 0.0, 0.1, 503), Attempt("http://api", 1.0, None,
                           None, None, "ConnectError")]  # fmt: skip
    journey = plan.journeys[0]
    views: dict[str, dict[str, Any] | None] = {
        journey.user_id: _view(list(journey.events[1:]), "created", "active")
    }
    result = count("refused", plan, sender, views, 1.0)
    assert (result.given_up, result.lost, result.spooled) == (1, 0, len(plan.events) - 1)
    assert result.complete_journeys == 0 and result.mismatched_journeys == 0
    assert result.errors == {"HTTP 503": 1, "ConnectError": 1}


def test_the_long_form_script_runs_and_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--scenarios", "4", "--users", "3", "--load-seconds", "3",
         "--retry-delay", "5", "--request-timeout", "4", "--ingest-timeout", "1.5",
         "--api-down", "0.2", "--api-thaw-after", "2", "--settle-timeout", "60",
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, cwd=BENCH.parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    header, _, row = result.stdout.strip().splitlines()
    assert header.startswith("| scenario | events sent | acknowledged |")
    assert row.startswith("| 4 API kill -9 | ")
    assert (tmp_path / "4" / "logs" / "api-1.log").is_file()
