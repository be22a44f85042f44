"""The chaos scenarios. Each starts its own service (real processes, see :mod:`.cluster`), sends
a Smile-like load at it, strikes mid-load, lets it recover, reads every user back and returns a
:class:`~onboarding.tooling.chaos.accounting.ChaosResult`. Durations are parameters, so CI runs
them in seconds and ``bench/chaos.py`` in minutes.

1. :func:`worker_kill`: ``kill -9`` of the worker mid-load, restarted after a pause;
2. :func:`temporal_kill`: ``kill -9`` of the Temporal dev server mid-load, restarted on the same
   SQLite file;
3. :func:`temporal_outage`: Temporal unreachable (stopped, or frozen: a hung server) for longer
   than the sender's retries, while the sender keeps sending;
4. :func:`api_kill`: Temporal frozen, so the API spools; then ``kill -9`` of the API while a
   request is in flight, a restart on the same data dir while Temporal is still frozen, and
   Temporal thawed: the restarted API's drainer delivers what the dead one spooled (a restart
   with a non-empty spool);
5. :func:`replicas_kill`: two workers and two APIs sharing one spool (SQLite file or
   PostgreSQL); Temporal hangs for a while and one API is killed during it, mid-request, with
   events of its own in the spool; after the thaw, while work flows again, one worker is
   killed. Both stay dead: the survivors take everything, the dead API's spooled events
   included (whether it held leases at its death is read from the spool and recorded)."""

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
from onboarding.tooling.chaos.processes import ApiProcess
from onboarding.tooling.chaos.sender import Sender, SenderConfig
from onboarding.tooling.chaos.spoolview import read_spool

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
    duplicate_rate: float = 0.1  # about this share of the events is delivered twice on purpose,
    duplicate_every: int = 3  # all of them every third user's (the others' are sent once each)
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
    facts: dict[str, int] = field(default_factory=dict)  # measured at the strike, by name

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
            duplicate_every=settings.duplicate_every,
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
        await _wait_drained(cluster, timeline, within=settings.settle_timeout)
        seconds = time.monotonic() - timeline.started
        result = count(name, plan, sender, views, seconds, timeline.notes, timeline.facts)
    say(result.summary())
    return result


async def _wait_drained(cluster: Cluster, timeline: Timeline, *, within: float) -> None:
    """Until every spool is empty (a drainer removes an event only once Temporal has it), or
    the deadline; records ``spool_rows_at_end``. An event applied through another way (an
    on-purpose duplicate) may still wait there for its drainer's next try."""
    locations = sorted({api.spool_location for api in cluster.apis})
    deadline = time.monotonic() + within
    while True:
        rows = 0
        for location in locations:
            rows += (await read_spool(location, None)).rows
        if rows == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)  # polling interval; the deadline above bounds the wait
    timeline.facts["spool_rows_at_end"] = rows
    timeline.note("every spool empty" if rows == 0 else f"{rows} event(s) still spooled")


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


async def _kill_api_mid_request(
    sender: Sender, timeline: Timeline, api: ApiProcess, *, within: float
) -> float:
    """``kill -9`` of ``api`` as soon as a request has been in flight to it for 50 ms (one
    waiting for Temporal, most likely), or failing that any request it has started on; then a
    look at its spool. Records ``caught_in_flight`` (1: a request was in flight at the kill),
    ``spooled_by_killed_api`` (events it had answered ``spooled``), ``spool_rows_at_kill`` and
    ``leased_by_killed_api`` (rows of the spool, and those under a live lease of its drainer,
    read right after the kill). Returns the moment of the kill (monotonic)."""
    caught = await sender.wait_in_flight(api.url, older_than=0.05, within=within)
    caught = caught or await sender.wait_in_flight(api.url, within=within)
    pid = api.pid
    killed_at = time.monotonic()
    await api.kill9()
    snapshot = await read_spool(api.spool_location, pid)
    spooled = sender.acknowledged_by(api.url, "spooled", finished_before=killed_at)
    timeline.facts.update(
        caught_in_flight=int(caught),
        spooled_by_killed_api=len(spooled),
        spool_rows_at_kill=snapshot.rows,
        leased_by_killed_api=snapshot.leased_by,
    )
    timeline.note(
        f"kill -9 {api.name} " + ("mid-request" if caught else "(no request seen in flight)")
        + f"; it had answered {len(spooled)} event(s) 'spooled'; the spool holds "
        f"{snapshot.rows} event(s), {snapshot.leased_by} under a live lease of {api.name}"
        f"{'' if snapshot.leased_by else ' (its drainer held none)'}"
    )  # fmt: skip
    return killed_at


def _note_cut_off(sender: Sender, timeline: Timeline, api: ApiProcess, killed_at: float) -> None:
    """Once the requests to the killed API have ended: how many the kill broke off."""
    cut = len(sender.cut_off(api.url, killed_at))
    timeline.facts["requests_cut_by_kill"] = cut
    timeline.note(f"{cut} request(s) in flight to {api.name} cut off by the kill")


