"""Ingest benchmark: the service against the only honest baseline, Temporal itself.

    python bench/ingest.py [--rounds 4] [--seconds 10] [--concurrency 32] [--users 300]
                           [--ordinary 30] [--only-history]

One dev server (SQLite file, the same pragmas as ``onboarding dev``) is started for the run, with
``onboarding worker`` and ``onboarding api`` as separate processes, as in production.

First a journey run of N simulated users (wall time, requests/s, mismatches, the worker's peak
RSS), then K ordinary journeys (six webhooks a second apart, each its own signal); for both, the
history events per journey (by kind of journey and by event type, read back with the Temporal
client) and the Temporal server's CPU per journey (``bench/history.py``). ``--only-history``
stops there, which takes well under a minute with small N and K. Then, in R rounds whose order
alternates, each run S seconds at concurrency C and starting on a caught-up, quiet server:

1. baseline: this process's raw Temporal client doing signal-with-start, exactly the request the
   service makes;
2. service: the same events as signed webhooks through ``POST /webhooks/smile`` over HTTP, sent
   by ``wrk`` (pre-signed requests cycled by a Lua script) when it is installed, otherwise by a
   raw asyncio HTTP/1.1 client in this process (printed either way);

for one-event users and for bursty users (three data events at once), then both open loop at
half the baseline's throughput for latency. It prints medians, every round's ratio and the CPU
each process spent per event. Figures are printed, never asserted. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import httpx
from history import (
    HistoryFigures,
    background_cores,
    measure_phase,
    ordinary_phase,
    simulated_figures,
)
from history import report as report_history
from loadgen import (  # beside this script, which Python puts first on sys.path
    Figures,
    RawHttp,
    closed_loop,
    open_loop,
    run_wrk,
    webhook_request,
)
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from onboarding.core.identity import workflow_id_for
from onboarding.core.models import Event, EventBatch, OnboardingInput, Source
from onboarding.core.signatures import sign
from onboarding.service.onboardings import initial_search_attributes
from onboarding.service.settings import Settings
from onboarding.tooling.devserver import TemporalDevServer
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.simulate import SimulationConfig, SimulationResult, simulate
from onboarding.tooling.smile_standin import create_standin_app
from workflows import onboarding as workflow_module
from workflows.onboarding import INGEST_SIGNAL, OnboardingWorkflow

ONBOARDING = Path(sys.executable).parent / "onboarding"
WRK = shutil.which("wrk")
SECRET, ADMIN, CALLBACK = "bench-webhook-secret", "bench-admin-token", "bench-callback-secret"
SMILE_KEY, SMILE_SECRET = "bench-key", "bench-secret"
BURST = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")
console = Console()


def envelope(user: str, event_type: str, offset: int = 0) -> dict[str, object]:
    return {
        "id": f"et-{uuid.uuid4().hex}",
        "version": 1,
        "type": event_type,
        "createdAt": f"2024-01-01T00:00:{offset:02d}Z",
        "data": {"userId": user, "accountId": "a-bench", "count": 1},
    }


def workload(events: int, bursty: bool, tag: str) -> list[dict[str, object]]:
    """M envelopes: one per user, or bursts of three per user (interleaved as they arrive)."""
    if not bursty:
        return [envelope(f"bench-{tag}-{i}", "USER_CREATED") for i in range(events)]
    users = [f"bench-{tag}-{i}" for i in range(events // len(BURST))]
    return [envelope(u, t, n) for u in users for n, t in enumerate(BURST)]


# --- the two ways in ------------------------------------------------------------------------


def raw_sender(client: Client, settings: Settings) -> Callable[[object], Awaitable[None]]:
    options = settings.default_options()

    async def send(item: object) -> None:
        env = item  # an envelope dict
        assert isinstance(env, dict)
        now = datetime.now(UTC)
        event = Event(
            id=str(env["id"]),
            type=str(env["type"]),
            source=Source.WEBHOOK,
            created_at=datetime.fromisoformat(str(env["createdAt"])),
            received_at=now,
            data=dict(env["data"]),
        )
        user = str(env["data"]["userId"])
        await client.start_workflow(
            OnboardingWorkflow.run,
            OnboardingInput(user_id=user, options=options),
            id=workflow_id_for(user),
            task_queue=settings.task_queue,
            start_signal=INGEST_SIGNAL,
            start_signal_args=[EventBatch(events=[event])],
            # What the service asks of Temporal, no more and no less (Onboardings.ingest).
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(),
        )

    return send


def presign(envelopes: list[dict[str, object]]) -> list[tuple[bytes, str]]:
    bodies = [json.dumps(e, separators=(",", ":")).encode() for e in envelopes]
    return [(b, sign(b, SECRET)) for b in bodies]


async def drain(client: Client, settings: Settings, patience: float = 180.0) -> float:
    """Wait until the worker has caught up: a fresh onboarding's first event must be visible
    to a query within half a second. Returns the seconds waited."""
    from onboarding.service.onboardings import Onboardings

    ops = Onboardings(client, settings)
    started = time.perf_counter()
    deadline = started + patience
    while time.perf_counter() < deadline:
        user = f"bench-probe-{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        event = Event(
            id="et-probe",
            type="USER_CREATED",
            source=Source.WEBHOOK,
            created_at=now,
            received_at=now,
            data={"userId": user},
        )
        probe = time.perf_counter()
        await ops.ingest(user, [event])
        while time.perf_counter() < deadline:
            # Not started yet, or Temporal busy: keep asking.
            with contextlib.suppress(Exception):
                if (await ops.get(user)).events_total == 1:
                    break
            await asyncio.sleep(0.05)
        if time.perf_counter() - probe < 0.5:
            return time.perf_counter() - started
        await asyncio.sleep(1.0)
    console.print(f"  [red](the worker had not caught up after {patience:.0f}s; going on)[/red]")
    return time.perf_counter() - started


# --- the stack ------------------------------------------------------------------------------


def code_under_test() -> str:
    """Which checkout's workflow code this process (and, by the same sys.path, the worker it
    spawns) imports, with its commit: a before/after comparison must say what it measured."""
    root = Path(str(workflow_module.__file__)).resolve().parents[1]
    described = str(root)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(root)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "workflows", "onboarding", "activities", "api"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        described += f" at {head}" + (" with uncommitted changes" if dirty else "")
    return described


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds that each process of the stack spent during one run."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


def spawn(command: str, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """A long-lived service process (managed by the caller, not awaited)."""
    with (workdir / f"{command}.log").open("ab") as log:
        return subprocess.Popen(
            [str(ONBOARDING), command], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def print_log_tails(
    console: Console, workdir: Path, names: tuple[str, ...] = ("worker", "api")
) -> None:
    """The last lines of the spawned services' logs, to say why a run broke."""
    for name in names:
        log = workdir / f"{name}.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-15:]
            console.print(f"[bold]last lines of {name}.log:[/bold]\n" + "\n".join(tail))


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


