"""Notices benchmark: what sending notices to the customer's backend costs, against the same
journeys with notices off, in the same run.

    python bench/notices.py [--users 200] [--rounds 2] [--concurrency 16] [--json]

One dev server (SQLite file, the same pragmas as ``onboarding dev``) and the Smile stand-in are
started for the whole run, plus a **receiver**: a small HTTP server in its own process standing
for the customer's backend, which verifies every notice with ``standardwebhooks``
(``Webhook(secret).verify``) and records its webhook-id, type, sequence, user and receive time.

Then R rounds, each with a run of each mode, the order alternating (off first, then on first,
...). Every run gets a fresh ``onboarding worker`` and ``onboarding api`` pair of its own, on a
task queue of its own; both modes get the same environment (``ONBOARDING_SETTLE_WINDOW=2s``, so
journeys end) except that **on** also sets ``ONBOARDING_NOTIFY_URL`` (the receiver) and
``ONBOARDING_NOTIFY_SECRET`` (a fresh ``whsec_`` one) on both processes. A run plays N simulated
users (``onboarding.tooling.simulate``'s journeys) at concurrency C: the kinds that reach
``data_ready`` and complete when the settle window ends, and the ``stalls`` kind, which stalls
(2 s) and is then cancelled through the API once Smile was asked (the stall is announced). It
waits until every onboarding has ended (a deadline bounds the wait) and the server and the
worker are quiet, then reads every workflow's history back.

Per mode it prints journeys/s (N over the time from the first request until the last workflow
closed, from the close events), the worker's CPU per journey (and every other process's), the
worker's peak RSS, history events and activities per journey; for **on**, the notices received,
verified, duplicates, out of order per user (a lower sequence after a higher one), missing
(scheduled by a workflow but never received), notices per journey by type, and the delivery
latency p50/p95: from the change (the body's ``timestamp``, the workflow's time when it issued
the notice) to receipt, and from the delivery activity's scheduling (its ``ActivityTaskScheduled``
event) to receipt. Then the ratios on/off of each round and their median. Each run also says
how many cores the rest of the machine used meanwhile (other agents, test suites) and whether
the service's source changed under it (each run starts its pair from the working tree). Figures
are printed, never asserted (``--json`` adds one JSON line at the end). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import mean, median
from typing import Any

import httpx
from history import event_type_name, until_quiet
from ingest import (  # beside this script, which Python puts first on sys.path
    ADMIN,
    CALLBACK,
    SECRET,
    SMILE_KEY,
    SMILE_SECRET,
    CpuMeter,
    code_under_test,
    peak_rss_mb,
    print_log_tails,
    spawn,
    wait_ready,
)
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

import workflows
from onboarding.core.identity import workflow_id_for
from onboarding.service.settings import new_notify_secret
from onboarding.tooling.devserver import TemporalDevServer
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.simulate import EXPECTED, SimulationConfig, UserRun, _Player, plan
from onboarding.tooling.smile_standin import create_standin_app

SETTLE_WINDOW = "2s"
# The journeys that end on their own (data_ready, then completed after the settle window), and
# the one that stalls (then cancelled by the benchmark).
ENDING_KINDS = [k for k, (stage, _) in EXPECTED.items() if stage == "data_ready"]
STALLING_KINDS = ["stalls"]
KINDS = ENDING_KINDS + STALLING_KINDS
NOTICE_ACTIVITY = "deliver_notice"
NOTICE_ACTIVITY_ID = re.compile(r"^notice-(\d+)\.(\d+)$")
CLOSE_EVENTS = frozenset(
    f"WorkflowExecution{end}"
    for end in ("Completed", "Failed", "Canceled", "Terminated", "TimedOut", "ContinuedAsNew")
)
console = Console(width=max(Console().width, 180))


# --- the receiver (its own process) ---------------------------------------------------------


def serve_receiver(port: int, out: Path) -> None:
    """The customer's backend: verify, record one JSON line per request, answer 204 (401 when
    the signature does not verify). The line is written before the answer, so a notice the
    worker saw delivered is in the file."""
    import uvicorn
    from standardwebhooks import Webhook, WebhookVerificationError

    webhook = Webhook(os.environ["BENCH_NOTIFY_SECRET"])
    log = out.open("a", buffering=1, encoding="utf-8")

    async def answer(send: Callable[[dict[str, Any]], Awaitable[None]], status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ready":
            await answer(send, 200)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        at = time.time()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        notice: Any = None
        try:
            notice = webhook.verify(body, headers)
            verified = True
        except (WebhookVerificationError, ValueError):
            verified = False
            with contextlib.suppress(ValueError):
                notice = json.loads(body)
        notice = notice if isinstance(notice, dict) else {}
        data = notice["data"] if isinstance(notice.get("data"), dict) else {}
        record = {
            "id": headers.get("webhook-id", ""),
            "type": notice.get("type", "?"),
            "user": data.get("userId", ""),
            "sequence": data.get("sequence", 0),
            "timestamp": notice.get("timestamp"),
            "at": at,
            "verified": verified,
        }
        log.write(json.dumps(record) + "\n")
        await answer(send, 204 if verified else 401)

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )


def spawn_receiver(port: int, out: Path, secret: str) -> subprocess.Popen[bytes]:
    with (out.parent / "receiver.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(port), str(out)],
            env={**os.environ, "BENCH_NOTIFY_SECRET": secret},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Receiver:
    process: subprocess.Popen[bytes]
    url: str
    out: Path

    @classmethod
    async def start(cls, workdir: Path, secret: str) -> Receiver:
        port = free_port()
        out = workdir / "notices.jsonl"
        out.touch()
        process = spawn_receiver(port, out, secret)
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if process.poll() is not None:
                    raise RuntimeError(f"the receiver exited with {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                        return cls(process, f"http://127.0.0.1:{port}/notices", out)
                await asyncio.sleep(0.1)
        raise RuntimeError("the receiver did not become ready")

    def records(self, users: set[str]) -> list[dict[str, Any]]:
        """What it got for these users, in arrival order."""
        lines = self.out.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r["user"] in users]


def source_fingerprint() -> str:
    """The service's code as the next worker and API will import it. Each run starts its own
    pair from the working tree, so an edit made meanwhile (by someone else) would make two runs
    measure different code: the fingerprint is taken around each run and compared."""
    root = Path(str(workflows.__file__)).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in ("workflows", "activities", "onboarding", "api"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process), from /proc/stat:
    less what the benchmark's own processes spent, it is what others used during a run."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


# --- the journeys -----------------------------------------------------------------------------


class Journey(_Player):
    """The simulator's player, with two changes for journeys that end: ``data_ready/active``
    is also reached when the settle window already completed it (a short window can pass
    between two polls), and a stalled user is cancelled once Smile was asked about the stall."""

    async def wait_for(self, run: UserRun, stage: str, status: str) -> None:
        deadline = time.monotonic() + self.config.settle_timeout
        while time.monotonic() < deadline:
            view = await self.state(run)
            if view["stage"] == stage and view["status"] in (status, completed_if(status)):
                return
            await asyncio.sleep(0.2)

    async def end_stall(self, run: UserRun) -> None:
        deadline = time.monotonic() + self.config.settle_timeout
        while time.monotonic() < deadline:
            if (await self.state(run))["reconcile"]["runs"] >= 1:
                break
            await asyncio.sleep(0.2)
        url = f"/onboardings/{run.user_id}/cancel"
        response = await self._post(run, url, json={"reason": "bench"}, headers=self.admin)
        if response.status_code != 200:
            raise RuntimeError(f"cancel refused: HTTP {response.status_code} {response.text}")


def completed_if(status: str) -> str:
    return "completed" if status == "active" else status


def journey_ok(run: UserRun) -> bool:
    if run.error is not None or run.actual is None or run.problem is not None:
        return False
    stage, status = EXPECTED[run.kind]
    return run.actual[0] == stage and run.actual[1] in (status, completed_if(status))


async def play(config: SimulationConfig) -> list[UserRun]:
    runs = plan(config.users, config.seed, KINDS)
    gate = asyncio.Semaphore(config.concurrency)
    limits = httpx.Limits(max_connections=config.concurrency * 2)
    async with httpx.AsyncClient(base_url=config.api_url, timeout=60, limits=limits) as http:

        async def one(index: int, run: UserRun) -> None:
            async with gate:
                player = Journey(http, config, random.Random(config.seed * 100_003 + index))  # noqa: S311
                try:
                    await player.play(run)
                    if run.kind in STALLING_KINDS:
                        await player.end_stall(run)
                except Exception as err:  # counted as a mismatch, never hidden
                    run.error = f"{type(err).__name__}: {err}"

        await asyncio.gather(*(one(i, run) for i, run in enumerate(runs)))
    return runs


# --- reading back -----------------------------------------------------------------------------


@dataclass
class Read:
    """One workflow's history, over every run of its chain."""

    events: Counter[str]
    activities: Counter[str]  # scheduled, by activity type
    closed_at: float | None  # epoch seconds of the close event; None while running
    scheduled: dict[int, float]  # notice sequence -> its first delivery's scheduling time