async def api_kill(
    settings: ChaosSettings, *, down_seconds: float = 0.0, thaw_after: float = 3.0, at: float = 0.4
) -> ChaosResult:
    """A restart with a non-empty spool, with real processes. Once ``at`` of the load is sent,
    Temporal is frozen (SIGSTOP), so the API spools what it cannot signal; once it has answered
    an event ``spooled``, it is killed with ``kill -9`` while a webhook is in flight to it
    (most likely one waiting for Temporal), restarted on the same data dir, and so the same
    SQLite spool, ``down_seconds`` later while Temporal is still frozen; Temporal is thawed
    ``thaw_after`` seconds after the restart (meanwhile the restarted API spools too). The
    restarted API's drainer must deliver what the dead one spooled. Nothing acknowledged may be
    lost; what was cut off or refused meanwhile is retried by the sender, whose retries must
    outlast the restart."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        api, temporal = cluster.apis[0], cluster.temporal
        temporal.freeze()
        frozen_at = time.monotonic()
        timeline.note("temporal frozen (SIGSTOP): the API spools what it cannot signal")
        within = settings.ingest_timeout + settings.request_timeout + 20.0
        if await sender.wait_acknowledged(api.url, "spooled", after=frozen_at, within=within):
            timeline.note(f"{api.name} answered an event 'spooled'")
        killed_at = await _kill_api_mid_request(sender, timeline, api, within=5.0)
        await _pause(down_seconds)
        await api.start()
        await api.wait_ready()
        timeline.note(f"{api.name} restarted on the same data dir (Temporal still frozen)")
        await _pause(thaw_after)
        temporal.thaw()
        timeline.note("temporal thawed (SIGCONT)")
        await temporal.wait_ready()
        timeline.note("temporal answering")
        _note_cut_off(sender, timeline, api, killed_at)

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
    at: float = 0.2,
    flowing_within: float = 20.0,
) -> ChaosResult:
    """Two workers and two APIs on one Temporal server, both APIs on one spool: ``spool_url``
    (e.g. a PostgreSQL database), or by default one SQLite file in the work dir. From ``at`` of
    the load, Temporal is away for ``outage_seconds`` (frozen by default), so both APIs spool.
    Halfway through, ``api-1`` is killed with ``kill -9`` while a request is in flight to it,
    with events it spooled in the shared spool; whether its drainer held leases then is read
    from the spool and recorded. Once Temporal is back and the survivor signals directly again
    (``flowing_within`` seconds at most), while the load goes on, ``worker-1`` is killed with
    ``kill -9``. Both stay dead. The sender alternates its attempts between the APIs, so a
    retry reaches the survivor, which must also deliver what the dead API spooled; the other
    worker takes every workflow."""

    async def fault(cluster: Cluster, sender: Sender, timeline: Timeline) -> None:
        await sender.wait_progress(at)
        (api, survivor), worker = cluster.apis, cluster.workers[0]
        killed_at = 0.0

        async def kill_api() -> None:
            nonlocal killed_at
            killed_at = await _kill_api_mid_request(
                sender, timeline, api, within=min(2.0, outage_seconds / 4)
            )

        await _outage(cluster, timeline, outage_seconds, outage_mode, during=kill_api)
        back = time.monotonic()
        flowing = await sender.wait_acknowledged(
            survivor.url, "signalled", after=back, within=flowing_within
        )
        await worker.kill9()
        left = len(sender.plan.deliveries) - sender.started_deliveries
        snapshot = await read_spool(api.spool_location, None)
        timeline.facts.update(
            worker_killed_while_signalling=int(flowing), deliveries_left_at_worker_kill=left
        )
        timeline.note(
            f"kill -9 {worker.name} after the thaw, "
            + (f"{survivor.name} signalling directly again" if flowing
               else f"no direct signal from {survivor.name} yet")
            + f", {left} deliveries still to start, {snapshot.rows} event(s) still spooled; "
            f"{api.name} and {worker.name} stay dead"
        )  # fmt: skip
        _note_cut_off(sender, timeline, api, killed_at)

    with _work_dir(settings.work_dir) as work_dir:
        url = spool_url or f"sqlite:///{(work_dir / 'shared-spool.sqlite3').resolve()}"
        label = spool_label or ("SQLite" if spool_url is None else "shared")
        config = _base_config(settings, workers=2, apis=2, spool_url=url)
        return await run_scenario(f"5 replicas, {label} spool", settings, config, fault, work_dir)


SCENARIOS: dict[int, str] = {
    1: "worker kill -9",
    2: "Temporal kill -9",
    3: "Temporal unreachable longer than the sender's retries",
    4: "API kill -9 mid-request with a non-empty spool, restarted on it",
    5: "two workers and two APIs on one shared spool, one API killed during an outage and "
    "one worker after it",
}