@dataclass
class Bench:
    """What one run of a side needs: the stack's handles and the load generators."""

    args: argparse.Namespace
    client: Client
    settings: Settings
    meter: CpuMeter
    http: RawHttp
    api_host: str
    api_url: str
    workdir: Path
    use_wrk: bool
    services: list[subprocess.Popen[bytes]]

    async def settle(self, idle_cores: float = 0.1, patience: float = 30.0) -> None:
        """Start every run from the same state: the worker caught up (``drain``), then the
        Temporal server and the worker both quiet, under ``idle_cores`` of CPU for a whole
        second (the server goes on with timers and visibility after the worker is done)."""
        for service in self.services:
            if service.poll() is not None:
                raise RuntimeError(f"{service.args!r} exited with {service.returncode}")
        await drain(self.client, self.settings)
        busy = ("temporal", "worker")
        deadline = time.perf_counter() + patience
        while time.perf_counter() < deadline:
            before = self.meter.read()
            await asyncio.sleep(1.0)
            spent = CpuMeter.spent(before, self.meter.read())
            if sum(spent[name] for name in busy) < idle_cores:
                return
        console.print(f"  (the server and worker were still busy after {patience:.0f}s; going on)")

    def account(self, figures: Figures, before: dict[str, float], wrk_cpu: float = 0.0) -> None:
        """The CPU each process spent in the run; this process is (part of) the load
        generator."""
        figures.cpu = CpuMeter.spent(before, self.meter.read())
        figures.cpu["load generator"] = wrk_cpu + figures.cpu.pop("bench")

    async def baseline(self, label: str, bursty: bool, tag: str) -> Figures:
        await self.settle()
        before = self.meter.read()
        figures = await closed_loop(
            label,
            workload(self.args.events, bursty, tag),
            self.args.concurrency,
            raw_sender(self.client, self.settings),
            seconds=self.args.seconds,
        )
        self.account(figures, before)
        return figures

    async def service(self, label: str, bursty: bool, tag: str) -> Figures:
        await self.settle()
        signed = presign(workload(self.args.events, bursty, tag))
        requests = [webhook_request(self.api_host, b, s) for b, s in signed]
        await self.http.aclose()  # fresh connections: idle ones may have timed out
        before = self.meter.read()
        if self.use_wrk:
            # In a thread: the event loop (the Temporal client's, the stand-in's) goes on.
            figures, generator_cpu = await asyncio.to_thread(
                run_wrk,
                WRK or "wrk",
                label,
                self.api_url,
                signed,
                self.args.concurrency,
                self.workdir,
                self.args.seconds,
            )
            self.account(figures, before, generator_cpu)
            return figures
        figures = await closed_loop(
            label, requests, self.args.concurrency, self.http.send, seconds=self.args.seconds
        )
        self.account(figures, before)
        return figures

    async def half_load(self, side: str, rate: float, tag: str) -> Figures:
        """Open loop at a fixed rate, on a caught-up worker, with the cheap Python clients."""
        await self.settle()
        count = max(20, int(rate * self.args.half_load_seconds))
        label = f"{side} at ½ load"
        envelopes = workload(count, False, tag)
        requests = [webhook_request(self.api_host, b, s) for b, s in presign(envelopes)]
        await self.http.aclose()  # fresh connections: idle ones may have timed out
        before = self.meter.read()
        if side == "baseline":
            sender = raw_sender(self.client, self.settings)
            figures = await open_loop(label, envelopes, rate, sender)
        else:
            figures = await open_loop(label, requests, rate, self.http.send)
        self.account(figures, before)
        return figures


