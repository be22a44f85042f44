"""Scale benchmark (issue 16, "Ten thousand open"): N open onboardings on the embedded default,
with one worker and with two, and what listing, stats and a bulk change cost at that size.

    python bench/scale.py [--onboardings 10000] [--workers 1|2] [--rate 100] [--requests 50]
                          [--json]

Each configuration (one ``onboarding worker``, or two on the same task queue; both by default,
one after the other) gets a fresh stack: a dev server (SQLite file, the same pragmas as
``onboarding dev``), the Smile stand-in and one ``onboarding api``. Encryption is **on**, as in
production: a key generated for the run (``ONBOARDING_ENCRYPTION_KEYS``) is given to the workers,
the API and this script's own Temporal client.

1. **Seed**: N open onboardings, as real ones: signal-with-start through the service's own
   ``Onboardings.ingest`` from this process (C at once), 40% at ``account_created``
   (ACCOUNT_CREATED), 40% ``connected`` (+ ACCOUNT_CONNECTED), 20% ``created`` (USER_CREATED),
   with the default timeouts (hours), so all stay open. Then it waits until visibility counts
   that many running in each stage (the workers have processed every event). Reported: the
   seeding rate (requests accepted by Temporal) and the time until visibility agreed.
2. **Worker RSS** with N open: each worker's peak (VmHWM) and current (VmRSS) once the server
   and workers are quiet again.
3. **Latency** through the API with the admin token, M requests each one after another (after
   two warm-ups): ``GET /onboardings?pageSize=50`` (newest first), ``?sort=longest_in_stage``,
   ``?sort=longest_in_stage&stage=connected``, and ``GET /onboardings/stats``; p50, p95, max.
4. **Bulk**: ``POST /bulk-operations`` changing ``stall.connected`` to 2d over all of them at
   rate R, polled until completed: wall time, done/skipped/failed, the rate it held (done over
   wall time), the CPU each process spent meanwhile; then a sample of 50 onboardings is read
   back (``GET /onboardings/{user}``: ``timeouts.stall.connected`` must be 172800).

Every phase also says how many cores the rest of the machine used meanwhile (other agents' test
suites share these cores): the whole machine's busy time (``/proc/stat``) less this stack's.
Figures are printed, never asserted (``--json`` adds one JSON line at the end).
See docs/benchmarks.md, "Ten thousand open".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from history import until_quiet
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
from notices import machine_busy, pct, source_fingerprint
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from onboarding.core.encryption_keys import new_key
from onboarding.core.models import Event, Source, Stage
from onboarding.core.selection import OnboardingFilter, visibility_query
from onboarding.service.codec import codec_from_keys
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.tooling.devserver import TemporalDevServer
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.smile_standin import create_standin_app

TASK_QUEUE = "bench-scale"
# The spread of stages: (share, stage, the events that put an onboarding there).
SPREAD = (
    (0.4, Stage.ACCOUNT_CREATED, ("ACCOUNT_CREATED",)),
    (0.4, Stage.CONNECTED, ("ACCOUNT_CREATED", "ACCOUNT_CONNECTED")),
    (0.2, Stage.CREATED, ("USER_CREATED",)),
)
STALL_CONNECTED = "2d"
STALL_CONNECTED_SECONDS = 172800.0
GOALS = {"rss_mb": 400.0, "stats_p95_ms": 250.0, "bulk_seconds": 300.0}
console = Console(width=max(Console().width, 160))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def plan(n: int) -> list[tuple[str, Stage, tuple[str, ...]]]:
    """Users, their stage and events: the spread, interleaved (seeded, so runs compare)."""
    rows: list[tuple[str, Stage, tuple[str, ...]]] = []
    for share, stage, events in SPREAD:
        rows += [("", stage, events)] * round(share * n)
    rows = rows[:n] + [("", Stage.CREATED, ("USER_CREATED",))] * max(0, n - len(rows))
    random.Random(16).shuffle(rows)  # noqa: S311
    return [(f"scale-{i:05d}", stage, events) for i, (_, stage, events) in enumerate(rows)]


def events_for(user: str, types: tuple[str, ...]) -> list[Event]:
    now = datetime.now(UTC)
    return [
        Event(
            id=f"et-{uuid.uuid4().hex}",
            type=t,
            source=Source.WEBHOOK,
            created_at=now,
            received_at=now,
            data={"userId": user, "accountId": "a-scale", "providers": ["abccorp"]},
        )
        for t in types
    ]


@dataclass
class Phase:
    """Wall time, the CPU each process spent, and the rest of the machine's cores."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    foreign_cores: float = 0.0

    def cores(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / self.seconds if self.seconds else 0.0


class Measured:
    def __init__(self, meter: CpuMeter) -> None:
        self.meter = meter
        self.phase = Phase()

    def __enter__(self) -> Phase:
        self.before, self.busy, self.started = self.meter.read(), machine_busy(), time.monotonic()
        return self.phase

    def __exit__(self, *exc: object) -> None:
        phase = self.phase
        phase.seconds = time.monotonic() - self.started
        phase.cpu = CpuMeter.spent(self.before, self.meter.read())
        ours = sum(phase.cpu.values())
        foreign = max(0.0, machine_busy() - self.busy - ours)
        phase.foreign_cores = foreign / phase.seconds if phase.seconds else 0.0


@dataclass
class Latency:
    path: str
    ms: list[float]
    errors: int

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "p50_ms": round(pct(self.ms, 50), 1),
            "p95_ms": round(pct(self.ms, 95), 1),
            "max_ms": round(max(self.ms, default=float("nan")), 1),
            "requests": len(self.ms),
            "errors": self.errors,
        }