def epoch(event: Any) -> float:
    return float(event.event_time.ToNanoseconds()) / 1e9


async def read_history(client: Client, workflow_id: str) -> Read:
    read = Read(Counter(), Counter(), None, {})
    run_id: str | None = None
    latest = True
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        for event in history.events:
            name = event_type_name(event.event_type)
            read.events[name] += 1
            if name == "ActivityTaskScheduled":
                attributes = event.activity_task_scheduled_event_attributes
                read.activities[attributes.activity_type.name] += 1
                matched = NOTICE_ACTIVITY_ID.match(attributes.activity_id)
                if matched and matched.group(2) == "1":
                    read.scheduled[int(matched.group(1))] = epoch(event)
        last = history.events[-1]
        if latest and event_type_name(last.event_type) in CLOSE_EVENTS:
            read.closed_at = epoch(last)
        latest = False
        first = history.events[0].workflow_execution_started_event_attributes
        run_id = first.continued_execution_run_id or None
        if run_id is None:
            return read


async def read_all(client: Client, users: list[str], concurrency: int = 16) -> list[Read]:
    gate = asyncio.Semaphore(concurrency)

    async def one(user: str) -> Read:
        async with gate:
            return await read_history(client, workflow_id_for(user))

    return list(await asyncio.gather(*(one(u) for u in users)))