async def alternate(
    rounds: int,
    baseline: Callable[[int], Awaitable[Figures]],
    service: Callable[[int], Awaitable[Figures]],
    describe: Callable[[Figures, Figures], str],
) -> list[tuple[Figures, Figures]]:
    """``rounds`` pairs, the order alternating (baseline first, then service first, ...) so a
    drift in the machine's state over the run does not favour one side."""
    pairs = []
    for r in range(rounds):
        if r % 2 == 0:
            base = await baseline(r)
            other = await service(r)
        else:
            other = await service(r)
            base = await baseline(r)
        console.print(f"  round {r + 1}: {describe(base, other)}")
        pairs.append((base, other))
    return pairs


async def compare(bench: Bench, kind: str, rounds: int) -> list[tuple[Figures, Figures]]:
    bursty = kind == "bursty"
    return await alternate(
        rounds,
        lambda r: bench.baseline(f"baseline {kind}", bursty, f"b{kind[0]}{r}"),
        lambda r: bench.service(f"service {kind}", bursty, f"s{kind[0]}{r}"),
        lambda b, s: (
            f"{kind}: baseline {b.rate:.0f}/s, service {s.rate:.0f}/s, ratio {s.rate / b.rate:.2f}"
        ),
    )


async def compare_half_load(
    bench: Bench, rate: float, rounds: int
) -> list[tuple[Figures, Figures]]:
    return await alternate(
        rounds,
        lambda r: bench.half_load("baseline", rate, f"hb{r}"),
        lambda r: bench.half_load("service", rate, f"hs{r}"),
        lambda b, s: (
            f"½ load: p99 baseline {b.pct(99):.0f} ms, service {s.pct(99):.0f} ms, "
            f"ratio {s.pct(99) / b.pct(99):.2f}"
        ),
    )


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="onboarding-bench-"))
    use_wrk = WRK is not None and not args.no_wrk
    generator = "wrk (pre-signed requests cycled by Lua)" if use_wrk else RawHttp.generator
    server = TemporalDevServer(workdir, port=free_port(), ui_port=free_port())
    client = await server.start()
    smile_port, api_port = free_port(), free_port()
    api_host = f"127.0.0.1:{api_port}"
    api_url = f"http://{api_host}"
    env = {
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
        "ONBOARDING_PORT": str(api_port),
        "ONBOARDING_LOG_LEVEL": "WARNING",
        "ONBOARDING_BATCH_SIGNALS": "false" if args.no_batching else "true",
        # Journeys that reach data_ready complete when the settle window ends; with the default
        # (10 minutes) those timers would fire during the later rounds, on either side.
        "ONBOARDING_SETTLE_WINDOW": "1d",
    }
    settings = Settings(task_queue="smile-onboarding")
    processes: list[subprocess.Popen[bytes]] = []
    http = RawHttp("127.0.0.1", api_port)
    try:
        async with serving(create_standin_app(SMILE_KEY, SMILE_SECRET), "127.0.0.1", smile_port):
            # Long-lived service processes, managed here, not awaited.
            # Their logs go to files (the journeys' stalled users are logged as warnings),
            # shown only if the benchmark fails.
            worker = spawn("worker", env, workdir)
            api = spawn("api", env, workdir)
            processes += [worker, api]
            await wait_ready(api_url, api)
            assert server.pid is not None
            meter = CpuMeter(
                {"temporal": server.pid, "worker": worker.pid, "api": api.pid, "bench": os.getpid()}
            )
            idle = await background_cores(meter.read)
            # Journeys first, on a fresh server: the ingest runs leave the worker a backlog.
            # The CPU per journey counts from their start until the server and worker are quiet.
            config = SimulationConfig(
                api_url=api_url,
                admin_token=ADMIN,
                webhook_secret=SECRET,
                users=args.users,
                concurrency=args.concurrency,
                seed=1,
                stall_after=2.0,
                standin_url=f"http://127.0.0.1:{smile_port}",  # for the healed journeys
            )
            journey, journey_cpu = await measure_phase(
                meter.read, args.users, lambda: simulate(config, console)
            )
            rss_after_journeys = peak_rss_mb(worker.pid)
            rows = await simulated_figures(client, journey, journey_cpu)
            if args.ordinary > 0:
                ordinary = await ordinary_phase(
                    client, meter.read, api_url, SECRET, ADMIN, args.ordinary
                )
                rows.insert(0, ordinary)
            histories = HistoryFigures(rows, idle)
            rss = {"worker after journeys": rss_after_journeys}
            if not args.only_history:
                bench = Bench(
                    args,
                    client,
                    settings,
                    meter,
                    http,
                    api_host,
                    api_url,
                    workdir,
                    use_wrk,
                    processes,
                )
                runs = {
                    kind: await compare(bench, kind, args.rounds)
                    for kind in ("one-event", "bursty")
                }
                half_rate = median([b.rate for b, _ in runs["one-event"]]) / 2
                runs["½ load"] = await compare_half_load(bench, half_rate, args.rounds)
                rss["worker after all"] = peak_rss_mb(worker.pid)
            rss["api"] = peak_rss_mb(api.pid)
    except BaseException:
        print_log_tails(console, workdir)
        raise
    finally:
        await http.aclose()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report_history(histories, console, code_under_test())
    if args.only_history:
        console.print(journey_line(journey, rss))
        print(
            json.dumps(
                {
                    "history": histories.as_json(),
                    "journey": journey_json(journey),
                    "code": code_under_test(),
                }
            )
        )
        return
    report(runs, journey, rss, generator, args, half_rate, histories)