@dataclass
class ConfigFigures:
    workers: int
    onboardings: int
    seed: Phase
    seed_accepted: int
    seed_failed: int
    visible_after: float  # seconds from the first request until visibility counted them all
    visible: dict[str, int]
    rss_peak: list[float]
    rss_now: list[float]
    api_rss: float
    latency: list[Latency]
    latency_phase: Phase
    bulk: dict[str, Any]
    bulk_phase: Phase
    rss_peak_after_bulk: list[float]
    sample_ok: int
    sample_checked: int
    sample_problems: list[str]
    code: str  # the source's fingerprint at the start, "a->b" if it changed during the run

    @property
    def seed_rate(self) -> float:
        return self.seed_accepted / self.seed.seconds if self.seed.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "onboardings": self.onboardings,
            "seed": {
                "seconds": round(self.seed.seconds, 1),
                "per_s": round(self.seed_rate, 1),
                "accepted": self.seed_accepted,
                "failed": self.seed_failed,
                "visible_after_s": round(self.visible_after, 1),
                "visible": self.visible,
                "cpu_s": {k: round(v, 1) for k, v in self.seed.cpu.items()},
                "foreign_cores": round(self.seed.foreign_cores, 2),
            },
            "worker_rss_mb": {
                "peak": [round(x) for x in self.rss_peak],
                "settled": [round(x) for x in self.rss_now],
                "peak_after_bulk": [round(x) for x in self.rss_peak_after_bulk],
            },
            "api_rss_mb": round(self.api_rss),
            "latency": [lat.as_json() for lat in self.latency],
            "latency_foreign_cores": round(self.latency_phase.foreign_cores, 2),
            "bulk": {
                **self.bulk,
                "cpu_s": {k: round(v, 1) for k, v in self.bulk_phase.cpu.items()},
                "foreign_cores": round(self.bulk_phase.foreign_cores, 2),
            },
            "code": self.code,
            "sample": {
                "checked": self.sample_checked,
                "ok": self.sample_ok,
                "problems": self.sample_problems[:5],
            },
        }


async def visible_counts(client: Client) -> dict[str, int]:
    counts = await asyncio.gather(
        *(
            client.count_workflows(visibility_query(OnboardingFilter(stage=stage, open_only=True)))
            for _, stage, _ in SPREAD
        )
    )
    return {stage.value: c.count for (_, stage, _), c in zip(SPREAD, counts, strict=True)}


