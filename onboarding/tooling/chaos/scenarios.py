"""The chaos scenarios. Each starts its own service (real processes, see :mod:`.cluster`), sends
a Smile-like load at it, strikes mid-load, lets it recover, reads every user back and returns a
:class:`~onboarding.tooling.chaos.accounting.ChaosResult`. Durations are parameters, so CI runs
them in seconds and ``bench/chaos.py`` in minutes.

1. :func:`worker_kill`: ``kill -9`` of the worker mid-load, restarted after a pause;
2. :func:`temporal_kill`: ``kill -9`` of the Temporal dev server mid-load, restarted on the same
   SQLite file;
3. :func:`temporal_outage`: Temporal unreachable (stopped, or frozen: a hung server) for longer
   than the sender's retries, while the sender keeps sending;
4. :func:`api_kill`: ``kill -9`` of the API while a request is in flight, restarted on the same
   data dir (its spool);
5. :func:`replicas_kill`: two workers and two APIs sharing one spool (SQLite file or
   PostgreSQL); Temporal hangs for a while and one API and one worker are killed during it
   and stay dead: the survivors take everything, the killed API's spooled (and leased) events
   included."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from onboarding.tooling.chaos.accounting import ChaosResult, count, settle
from onboarding.tooling.chaos.cluster import Cluster, ClusterConfig, running_cluster
from onboarding.tooling.chaos.journeys import LoadPlan, plan_load
from onboarding.tooling.chaos.sender import Sender, SenderConfig

OutageMode = Literal["stop", "freeze"]


@dataclass(frozen=True)
class ChaosSettings:
    """The load and the sender, shared by every scenario. Defaults are Smile's (retries 30 s
    apart, 10 s per request); CI shortens them."""

    users: int = 20
    load_seconds: float = 30.0  # the deliveries are spread evenly over this
    attempts: int = 3  # Smile: one try and two retries
    retry_delay: float = 30.0  # Smile: about 30 s
    request_timeout: float = 10.0  # like Smile's
    duplicate_rate: float = 0.1  # events delivered twice on purpose
    settle_timeout: float = 120.0  # after the load, how long every user may take to settle
    ingest_timeout: float = 3.0  # ONBOARDING_INGEST_TIMEOUT
    spool_lease: float = 3.0  # ONBOARDING_SPOOL_LEASE (short: leases of a killed API lapse soon)
    seed: int = 1
    work_dir: Path | None = None  # logs, Temporal's file, the spools; None: a temp dir, removed
    log: Callable[[str], None] | None = None  # progress lines (never a secret)

    def with_(self, **changes: object) -> ChaosSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class Timeline:
    """What the scenario did and when, in seconds since the load started."""

    log: Callable[[str], None] | None
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        line = f"t={time.monotonic() - self.started:5.1f}s {text}"
        self.notes.append(line)
        if self.log is not None:
            self.log(line)


Fault = Callable[[Cluster, Sender, Timeline], Coroutine[Any, Any, None]]


@contextlib.contextmanager
def _work_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="chaos-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


async def run_scenario(
    name: str,
    settings: ChaosSettings,
    cluster_config: ClusterConfig,
    fault: Fault,
    work_dir: Path,
) -> ChaosResult:
    """Start the service, send the load while ``fault`` strikes, let it settle, count."""
    say = settings.log or (lambda _: None)
    say(f"{name}: starting Temporal, {cluster_config.workers} worker(s), "
        f"{cluster_config.apis} API(s) in {work_dir}")  # fmt: skip
    async with running_cluster(work_dir, cluster_config) as cluster:
        plan: LoadPlan = plan_load(
            settings.users,
            settings.load_seconds,
            seed=settings.seed,
            duplicate_rate=settings.duplicate_rate,
        )
        sender = Sender(
            SenderConfig(
                cluster.api_urls,
                cluster.secrets.webhook_secret,
                attempts=settings.attempts,
                retry_delay=settings.retry_delay,
                timeout=settings.request_timeout,
            ),
            plan,
        )
        timeline = Timeline(settings.log)
        timeline.note(
            f"load: {len(plan.events)} events ({len(plan.deliveries)} deliveries) for "
            f"{len(plan.journeys)} users over {plan.seconds:g}s"
        )
        sending = asyncio.create_task(sender.run(), name="chaos-sender")
        striking = asyncio.create_task(fault(cluster, sender, timeline), name="chaos-fault")
        try:
            await asyncio.gather(sending, striking)
        finally:
            for task in (sending, striking):
                task.cancel()
            await asyncio.gather(sending, striking, return_exceptions=True)
        timeline.note("load done; every delivery acknowledged or given up")
        views = await settle(
            plan,
            sender,
            cluster.live_api_urls(),
            cluster.secrets.admin_token,
            within=settings.settle_timeout,
        )
        timeline.note("read back")
        seconds = time.monotonic() - timeline.started
        result = count(name, plan, sender, views, seconds, timeline.notes)
    say(result.summary())
    return result


def _base_config(settings: ChaosSettings, **changes: object) -> ClusterConfig:
    config = ClusterConfig(ingest_timeout=settings.ingest_timeout, spool_lease=settings.spool_lease)
    return replace(config, **changes)  # type: ignore[arg-type]


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)  # the length of the outage itself, not a wait for work


# --- 1 ------------------------------------------------------------------------------------------


async def worker_kill(
    settings: ChaosSettings, *, down_seconds: float = 5.0, at: float = 0.4
) -> ChaosResult:
    """``kill -9`` of the worker once ``at`` of the load is sent; restarted ``down_seconds``
    later. Acknowledged events wait in Temporal meanwhile."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        worker = cluster.workers[0]
        await worker.kill9()
        timeline.note(f"kill -9 {worker.name}")
        await _pause(down_seconds)
        await worker.start()
        await worker.wait_ready()
        timeline.note(f"{worker.name} restarted and polling")

    with _work_dir(settings.work_dir) as work_dir:
        return await run_scenario(
            "1 worker kill -9", settings, _base_config(settings), fault, work_dir
        )