async def running(client: Client, task_queue: str) -> int:
    # Onboardings only: the defaults workflow on the same queue never ends (by design).
    query = (
        f"TaskQueue = '{task_queue}' AND WorkflowType = 'OnboardingWorkflow' "
        "AND ExecutionStatus = 'Running'"
    )
    return (await client.count_workflows(query)).count


async def until_ended(client: Client, task_queue: str, deadline: float) -> int:
    """Poll until no onboarding of the run is running, or the deadline; returns how many still
    run."""
    left = await running(client, task_queue)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        left = await running(client, task_queue)
    return left


# --- figures ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class NoticeFigures:
    requests: int  # everything the receiver got for this run's users
    verified: int
    unique: int  # distinct webhook-ids
    duplicates: int  # a webhook-id again
    out_of_order: int  # a lower sequence arriving after a higher one, for one user
    missing: int  # scheduled by a workflow, never received
    by_type: Counter[str]
    from_change_ms: list[float]  # body timestamp -> receipt
    from_schedule_ms: list[float]  # ActivityTaskScheduled -> receipt

    def as_json(self, journeys: int) -> dict[str, Any]:
        return {
            "received": self.requests,
            "verified": self.verified,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "missing": self.missing,
            "per_journey": round(self.unique / max(journeys, 1), 2),
            "by_type": dict(self.by_type),
            "latency_ms": {
                "from_change": {
                    "p50": round(pct(self.from_change_ms, 50), 1),
                    "p95": round(pct(self.from_change_ms, 95), 1),
                    "max": round(max(self.from_change_ms, default=float("nan")), 1),
                },
                "from_schedule": {
                    "p50": round(pct(self.from_schedule_ms, 50), 1),
                    "p95": round(pct(self.from_schedule_ms, 95), 1),
                    "max": round(max(self.from_schedule_ms, default=float("nan")), 1),
                },
            },
        }