async def seed(
    client: Client, users: list[tuple[str, Stage, tuple[str, ...]]], concurrency: int
) -> tuple[int, int]:
    """Signal-with-start for every user, ``concurrency`` at once; (accepted, failed)."""
    ops = Onboardings(client, Settings(task_queue=TASK_QUEUE))
    gate = asyncio.Semaphore(concurrency)
    accepted = failed = 0
    progress = time.monotonic()

    async def one(user: str, types: tuple[str, ...]) -> None:
        nonlocal accepted, failed, progress
        async with gate:
            for attempt in range(5):
                try:
                    result = await ops.ingest(user, events_for(user, types))
                except Exception as err:  # a busy server: try again, then count it
                    if attempt == 4:
                        failed += 1
                        console.print(f"  [red]seeding {user} failed: {err!r}[/red]")
                        return
                    await asyncio.sleep(1.0 + attempt)
                    continue
                accepted += result.outcome == "accepted"
                failed += result.outcome != "accepted"
                break
            if time.monotonic() - progress > 15:
                progress = time.monotonic()
                console.print(f"  seeded {accepted + failed}/{len(users)}")

    await asyncio.gather(*(one(user, types) for user, _, types in users))
    return accepted, failed


async def until_visible(
    client: Client, expected: dict[str, int], deadline: float
) -> dict[str, int]:
    last: dict[str, int] = {}
    shown = time.monotonic()
    while time.monotonic() < deadline:
        last = await visible_counts(client)
        if last == expected:
            return last
        if time.monotonic() - shown > 15:
            shown = time.monotonic()
            console.print(f"  visibility: {last} (expecting {expected})")
        await asyncio.sleep(1.0)
    console.print(f"  [red]visibility never agreed: {last}, expected {expected}[/red]")
    return last


async def latency(http: httpx.AsyncClient, path: str, requests: int) -> Latency:
    errors = 0
    for _ in range(2):  # warm-up: connections, the API's caches
        await http.get(path)
    ms: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await http.get(path)
        ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            errors += 1
            if errors == 1:
                console.print(f"  [red]{path}: HTTP {response.status_code} {response.text[:200]}")
    return Latency(path, ms, errors)


STATS_AFRESH = "stats counted afresh (Onboardings.count_stats)"
SKIPPED_BULK: dict[str, Any] = {
    "state": "skipped", "seconds": float("nan"), "done": 0, "skipped_ended": 0, "failed": 0,
    "rate_held": float("nan"),
}  # fmt: skip


async def counted_afresh(client: Client, times: int) -> Latency:
    ops = Onboardings(client, Settings(task_queue=TASK_QUEUE))
    ms: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        await ops.count_stats()
        ms.append((time.perf_counter() - started) * 1000)
    return Latency(STATS_AFRESH, ms, 0)


async def bulk_change(http: httpx.AsyncClient, rate: float, patience: float) -> dict[str, Any]:
    body = {
        "operation": "timeouts",
        "everything": True,  # every onboarding, on purpose (an empty "where" is refused)
        "timeouts": {"stall": {"connected": STALL_CONNECTED}},
        "rate": rate,
    }
    started = time.monotonic()
    response = await http.post("/bulk-operations", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"bulk refused: HTTP {response.status_code} {response.text}")
    status = response.json()
    operation = status["id"]
    shown = started
    while status["progress"]["state"] == "running" and time.monotonic() - started < patience:
        await asyncio.sleep(1.0)
        answer = await http.get(f"/bulk-operations/{operation}")
        if answer.status_code == 200:
            status = answer.json()
        if time.monotonic() - shown > 30:
            shown = time.monotonic()
            p = status["progress"]
            console.print(
                f"  bulk: {p['done']} done, {p['skippedEnded']} skipped, {p['failed']} failed "
                f"of {p['matched']} after {time.monotonic() - started:.0f}s"
            )
    seconds = time.monotonic() - started
    progress = status["progress"]
    return {
        "id": operation,
        "rate_asked": rate,
        "state": progress["state"],
        "matched": progress["matched"],
        "done": progress["done"],
        "skipped_ended": progress["skippedEnded"],
        "failed": progress["failed"],
        "failures": progress["failures"][:3],
        "seconds": round(seconds, 1),
        "rate_held": round(progress["done"] / seconds, 1) if seconds else 0.0,
    }