# --- 2 ------------------------------------------------------------------------------------------


async def temporal_kill(
    settings: ChaosSettings, *, down_seconds: float = 0.0, at: float = 0.4
) -> ChaosResult:
    """``kill -9`` of the Temporal dev server once ``at`` of the load is sent; restarted on the
    same SQLite file ``down_seconds`` later."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        await cluster.temporal.kill9()
        timeline.note("kill -9 temporal")
        await _pause(down_seconds)
        await cluster.temporal.start()
        await cluster.temporal.wait_ready()
        timeline.note("temporal restarted on the same database file, answering")

    with _work_dir(settings.work_dir) as work_dir:
        return await run_scenario(
            "2 Temporal kill -9", settings, _base_config(settings), fault, work_dir
        )


# --- 3 ------------------------------------------------------------------------------------------


async def temporal_outage(
    settings: ChaosSettings,
    *,
    outage_seconds: float = 300.0,
    mode: OutageMode = "stop",
    at: float = 0.2,
) -> ChaosResult:
    """Temporal unreachable for ``outage_seconds`` from ``at`` of the load on, while the sender
    keeps sending: ``stop`` (SIGTERM, then started again on the same file: connections refused)
    or ``freeze`` (SIGSTOP/SIGCONT: connections accepted, never answered). Longer than the
    sender's retries, so only the API's spool keeps the events sent meanwhile."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        await _outage(cluster, timeline, outage_seconds, mode)

    with _work_dir(settings.work_dir) as work_dir:
        return await run_scenario(
            f"3 Temporal {'frozen' if mode == 'freeze' else 'down'} {outage_seconds:g}s",
            settings,
            _base_config(settings),
            fault,
            work_dir,
        )