def notice_figures(
    records: list[dict[str, Any]], users: list[str], reads: list[Read]
) -> NoticeFigures:
    seen: set[str] = set()
    highest: dict[str, int] = {}
    duplicates = out_of_order = 0
    by_type: Counter[str] = Counter()
    from_change: list[float] = []
    from_schedule: list[float] = []
    received: dict[str, set[int]] = {u: set() for u in users}
    scheduled = dict(zip(users, (r.scheduled for r in reads), strict=True))
    for record in records:
        if not record["verified"]:
            continue
        if record["id"] in seen:
            duplicates += 1
            continue
        seen.add(record["id"])
        user, sequence = record["user"], int(record["sequence"])
        if sequence < highest.get(user, 0):
            out_of_order += 1
        highest[user] = max(highest.get(user, 0), sequence)
        received[user].add(sequence)
        by_type[str(record["type"]).removeprefix("onboarding.")] += 1
        if record["timestamp"]:
            issued = datetime.fromisoformat(record["timestamp"]).timestamp()
            from_change.append((record["at"] - issued) * 1000)
        at = scheduled.get(user, {}).get(sequence)
        if at is not None:
            from_schedule.append((record["at"] - at) * 1000)
    missing = sum(len(set(scheduled[u]) - received[u]) for u in users)
    return NoticeFigures(
        requests=len(records),
        verified=sum(1 for r in records if r["verified"]),
        unique=len(seen),
        duplicates=duplicates,
        out_of_order=out_of_order,
        missing=missing,
        by_type=by_type,
        from_change_ms=from_change,
        from_schedule_ms=from_schedule,
    )


@dataclass
class RunFigures:
    mode: str
    round: int
    users: int
    mismatches: int
    not_ended: int
    seconds: float  # first request -> last close event
    play_seconds: float  # first request -> the last journey's last request
    cpu: dict[str, float]  # CPU seconds per process over the run
    worker_rss_mb: float
    api_rss_mb: float
    foreign_cores: float  # what other processes on the machine used during the run, in cores
    code: str  # source_fingerprint() at the start; "a->b" when it changed during the run
    reads: list[Read] = field(default_factory=list)
    notices: NoticeFigures | None = None

    @property
    def rate(self) -> float:
        return self.users / self.seconds if self.seconds else 0.0

    def cpu_ms(self, name: str) -> float:
        return self.cpu.get(name, 0.0) * 1000 / max(self.users, 1)

    def mean_events(self) -> float:
        return mean(sum(r.events.values()) for r in self.reads) if self.reads else 0.0

    def mean_of(self, event_type: str) -> float:
        return mean(r.events[event_type] for r in self.reads) if self.reads else 0.0

    def mean_activities(self, notice: bool | None = None) -> float:
        def count(read: Read) -> int:
            return sum(
                n
                for name, n in read.activities.items()
                if notice is None or (name == NOTICE_ACTIVITY) == notice
            )

        return mean(count(r) for r in self.reads) if self.reads else 0.0

    def as_json(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "mode": self.mode,
            "round": self.round,
            "users": self.users,
            "mismatches": self.mismatches,
            "not_ended": self.not_ended,
            "seconds": round(self.seconds, 2),
            "play_seconds": round(self.play_seconds, 2),
            "journeys_per_s": round(self.rate, 2),
            "cpu_ms_per_journey": {n: round(self.cpu_ms(n), 2) for n in self.cpu},
            "worker_peak_rss_mb": round(self.worker_rss_mb, 1),
            "api_peak_rss_mb": round(self.api_rss_mb, 1),
            "foreign_cores": round(self.foreign_cores, 2),
            "code": self.code,
            "history_events_per_journey": round(self.mean_events(), 2),
            "workflow_tasks_per_journey": round(self.mean_of("WorkflowTaskCompleted"), 2),
            "events_by_type": {
                t: round(self.mean_of(t), 2)
                for t in sorted({t for r in self.reads for t in r.events})
            },
            "activities_per_journey": {
                "all": round(self.mean_activities(), 2),
                "notices": round(self.mean_activities(True), 2),
                "other": round(self.mean_activities(False), 2),
            },
        }
        if self.notices is not None:
            figures["notices"] = self.notices.as_json(self.users)
        return figures


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Stack:
    args: argparse.Namespace
    client: Client
    server_pid: int
    base_env: dict[str, str]
    standin_url: str
    receiver: Receiver
    secret: str
    workdir: Path

    async def run(self, mode: str, round_: int) -> RunFigures:
        tag = f"{mode}-{round_}-{uuid.uuid4().hex[:6]}"
        task_queue = f"bench-notices-{tag}"
        rundir = self.workdir / tag
        rundir.mkdir()
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        env = {
            **self.base_env,
            "ONBOARDING_TASK_QUEUE": task_queue,
            "ONBOARDING_PORT": str(api_port),
            "ONBOARDING_DATA_DIR": str(rundir / "data"),
        }
        if mode == "on":
            env |= {
                "ONBOARDING_NOTIFY_URL": self.receiver.url,
                "ONBOARDING_NOTIFY_SECRET": self.secret,
                # A notice refused for good would hold its workflow open for three days.
                "ONBOARDING_NOTIFY_HOLD": "5s",
            }
        code = source_fingerprint()
        worker = spawn("worker", env, rundir)
        api = spawn("api", env, rundir)
        try:
            await wait_ready(api_url, api)
            meter = CpuMeter(
                {
                    "temporal": self.server_pid,
                    "worker": worker.pid,
                    "api": api.pid,
                    "receiver": self.receiver.process.pid,
                    "bench": os.getpid(),
                }
            )
            await until_quiet(meter.read, patience=self.args.patience)  # the worker's start
            config = SimulationConfig(
                api_url=api_url,
                admin_token=ADMIN,
                webhook_secret=SECRET,
                users=self.args.users,
                concurrency=self.args.concurrency,
                seed=round_ + 1,  # the same mix for both modes of a round
                stall_after=2.0,
                settle_timeout=60.0,
                standin_url=self.standin_url,
            )
            before, busy_before = meter.read(), machine_busy()
            started_wall, started = time.time(), time.monotonic()
            runs = await play(config)
            play_seconds = time.monotonic() - started
            not_ended = await until_ended(
                self.client, task_queue, time.monotonic() + self.args.deadline
            )
            ended_wall = time.time()
            await until_quiet(meter.read, patience=self.args.patience)
            cpu = CpuMeter.spent(before, meter.read())
            window = time.monotonic() - started
            foreign = max(0.0, machine_busy() - busy_before - sum(cpu.values())) / window
            worker_rss, api_rss = peak_rss_mb(worker.pid), peak_rss_mb(api.pid)
            if (after := source_fingerprint()) != code:
                code = f"{code}->{after}"
        except BaseException:
            print_log_tails(console, rundir)
            raise
        finally:
            for process in (worker, api):
                process.terminate()
            for process in (worker, api):
                process.wait(timeout=30)
        users = [r.user_id for r in runs if r.user_id]
        reads = await read_all(self.client, users)
        closed = [r.closed_at for r in reads if r.closed_at is not None]
        last = ended_wall if not_ended or not closed else max(closed)
        figures = RunFigures(
            mode=mode,
            round=round_ + 1,
            users=len(runs),
            mismatches=sum(1 for r in runs if not journey_ok(r)),
            not_ended=not_ended,
            seconds=last - started_wall,
            play_seconds=play_seconds,
            cpu=cpu,
            worker_rss_mb=worker_rss,
            api_rss_mb=api_rss,
            foreign_cores=foreign,
            code=code,
            reads=reads,
        )
        if mode == "on":
            records = self.receiver.records(set(users))
            figures.notices = notice_figures(records, users, reads)
        for r in runs:
            if not journey_ok(r):
                got = "/".join(r.actual) if r.actual else r.error or "no state"
                console.print(f"    mismatch: {r.kind} {r.user_id or '(not started)'}: {got}")
        return figures


