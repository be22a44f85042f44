"""Chaos at length: the scenarios of ``onboarding.tooling.chaos`` with Smile's own delivery
schedule (each webhook tried once and retried twice, 30 s apart, 10 s per request) and real
outages, against the service as real processes (Temporal dev server, ``onboarding worker``,
``onboarding api``), each scenario on its own fresh service.

    python bench/chaos.py [--scenarios 1,2,3,4,5] [--spool sqlite|postgres|both] [--users 40]
                          [--load-seconds 120] [--outage 300] [--outage-mode stop|freeze] ...

1. ``kill -9`` of the worker mid-load, restarted ``--worker-down`` seconds later;
2. ``kill -9`` of the Temporal dev server mid-load, restarted on the same SQLite file
   ``--temporal-down`` seconds later;
3. Temporal unreachable for ``--outage`` seconds (5 minutes by default: far beyond Smile's
   retries), stopped or frozen, while webhooks keep coming;
4. Temporal frozen, so the API spools; ``kill -9`` of the API while a webhook is in flight,
   restarted ``--api-down`` seconds later on the same data dir (a non-empty spool) while
   Temporal is still frozen; Temporal thawed ``--api-thaw-after`` seconds after the restart,
   and the restarted API drains what the dead one spooled;
5. two workers and two APIs on one shared spool (a SQLite file, PostgreSQL, or both): Temporal
   away for ``--replica-outage`` seconds and one API killed mid-request during it, then one
   worker killed after the thaw while work flows again; both for good.

Only every ``--duplicate-every``-th user's events are delivered twice on purpose (about
``--duplicate-rate`` of all events), so the other journeys are delivered once and a lost first
delivery cannot be repaired by a second; the summary on stderr counts the loss among the events
delivered once apart.

It prints a markdown table (scenario, events sent, acknowledged, spooled, applied, lost, given up,
mismatched journeys, duration) on stdout, the timeline of each scenario on stderr, and exits
non-zero if any acknowledged event was lost, any event was given up by the sender (with Smile,
lost as well) or any journey ended elsewhere than expected. ``--work-dir`` keeps every
process's log and Temporal's database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from onboarding.tooling.chaos import (
    SCENARIOS,
    ChaosResult,
    ChaosSettings,
    OutageMode,
    api_kill,
    replicas_kill,
    temporal_kill,
    temporal_outage,
    worker_kill,
)
from onboarding.tooling.pgcluster import PostgresCluster


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace, scenario: str) -> ChaosSettings:
    work_dir = args.work_dir / scenario if args.work_dir is not None else None
    return ChaosSettings(
        users=args.users,
        load_seconds=args.load_seconds,
        attempts=args.attempts,
        retry_delay=args.retry_delay,
        request_timeout=args.request_timeout,
        duplicate_rate=args.duplicate_rate,
        duplicate_every=args.duplicate_every,
        settle_timeout=args.settle_timeout,
        ingest_timeout=args.ingest_timeout,
        spool_lease=args.spool_lease,
        seed=args.seed,
        work_dir=work_dir,
        log=log,
    )


async def run(args: argparse.Namespace, postgres_url: str | None) -> list[ChaosResult]:
    results: list[ChaosResult] = []
    mode: OutageMode = args.outage_mode
    replica_mode: OutageMode = args.replica_outage_mode
    for number in args.scenarios:
        log(f"=== scenario {number}: {SCENARIOS[number]} ===")
        if number == 1:
            results.append(
                await worker_kill(settings_from(args, "1"), down_seconds=args.worker_down)
            )
        elif number == 2:
            results.append(
                await temporal_kill(settings_from(args, "2"), down_seconds=args.temporal_down)
            )
        elif number == 3:
            # The outage covers the middle 80% of the load: webhooks keep coming throughout.
            settings = settings_from(args, "3").with_(
                load_seconds=max(args.load_seconds, args.outage / 0.8)
            )
            results.append(
                await temporal_outage(settings, outage_seconds=args.outage, mode=mode, at=0.1)
            )
        elif number == 4:
            results.append(
                await api_kill(
                    settings_from(args, "4"),
                    down_seconds=args.api_down,
                    thaw_after=args.api_thaw_after,
                )
            )
        elif number == 5:
            # The outage covers 20% to 80% of the load: the worker dies while webhooks come.
            load = max(args.load_seconds, args.replica_outage / 0.6)
            if args.spool in ("sqlite", "both"):
                settings = settings_from(args, "5-sqlite").with_(load_seconds=load)
                results.append(
                    await replicas_kill(
                        settings,
                        outage_seconds=args.replica_outage,
                        outage_mode=replica_mode,
                        at=0.2,
                    )
                )
            if args.spool in ("postgres", "both"):
                assert postgres_url is not None
                settings = settings_from(args, "5-postgres").with_(load_seconds=load)
                results.append(
                    await replicas_kill(
                        settings,
                        spool_url=postgres_url,
                        spool_label="PostgreSQL",
                        outage_seconds=args.replica_outage,
                        outage_mode=replica_mode,
                        at=0.2,
                    )
                )
    return results


@contextlib.contextmanager
def postgres_database(needed: bool) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster and a fresh database for the shared spool, when needed."""
    if not needed:
        yield None
        return
    with PostgresCluster() as cluster:
        yield cluster.create_database(f"chaos_spool_{int(time.time())}")