def median_figures(label: str, runs: list[Figures]) -> Figures:
    """One row standing for several runs: the median rate, percentiles and CPU."""
    seconds = median([f.seconds for f in runs])
    rate = median([f.rate for f in runs])
    summary = Figures(label, round(rate * seconds), seconds, [], generator=runs[0].generator)
    summary.reported = {q: median([f.pct(q) for f in runs]) for q in (50, 95, 99)}
    summary.cpu = {
        name: median([f.cpu[name] / f.events for f in runs]) * summary.events
        for name in runs[0].cpu
    }
    return summary


def report(
    runs: dict[str, list[tuple[Figures, Figures]]],
    journey: SimulationResult,
    rss: dict[str, float],
    generator: str,
    args: argparse.Namespace,
    half_rate: float,
    histories: HistoryFigures,
) -> None:
    console.print(f"\nmachine: {os.cpu_count()} cores; load generator for the service: {generator}")
    console.print(
        f"{args.rounds} rounds per comparison, sides alternating, each run {args.seconds:.0f}s "
        f"at C={args.concurrency} on a caught-up worker; batching "
        f"{'off' if args.no_batching else 'on'}; ½ load = {half_rate:.0f} events/s, open loop "
        "(the Python clients)"
    )
    table = Table(title="ingest, medians: baseline (raw signal-with-start) vs service (webhooks)")
    for column in ("run", "events/s", "p50 ms", "p95 ms", "p99 ms", "service/baseline"):
        table.add_column(column, justify="right")
    summary: list[Figures] = []
    ratios: dict[str, str] = {}
    for kind, pairs in runs.items():
        base = median_figures(pairs[0][0].label, [b for b, _ in pairs])
        service = median_figures(pairs[0][1].label, [s for _, s in pairs])
        summary += [base, service]
        if kind == "½ load":
            each = [s.pct(99) / b.pct(99) for b, s in pairs]
            ratio = f"p99 {median(each):.2f}x"
        else:
            each = [s.rate / b.rate for b, s in pairs]
            ratio = f"{median(each):.2f}"
        ratios[kind] = f"{ratio} (rounds: {', '.join(f'{x:.2f}' for x in each)})"
        for figures in (base, service):
            table.add_row(
                figures.label,
                f"{figures.rate:.0f}",
                f"{figures.pct(50):.1f}",
                f"{figures.pct(95):.1f}",
                f"{figures.pct(99):.1f}",
                ratio if figures is service else "",
            )
    console.print(table)
    for kind, text in ratios.items():
        console.print(f"service/baseline {kind}: {text}")
    cpu = Table(title="CPU ms per event, medians (where the two cores go)")
    names = ["temporal", "worker", "api", "load generator"]
    cpu.add_column("run", justify="right")
    for name in names:
        cpu.add_column(name, justify="right")
    for figures in summary:
        per_event = figures.cpu_ms_per_event()
        cpu.add_row(figures.label, *(f"{per_event.get(n, 0.0):.2f}" for n in names))
    console.print(cpu)
    console.print(journey_line(journey, rss))
    print(
        json.dumps(
            {
                "events": args.events,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "generator": generator,
                "rows": [
                    {
                        "label": f.label,
                        "events_per_s": round(f.rate, 1),
                        "p50_ms": round(f.pct(50), 2),
                        "p95_ms": round(f.pct(95), 2),
                        "p99_ms": round(f.pct(99), 2),
                        "cpu_ms_per_event": {
                            k: round(v, 3) for k, v in f.cpu_ms_per_event().items()
                        },
                    }
                    for f in summary
                ],
                "ratios": ratios,
                "journey": journey_json(journey),
                "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
                "history": histories.as_json(),
                "code": code_under_test(),
            }
        )
    )