async def check_sample(
    http: httpx.AsyncClient, users: list[str], size: int = 50
) -> tuple[int, int, list[str]]:
    sample = random.Random(7).sample(users, min(size, len(users)))  # noqa: S311
    ok, problems = 0, []
    for user in sample:
        response = await http.get(f"/onboardings/{user}")
        if response.status_code != 200:
            problems.append(f"{user}: HTTP {response.status_code}")
            continue
        got = response.json().get("timeouts", {}).get("stall", {}).get("connected")
        if got == STALL_CONNECTED_SECONDS:
            ok += 1
        else:
            problems.append(f"{user}: stall.connected = {got!r}")
    return ok, len(sample), problems


async def run_config(args: argparse.Namespace, workers: int) -> ConfigFigures:
    n = args.onboardings
    console.rule(f"{workers} worker(s), {n} onboardings")
    workdir = Path(tempfile.mkdtemp(prefix=f"onboarding-bench-scale-{workers}w-"))
    key = new_key("k-bench-scale")
    codec = codec_from_keys([SecretStr(key)])
    server = TemporalDevServer(workdir, port=free_port(), ui_port=free_port())
    client = await server.start(codec=codec)
    smile_port, api_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMILE_", "ONBOARDING_"))},
        "TEMPORAL_ADDRESS": server.address,
        "SMILE_WEBHOOK_SECRET": SECRET,
        "ONBOARDING_ADMIN_TOKEN": ADMIN,
        "ONBOARDING_CALLBACK_SECRET": CALLBACK,
        # encryption on, as in production: the same generated key for every process
        "ONBOARDING_ENCRYPTION_KEYS": key,
        "SMILE_API_BASE_URL": f"http://127.0.0.1:{smile_port}/v1",
        "SMILE_API_KEY": SMILE_KEY,
        "SMILE_API_SECRET": SMILE_SECRET,
        "ONBOARDING_TASK_QUEUE": TASK_QUEUE,
        "ONBOARDING_PORT": str(api_port),
        "ONBOARDING_LOG_LEVEL": "WARNING",
        "ONBOARDING_DATA_DIR": str(workdir / "data"),
    }
    worker_env = dict(env)
    code = source_fingerprint()
    processes: list[subprocess.Popen[bytes]] = []
    logdirs = [workdir / f"worker-{i + 1}" for i in range(workers)] + [workdir / "api"]
    for d in logdirs:
        d.mkdir()
    try:
        async with serving(create_standin_app(SMILE_KEY, SMILE_SECRET), "127.0.0.1", smile_port):
            worker_procs = [spawn("worker", worker_env, logdirs[i]) for i in range(workers)]
            api = spawn("api", env, logdirs[-1])
            processes += [*worker_procs, api]
            await wait_ready(api_url, api)
            assert server.pid is not None
            pids = {"temporal": server.pid, "api": api.pid, "bench": os.getpid()}
            pids |= {f"worker-{i + 1}": p.pid for i, p in enumerate(worker_procs)}
            meter = CpuMeter(pids)
            busy = ("temporal", *(f"worker-{i + 1}" for i in range(workers)))
            await until_quiet(meter.read, busy=busy, patience=30)

            # 1. seed
            users = plan(n)
            expected = {stage.value: 0 for _, stage, _ in SPREAD}
            for _, stage, _ in users:
                expected[stage.value] += 1
            started = time.monotonic()
            with Measured(meter) as seed_phase:
                accepted, failed = await seed(client, users, args.concurrency)
            console.print(
                f"  seeded {accepted} in {seed_phase.seconds:.1f}s "
                f"({accepted / seed_phase.seconds:.0f}/s), {failed} not accepted; "
                f"other processes used {seed_phase.foreign_cores:.2f} cores"
            )
            visible = await until_visible(client, expected, time.monotonic() + args.deadline)
            visible_after = time.monotonic() - started
            console.print(f"  visibility agreed after {visible_after:.1f}s: {visible}")

            # 2. RSS, once quiet
            await until_quiet(meter.read, busy=busy, patience=60)
            rss_peak = [peak_rss_mb(p.pid) for p in worker_procs]
            rss_now = [rss_mb(p.pid) for p in worker_procs]
            console.print(
                "  worker RSS: "
                + ", ".join(
                    f"peak {a:.0f} MB, now {b:.0f} MB"
                    for a, b in zip(rss_peak, rss_now, strict=True)
                )
            )

            # 3. latency
            headers = {"Authorization": f"Bearer {ADMIN}"}
            paths = [
                "/onboardings?pageSize=50",
                "/onboardings?sort=longest_in_stage&pageSize=50",
                "/onboardings?sort=longest_in_stage&stage=connected&pageSize=50",
                "/onboardings/stats",
            ]
            async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=120) as http:
                lats = []
                with Measured(meter) as latency_phase:
                    for path in paths if not args.skip_latency else []:
                        lat = await latency(http, path, args.requests)
                        console.print(
                            f"  {path}: p50 {pct(lat.ms, 50):.0f} ms, p95 {pct(lat.ms, 95):.0f} "
                            f"ms, max {max(lat.ms):.0f} ms, errors {lat.errors}"
                        )
                        lats.append(lat)
                    if not args.skip_latency:
                        # What the endpoint's background refresh costs: the stats counted
                        # afresh, by the service's own call, from this process.
                        fresh = await counted_afresh(client, max(args.requests // 5, 5))
                        console.print(
                            f"  {fresh.path}: p50 {pct(fresh.ms, 50):.0f} ms, p95 "
                            f"{pct(fresh.ms, 95):.0f} ms, max {max(fresh.ms):.0f} ms"
                        )
                        lats.append(fresh)
                console.print(
                    f"  (other processes used {latency_phase.foreign_cores:.2f} cores meanwhile)"
                )

                # 4. bulk
                with Measured(meter) as bulk_phase:
                    bulk = (
                        await bulk_change(http, args.rate, args.bulk_patience)
                        if not args.skip_bulk
                        else SKIPPED_BULK
                    )
                worker_cpu = sum(bulk_phase.cores(f"worker-{i + 1}") for i in range(workers))
                console.print(
                    f"  bulk at rate {args.rate:g}: {bulk['state']} in {bulk['seconds']}s, "
                    f"done {bulk['done']}, skipped {bulk['skipped_ended']}, failed "
                    f"{bulk['failed']}, held {bulk['rate_held']}/s; workers "
                    f"{worker_cpu:.2f} cores, server {bulk_phase.cores('temporal'):.2f}; "
                    f"other processes {bulk_phase.foreign_cores:.2f} cores"
                )
                rss_after_bulk = [peak_rss_mb(p.pid) for p in worker_procs]
                ok, checked, problems = (
                    await check_sample(http, [u for u, _, _ in users])
                    if not args.skip_bulk
                    else (0, 0, [])
                )
                console.print(f"  sample: {ok}/{checked} have stall.connected = 2d")
            api_rss = peak_rss_mb(api.pid)
            if (after := source_fingerprint()) != code:
                code = f"{code}->{after}"
                console.print(f"  [red]the service's source changed during the run ({code})[/red]")
    except BaseException:
        for d in logdirs:
            print_log_tails(console, d)
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return ConfigFigures(
        workers=workers,
        onboardings=n,
        seed=seed_phase,
        seed_accepted=accepted,
        seed_failed=failed,
        visible_after=visible_after,
        visible=visible,
        rss_peak=rss_peak,
        rss_now=rss_now,
        api_rss=api_rss,
        latency=lats,
        latency_phase=latency_phase,
        bulk=bulk,
        bulk_phase=bulk_phase,
        rss_peak_after_bulk=rss_after_bulk,
        sample_ok=ok,
        sample_checked=checked,
        sample_problems=problems,
        code=code,
    )


def met(value: float, goal: float) -> str:
    return "met" if value < goal else "[red]not met[/red]"


def report(figures: list[ConfigFigures], args: argparse.Namespace) -> None:
    table = Table(title=f"{args.onboardings} open onboardings (encryption on)")
    table.add_column("", justify="left")
    for f in figures:
        table.add_column(f"{f.workers} worker{'s' if f.workers > 1 else ''}", justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("seeding, onboardings/s", [f"{f.seed_rate:.0f}" for f in figures]),
        ("all visible after, s", [f"{f.visible_after:.0f}" for f in figures]),
        ("worker peak RSS, MB", [" + ".join(f"{x:.0f}" for x in f.rss_peak) for f in figures]),
        ("worker RSS settled, MB", [" + ".join(f"{x:.0f}" for x in f.rss_now) for f in figures]),
        (
            "worker peak RSS after bulk, MB",
            [" + ".join(f"{x:.0f}" for x in f.rss_peak_after_bulk) for f in figures],
        ),
        ("api peak RSS, MB", [f"{f.api_rss:.0f}" for f in figures]),
    ]
    for i, path in enumerate(figures[0].latency):
        rows.append(
            (
                f"{path.path} p50 / p95, ms",
                [
                    f"{pct(f.latency[i].ms, 50):.0f} / {pct(f.latency[i].ms, 95):.0f}"
                    for f in figures
                ],
            )
        )
    rows += [
        ("bulk timeouts change, s", [f"{f.bulk['seconds']}" for f in figures]),
        (
            "  done / skipped / failed",
            [f"{f.bulk['done']} / {f.bulk['skipped_ended']} / {f.bulk['failed']}" for f in figures],
        ),
        (f"  rate held (asked {args.rate:g}), /s", [f"{f.bulk['rate_held']}" for f in figures]),
        (
            "  worker CPU during it, cores",
            [
                " + ".join(f"{f.bulk_phase.cores(f'worker-{i + 1}'):.2f}" for i in range(f.workers))
                for f in figures
            ],
        ),
        (
            "  server CPU during it, cores",
            [f"{f.bulk_phase.cores('temporal'):.2f}" for f in figures],
        ),
        (
            "  sample with stall.connected 2d",
            [f"{f.sample_ok}/{f.sample_checked}" for f in figures],
        ),
        (
            "other processes' cores: seed / latency / bulk",
            [
                f"{f.seed.foreign_cores:.2f} / {f.latency_phase.foreign_cores:.2f} / "
                f"{f.bulk_phase.foreign_cores:.2f}"
                for f in figures
            ],
        ),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    console.print(table)
    for f in figures:
        endpoint = [lat for lat in f.latency if lat.path == "/onboardings/stats"]
        stats_p95 = pct(endpoint[0].ms, 95) if endpoint else float("nan")
        console.print(
            f"goals, {f.workers} worker(s): RSS < 400 MB per worker "
            f"{met(max(f.rss_peak_after_bulk), GOALS['rss_mb'])}; stats p95 < 250 ms "
            f"{met(stats_p95, GOALS['stats_p95_ms'])}; bulk < 5 min "
            f"{met(f.bulk['seconds'], GOALS['bulk_seconds'])}"
        )
    console.print(
        f"machine: {os.cpu_count()} cores, load average before {args.load_before}; "
        "workflow cache: ONBOARDING_WORKER_MAX_CACHED_WORKFLOWS (default 800) per worker; "
        f"code: {code_under_test()}"
    )


async def main(args: argparse.Namespace) -> None:
    configs = [args.workers] if args.workers else [1, 2]
    figures = [await run_config(args, w) for w in configs]
    report(figures, args)
    if args.json:
        print(
            json.dumps(
                {
                    "onboardings": args.onboardings,
                    "rate": args.rate,
                    "encryption": "on",
                    "load_before": args.load_before,
                    "configs": [f.as_json() for f in figures],
                    "code": code_under_test(),
                }
            )
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--onboardings", type=int, default=10_000, help="N open onboardings")
    parser.add_argument(
        "--workers", type=int, choices=(1, 2), help="one configuration only (default: both)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="the bulk change's rate R")
    parser.add_argument("--concurrency", type=int, default=32, help="seeding requests at once")
    parser.add_argument("--requests", type=int, default=50, help="M requests per endpoint")
    parser.add_argument(
        "--deadline", type=float, default=900.0, help="seconds to wait for visibility to agree"
    )
    parser.add_argument(
        "--bulk-patience", type=float, default=1200.0, help="seconds to wait for the bulk change"
    )
    parser.add_argument(
        "--skip-latency", action="store_true", help="no latency phase (RSS and bulk only)"
    )
    parser.add_argument(
        "--skip-bulk", action="store_true", help="no bulk change (figures from an earlier run)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line with every figure")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    arguments.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    asyncio.run(main(arguments))