async def _outage(
    cluster: Cluster,
    timeline: Timeline,
    seconds: float,
    mode: OutageMode,
    during: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Temporal away for ``seconds``; ``during`` runs halfway through."""
    temporal = cluster.temporal
    if mode == "freeze":
        temporal.freeze()
        timeline.note("temporal frozen (SIGSTOP)")
    else:
        await temporal.terminate()
        timeline.note("temporal stopped (SIGTERM)")
    began = time.monotonic()
    if during is not None:
        await _pause(seconds / 2)
        await during()
    await _pause(seconds - (time.monotonic() - began))
    if mode == "freeze":
        temporal.thaw()
        timeline.note("temporal thawed (SIGCONT)")
    else:
        await temporal.start()
        timeline.note("temporal started again on the same database file")
    await temporal.wait_ready()
    timeline.note("temporal answering")


# --- 4 ------------------------------------------------------------------------------------------


async def api_kill(
    settings: ChaosSettings, *, down_seconds: float = 0.0, at: float = 0.4
) -> ChaosResult:
    """``kill -9`` of the API while a webhook is in flight to it (once ``at`` of the load is
    sent); restarted on the same data dir, and so the same spool, ``down_seconds`` later.
    Nothing acknowledged may be lost; what was cut off is retried by the sender."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        api = cluster.apis[0]
        caught = await sender.wait_in_flight(api.url)
        killed_at = time.monotonic()
        await api.kill9()
        timeline.note(f"kill -9 {api.name}" + (" mid-request" if caught else " (between requests)"))
        await _pause(down_seconds)
        await api.start()
        await api.wait_ready()
        timeline.note(f"{api.name} restarted on the same data dir, answering")
        cut = sum(
            1
            for a in sender.attempts()
            if a.url == api.url and a.started < killed_at and (a.finished or killed_at) >= killed_at
            and not a.acknowledged
        )  # fmt: skip
        timeline.note(f"{cut} request(s) in flight cut off by the kill")

    with _work_dir(settings.work_dir) as work_dir:
        return await run_scenario(
            "4 API kill -9", settings, _base_config(settings), fault, work_dir
        )


# --- 5 ------------------------------------------------------------------------------------------


async def replicas_kill(
    settings: ChaosSettings,
    *,
    spool_url: str | None = None,
    spool_label: str | None = None,
    outage_seconds: float = 10.0,
    outage_mode: OutageMode = "freeze",
    at: float = 0.3,
) -> ChaosResult:
    """Two workers and two APIs on one Temporal server, both APIs on one spool: ``spool_url``
    (e.g. a PostgreSQL database), or by default one SQLite file in the work dir. From ``at`` of
    the load, Temporal is away for ``outage_seconds`` (frozen by default, so the APIs spool and
    a drainer may be holding leases); halfway through, ``api-1`` (while a request is in flight
    to it) and ``worker-1`` are killed with ``kill -9`` and stay dead. The sender alternates its
    attempts between the APIs, so a retry reaches the survivor, which must also deliver what
    the dead API spooled once its leases lapse."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        api, worker = cluster.apis[0], cluster.workers[0]

        async def kill_one_of_each() -> None:
            caught = await sender.wait_in_flight(api.url, within=min(2.0, outage_seconds / 4))
            await api.kill9()
            await worker.kill9()
            timeline.note(
                f"kill -9 {api.name}{' mid-request' if caught else ''} and {worker.name}; "
                "they stay dead"
            )

        await _outage(cluster, timeline, outage_seconds, outage_mode, during=kill_one_of_each)

    with _work_dir(settings.work_dir) as work_dir:
        url = spool_url or f"sqlite:///{(work_dir / 'shared-spool.sqlite3').resolve()}"
        label = spool_label or ("SQLite" if spool_url is None else "shared")
        config = _base_config(settings, workers=2, apis=2, spool_url=url)
        return await run_scenario(f"5 replicas, {label} spool", settings, config, fault, work_dir)


SCENARIOS: dict[int, str] = {
    1: "worker kill -9",
    2: "Temporal kill -9",
    3: "Temporal unreachable longer than the sender's retries",
    4: "API kill -9 mid-request",
    5: "two workers and two APIs on one shared spool, one of each killed",
}