def describe(f: RunFigures) -> str:
    text = (
        f"{f.mode:>3}: {f.users} journeys in {f.seconds:.1f}s ({f.rate:.1f}/s; played in "
        f"{f.play_seconds:.1f}s), worker {f.cpu_ms('worker'):.1f} ms CPU/journey, "
        f"{f.mean_events():.1f} history events/journey, mismatches {f.mismatches}"
    )
    text += f"; other processes used {f.foreign_cores:.2f} cores"
    if f.not_ended:
        text += f", [red]{f.not_ended} not ended by the deadline[/red]"
    if failed := sum(r.events["WorkflowTaskFailed"] for r in f.reads):
        text += f", [red]{failed} workflow task failures[/red]"
    if "->" in f.code:
        text += f", [red]code changed during the run ({f.code})[/red]"
    if f.notices is not None:
        text += f", {f.notices.unique} notices"
    return text


async def rounds(stack: Stack) -> list[tuple[RunFigures, RunFigures]]:
    """Each round: off and on, the order alternating so drift favours neither."""
    pairs = []
    for r in range(stack.args.rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        got = {}
        for mode in order:
            got[mode] = await stack.run(mode, r)
            console.print(f"  round {r + 1}, {describe(got[mode])}")
        pairs.append((got["off"], got["on"]))
    return pairs


# --- report -----------------------------------------------------------------------------------


def report(pairs: list[tuple[RunFigures, RunFigures]], args: argparse.Namespace) -> dict[str, Any]:
    offs, ons = [p[0] for p in pairs], [p[1] for p in pairs]

    def med(runs: list[RunFigures], value: Callable[[RunFigures], float]) -> float:
        return median(value(r) for r in runs)

    table = Table(title="Notices off vs on (medians over the rounds)")
    for column in ("", "off", "on", "on/off"):
        table.add_column(column, justify="right")
    rows: list[tuple[str, Callable[[RunFigures], float], str]] = [
        ("journeys/s", lambda r: r.rate, "{:.1f}"),
        ("seconds (first request → last close)", lambda r: r.seconds, "{:.1f}"),
        ("worker CPU ms/journey", lambda r: r.cpu_ms("worker"), "{:.1f}"),
        ("temporal CPU ms/journey", lambda r: r.cpu_ms("temporal"), "{:.1f}"),
        ("api CPU ms/journey", lambda r: r.cpu_ms("api"), "{:.1f}"),
        ("receiver CPU ms/journey", lambda r: r.cpu_ms("receiver"), "{:.1f}"),
        ("bench CPU ms/journey", lambda r: r.cpu_ms("bench"), "{:.1f}"),
        ("worker peak RSS MB", lambda r: r.worker_rss_mb, "{:.0f}"),
        ("other processes on the machine, cores", lambda r: r.foreign_cores, "{:.2f}"),
        ("history events/journey", lambda r: r.mean_events(), "{:.1f}"),
        ("workflow tasks/journey", lambda r: r.mean_of("WorkflowTaskCompleted"), "{:.1f}"),
        ("activities/journey", lambda r: r.mean_activities(), "{:.2f}"),
        ("  of which notices", lambda r: r.mean_activities(True), "{:.2f}"),
    ]
    for label, value, form in rows:
        off, on = med(offs, value), med(ons, value)
        table.add_row(label, form.format(off), form.format(on), f"{on / off:.2f}" if off else "")
    console.print(table)

    kinds = Table(title="History events by type per journey (medians over the rounds)")
    for column in ("event type", "off", "on", "on - off"):
        kinds.add_column(column, justify="right")
    for event_type in sorted({t for r in offs + ons for read in r.reads for t in read.events}):
        off = median(r.mean_of(event_type) for r in offs)
        on = median(r.mean_of(event_type) for r in ons)
        kinds.add_row(event_type, f"{off:.2f}", f"{on:.2f}", f"{on - off:+.2f}")
    console.print(kinds)

    def ratios(value: Callable[[RunFigures], float]) -> list[float]:
        return [value(on) / value(off) if value(off) else float("nan") for off, on in pairs]

    ratio_of = {
        "journeys_per_s": ratios(lambda r: r.rate),
        "worker_cpu_per_journey": ratios(lambda r: r.cpu_ms("worker")),
        "temporal_cpu_per_journey": ratios(lambda r: r.cpu_ms("temporal")),
        "history_events_per_journey": ratios(lambda r: r.mean_events()),
    }
    for name, each in ratio_of.items():
        console.print(
            f"on/off {name}: {median(each):.2f} (rounds: {', '.join(f'{x:.2f}' for x in each)})"
        )
    for run in ons:
        n = run.notices
        assert n is not None
        console.print(
            f"notices, round {run.round}: received {n.requests}, verified {n.verified}, "
            f"duplicates {n.duplicates}, out of order {n.out_of_order}, missing {n.missing}; "
            f"{n.unique / max(run.users, 1):.2f} per journey "
            f"({', '.join(f'{t} {c}' for t, c in n.by_type.most_common())}); latency from the "
            f"change p50 {pct(n.from_change_ms, 50):.0f} ms, p95 {pct(n.from_change_ms, 95):.0f} "
            f"ms; from scheduling p50 {pct(n.from_schedule_ms, 50):.0f} ms, p95 "
            f"{pct(n.from_schedule_ms, 95):.0f} ms"
        )
    codes = {r.code for pair in pairs for r in pair}
    if len(codes) > 1:
        console.print(
            "[red]the service's code changed during the benchmark (edited meanwhile): the runs "
            f"measured different code ({', '.join(sorted(codes))}); run it again[/red]"
        )
    activity_types: Counter[str] = Counter()
    for run in offs + ons:
        for read in run.reads:
            activity_types.update({f"{run.mode}:{k}": v for k, v in read.activities.items()})
    console.print(
        "activities scheduled, all rounds: "
        + ", ".join(f"{k} {v}" for k, v in sorted(activity_types.items()))
    )
    console.print(
        f"machine: {os.cpu_count()} cores, load average before the run "
        f"{args.load_before}; {args.users} journeys per run at C={args.concurrency}, "
        f"{args.rounds} rounds, settle window {SETTLE_WINDOW}; kinds: {', '.join(KINDS)}"
    )
    return {
        "users": args.users,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "kinds": KINDS,
        "load_before": args.load_before,
        "runs": [r.as_json() for pair in pairs for r in pair],
        "median": {
            "off": median_json(offs),
            "on": median_json(ons),
        },
        "ratios": {
            name: {"median": round(median(each), 3), "rounds": [round(x, 3) for x in each]}
            for name, each in ratio_of.items()
        },
        "code": code_under_test(),
        "code_changed": len(codes) > 1,
    }


def median_json(runs: list[RunFigures]) -> dict[str, Any]:
    return {
        "journeys_per_s": round(median(r.rate for r in runs), 2),
        "worker_cpu_ms_per_journey": round(median(r.cpu_ms("worker") for r in runs), 2),
        "temporal_cpu_ms_per_journey": round(median(r.cpu_ms("temporal") for r in runs), 2),
        "worker_peak_rss_mb": round(median(r.worker_rss_mb for r in runs), 1),
        "history_events_per_journey": round(median(r.mean_events() for r in runs), 2),
        "mismatches": sum(r.mismatches for r in runs),
        "not_ended": sum(r.not_ended for r in runs),
    }


# --- main -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="onboarding-bench-notices-"))
    server = TemporalDevServer(workdir, port=free_port(), ui_port=free_port())
    client = await server.start()
    smile_port = free_port()
    secret = new_notify_secret()
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMILE_", "ONBOARDING_"))},
        "TEMPORAL_ADDRESS": server.address,
        "SMILE_WEBHOOK_SECRET": SECRET,
        "ONBOARDING_ADMIN_TOKEN": ADMIN,
        "ONBOARDING_CALLBACK_SECRET": CALLBACK,
        # plain payloads, as in the figures before encryption (its cost: bench/encryption.py);
        # this script's own client reads them without the codec
        "ONBOARDING_ENCRYPTION": "off",
        "SMILE_API_BASE_URL": f"http://127.0.0.1:{smile_port}/v1",
        "SMILE_API_KEY": SMILE_KEY,
        "SMILE_API_SECRET": SMILE_SECRET,
        "ONBOARDING_LOG_LEVEL": "WARNING",
        "ONBOARDING_SETTLE_WINDOW": SETTLE_WINDOW,
    }
    receiver: Receiver | None = None
    pairs: list[tuple[RunFigures, RunFigures]] = []
    try:
        receiver = await Receiver.start(workdir, secret)
        async with serving(create_standin_app(SMILE_KEY, SMILE_SECRET), "127.0.0.1", smile_port):
            assert server.pid is not None
            stack = Stack(
                args,
                client,
                server.pid,
                base_env,
                f"http://127.0.0.1:{smile_port}",
                receiver,
                secret,
                workdir,
            )
            pairs = await rounds(stack)
    finally:
        if receiver is not None:
            receiver.process.terminate()
            receiver.process.wait(timeout=30)
        await server.stop()
        trouble = any(r.not_ended or r.mismatches for pair in pairs for r in pair)
        if pairs and not trouble:
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # the worker's and the API's logs of each run, the receiver's file, the server's
            console.print(f"logs and data kept in {workdir}")
    figures = report(pairs, args)
    if args.json:
        print(json.dumps(figures))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200, help="journeys per run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each: off and on)")
    parser.add_argument("--concurrency", type=int, default=16, help="journeys played at once")
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds to wait for every run to end"
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=30.0,
        help="seconds to wait for the server and worker to be quiet around a run",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line with every figure")
    parser.add_argument("--receiver", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    arguments.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if arguments.receiver:
        serve_receiver(int(arguments.receiver[0]), Path(arguments.receiver[1]))
    else:
        asyncio.run(main(arguments))