def journey_line(journey: SimulationResult, rss: dict[str, float]) -> str:
    return (
        f"journeys: {len(journey.runs)} users in {journey.seconds:.1f}s, "
        f"{journey.requests / journey.seconds:.0f} requests/s, mismatches {journey.mismatches}; "
        "peak RSS " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items())
    )


def journey_json(journey: SimulationResult) -> dict[str, object]:
    return {
        "users": len(journey.runs),
        "seconds": round(journey.seconds, 2),
        "mismatches": journey.mismatches,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=8000, help="events prepared per run (more than it takes)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="C in-flight requests")
    parser.add_argument("--users", type=int, default=300, help="users in the journey run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="rounds per comparison (even: each side goes first equally often)",
    )
    parser.add_argument(
        "--seconds", type=int, default=10, help="length of each ingest run (whole seconds: wrk's)"
    )
    parser.add_argument("--half-load-seconds", type=float, default=10.0)
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument("--no-batching", action="store_true", help="one signal per event")
    parser.add_argument(
        "--ordinary",
        type=int,
        default=30,
        help="ordinary journeys (six webhooks a second apart) in the history phase; 0: none",
    )
    parser.add_argument(
        "--only-history",
        action="store_true",
        help="only the journeys and their history events and server CPU; no ingest rounds",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