def table(results: list[ChaosResult]) -> str:
    return "\n".join([ChaosResult.markdown_header(), *(r.markdown_row() for r in results)])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    needs_postgres = 5 in args.scenarios and args.spool in ("postgres", "both")
    with postgres_database(needs_postgres) as postgres_url:
        results = asyncio.run(run(args, postgres_url))
    print(table(results))
    bad = [r for r in results if r.lost or r.given_up or r.mismatched_journeys]
    for result in bad:
        log(f"FAILED: {result.summary()}")
    return 1 if bad else 0


def _scenarios(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,5, got {text!r}") from None
    unknown = sorted(set(numbers) - set(SCENARIOS))
    if unknown or not numbers:
        raise argparse.ArgumentTypeError(f"scenarios are {', '.join(map(str, SCENARIOS))}")
    return numbers


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--scenarios",
        type=_scenarios,
        default=_scenarios("1,2,3,4,5"),
        help="which to run, in this order (default 1,2,3,4,5)",
    )
    add(
        "--spool",
        choices=("sqlite", "postgres", "both"),
        default="both",
        help="the shared spool of scenario 5 (default both)",
    )
    add("--users", type=int, default=40, help="journeys per scenario (default 40)")
    add(
        "--load-seconds",
        type=float,
        default=120.0,
        help="the load's length; scenarios 3 and 5 stretch it to cover their outage",
    )
    add("--attempts", type=int, default=3, help="tries per webhook (Smile: 3)")
    add("--retry-delay", type=float, default=30.0, help="seconds between tries (Smile: ~30)")
    add("--request-timeout", type=float, default=10.0, help="per request (default 10)")
    add(
        "--duplicate-rate",
        type=float,
        default=0.1,
        help="share of the events delivered twice on purpose, about (default 0.1)",
    )
    add(
        "--duplicate-every",
        type=int,
        default=3,
        help="only every N-th user's events are delivered twice, the others once (default 3)",
    )
    add("--worker-down", type=float, default=10.0, help="scenario 1: seconds without a worker")
    add(
        "--temporal-down",
        type=float,
        default=5.0,
        help="scenario 2: seconds between the kill and the restart",
    )
    add("--outage", type=float, default=300.0, help="scenario 3: seconds without Temporal")
    add(
        "--outage-mode",
        choices=("stop", "freeze"),
        default="stop",
        help="scenario 3: stop Temporal (connections refused) or freeze it (SIGSTOP: "
        "connections accepted, never answered); default stop",
    )
    add(
        "--api-down",
        type=float,
        default=2.0,
        help="scenario 4: seconds between the kill and the restart (Temporal frozen meanwhile)",
    )
    add(
        "--api-thaw-after",
        type=float,
        default=5.0,
        help="scenario 4: seconds Temporal stays frozen after the API's restart (default 5)",
    )
    add(
        "--replica-outage",
        type=float,
        default=120.0,
        help="scenario 5: seconds Temporal is away; one API dies during it, one worker after",
    )
    add(
        "--replica-outage-mode",
        choices=("stop", "freeze"),
        default="freeze",
        help="scenario 5: how Temporal is away (default freeze: connections hang)",
    )
    add("--ingest-timeout", type=float, default=3.0, help="ONBOARDING_INGEST_TIMEOUT (default 3)")
    add("--spool-lease", type=float, default=3.0, help="ONBOARDING_SPOOL_LEASE (default 3)")
    add(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="after the load, how long every user may take to settle (default 600)",
    )
    add("--seed", type=int, default=1)
    add(
        "--work-dir",
        type=Path,
        default=None,
        help="keep logs, Temporal's database and the spools here (default: a temp dir, removed)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
