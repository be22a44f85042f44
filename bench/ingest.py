"""Ingest benchmark: the service against the only honest baseline, Temporal itself.

    python bench/ingest.py [--events 3000] [--concurrency 32] [--users 300]

One dev server (SQLite file, the same pragmas as ``onboarding dev``) is started for the run, with
``onboarding worker`` and ``onboarding api`` as separate processes, as in production.

1. baseline: this process's raw Temporal client doing signal-with-start, M events, concurrency C;
2. service: the same M events as signed webhooks through ``POST /webhooks/smile`` over HTTP,
   sent by ``wrk`` (pre-signed requests cycled by a Lua script) when it is installed, otherwise by
   an asyncio httpx client in this process (printed either way);

each for one-event users and for bursty users (three data events at once), then both again at
half the baseline's throughput (open loop) for latency, then a journey run of N simulated users
(wall time, requests/s, peak RSS of the worker and the API). Figures are printed, never asserted.
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

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from api.signatures import sign
from onboarding.devserver import TemporalDevServer
from onboarding.identity import workflow_id_for
from onboarding.models import Event, EventBatch, OnboardingInput, Source
from onboarding.serving import serving
from onboarding.settings import Settings
from onboarding.simulate import SimulationConfig, simulate
from onboarding.smile_standin import create_standin_app
from workflows.onboarding import OnboardingWorkflow

ONBOARDING = Path(sys.executable).parent / "onboarding"
WRK = shutil.which("wrk")
SECRET, ADMIN, CALLBACK = "bench-webhook-secret", "bench-admin-token", "bench-callback-secret"
SMILE_KEY, SMILE_SECRET = "bench-key", "bench-secret"
BURST = ("IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED")
console = Console()


@dataclass
class Figures:
    label: str
    events: int
    seconds: float
    latencies_ms: list[float]
    generator: str = "python"
    reported: dict[int, float] | None = None  # percentiles as the load generator reported them

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def pct(self, q: int) -> float:
        if self.reported is not None:
            return self.reported[q]
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def closed_loop(
    label: str, items: list[object], concurrency: int, send: Callable[[object], Awaitable[None]]
) -> Figures:
    """Concurrency C, as fast as it goes; bursts go in together."""
    latencies: list[float] = []
    queue = list(reversed(items))

    async def lane() -> None:
        while queue:
            item = queue.pop()
            started = time.perf_counter()
            await send(item)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Figures(label, len(items), time.perf_counter() - started, latencies)


async def open_loop(
    label: str, items: list[object], rate: float, send: Callable[[object], Awaitable[None]]
) -> Figures:
    """A fixed arrival rate, independent of how fast answers come (for honest latency)."""
    latencies: list[float] = []

    async def one(item: object) -> None:
        started = time.perf_counter()
        await send(item)
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    started = time.perf_counter()
    for index, item in enumerate(items):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(item)))
    await asyncio.gather(*tasks)
    return Figures(label, len(items), time.perf_counter() - started, latencies)


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
        )  # type: ignore[arg-type]
        user = str(env["data"]["userId"])  # type: ignore[index]
        await client.start_workflow(
            OnboardingWorkflow.run,
            OnboardingInput(user_id=user, options=options),
            id=workflow_id_for(user),
            task_queue=settings.task_queue,
            start_signal="ingest",
            start_signal_args=[EventBatch(events=[event])],
        )

    return send


def http_sender(http: httpx.AsyncClient) -> Callable[[object], Awaitable[None]]:
    async def send(item: object) -> None:
        body, signature = item  # type: ignore[misc]
        response = await http.post(
            "/webhooks/smile", content=body, headers={"Smile-Signature": signature}
        )
        if response.status_code != 202:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    return send


def presign(envelopes: list[dict[str, object]]) -> list[tuple[bytes, str]]:
    bodies = [json.dumps(e, separators=(",", ":")).encode() for e in envelopes]
    return [(b, sign(b, SECRET)) for b in bodies]


WRK_SCRIPT = """
local requests, threads, counter = {}, {}, 0
function setup(thread)
  counter = counter + 1; thread:set("id", counter); table.insert(threads, thread)
end
function init(args)
  local n, i = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if i % n == id - 1 then
      local sig, body = line:match("^(%S+) (.*)$")
      table.insert(requests, wrk.format("POST", "/webhooks/smile",
        {["Smile-Signature"] = sig, ["Content-Type"] = "application/json"}, body))
    end
    i = i + 1
  end
  next_index = 0
end
function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
function done(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.errors.status))
end
"""


def run_wrk(
    label: str,
    url: str,
    signed: list[tuple[bytes, str]],
    concurrency: int,
    workdir: Path,
    seconds: float,
) -> Figures:
    """wrk for a fixed time, cycling through the pre-signed requests (wrk cannot stop after a
    count); M should exceed what the service can take in that time, or later ones repeat."""
    threads = max(1, min(2, concurrency))
    data = workdir / f"{label.replace(' ', '_')}.txt"
    data.write_text("".join(f"{s} {b.decode()}\n" for b, s in signed))
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        [
            WRK or "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{seconds:.0f}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
            "--",
            str(data),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    requests, duration_us, p50, p95, p99, errors = (int(v) for v in line.split()[1:])
    if errors:
        console.print(f"[red]{label}: {errors} non-2xx answers[/red]")
    reported = {50: p50 / 1000, 95: p95 / 1000, 99: p99 / 1000}
    return Figures(label, requests, duration_us / 1e6, [], generator="wrk", reported=reported)


async def drain(client: Client, settings: Settings, patience: float = 180.0) -> float:
    """Wait until the worker has caught up: a fresh onboarding's first event must be visible
    to a query within half a second. Returns the seconds waited."""
    from onboarding.operations import Onboardings

    ops = Onboardings(client, settings)
    started = time.perf_counter()
    while time.perf_counter() - started < patience:
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
        while True:
            # Not started yet, or Temporal busy: keep asking.
            with contextlib.suppress(Exception):
                if (await ops.get(user)).events_total == 1:
                    break
            await asyncio.sleep(0.05)
        if time.perf_counter() - probe < 0.5:
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - started


# --- the stack ------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="onboarding-bench-"))
    use_wrk = WRK is not None and not args.no_wrk
    generator = "wrk (pre-signed requests cycled by Lua)" if use_wrk else "asyncio httpx client"
    server = TemporalDevServer(workdir, port=free_port(), ui_port=free_port())
    client = await server.start()
    smile_port, api_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMILE_", "ONBOARDING_"))},
        "TEMPORAL_ADDRESS": server.address,
        "SMILE_WEBHOOK_SECRET": SECRET,
        "ONBOARDING_ADMIN_TOKEN": ADMIN,
        "ONBOARDING_CALLBACK_SECRET": CALLBACK,
        "SMILE_API_BASE_URL": f"http://127.0.0.1:{smile_port}/v1",
        "SMILE_API_KEY": SMILE_KEY,
        "SMILE_API_SECRET": SMILE_SECRET,
        "ONBOARDING_PORT": str(api_port),
        "ONBOARDING_LOG_LEVEL": "WARNING",
        "ONBOARDING_BATCH_SIGNALS": "false" if args.no_batching else "true",
    }
    settings = Settings(task_queue="smile-onboarding")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with serving(create_standin_app(SMILE_KEY, SMILE_SECRET), "127.0.0.1", smile_port):
            # Long-lived service processes, managed here, not awaited.
            worker = subprocess.Popen([str(ONBOARDING), "worker"], env=env)  # noqa: ASYNC220
            api = subprocess.Popen([str(ONBOARDING), "api"], env=env)  # noqa: ASYNC220
            processes += [worker, api]
            await wait_ready(api_url, api)
            # Journeys first, on a fresh server: the ingest runs leave the worker a backlog.
            journey = await simulate(
                SimulationConfig(
                    api_url=api_url,
                    admin_token=ADMIN,
                    webhook_secret=SECRET,
                    users=args.users,
                    concurrency=args.concurrency,
                    seed=1,
                    stall_after=2.0,
                ),
                console,
            )
            rss_after_journeys = peak_rss_mb(worker.pid)
            rows: list[tuple[Figures, Figures]] = []
            limits = httpx.Limits(max_connections=args.concurrency * 2)
            async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as http:
                for bursty in (False, True):
                    kind = "bursty" if bursty else "one-event"
                    waited = await drain(client, settings)
                    console.print(f"worker caught up after {waited:.1f}s; {kind} runs")
                    base = await closed_loop(
                        f"baseline {kind}",
                        workload(args.events, bursty, f"b{int(bursty)}"),
                        args.concurrency,
                        raw_sender(client, settings),
                    )  # type: ignore[arg-type]
                    signed = presign(workload(args.events, bursty, f"s{int(bursty)}"))
                    if use_wrk:
                        service = run_wrk(
                            f"service {kind}",
                            api_url,
                            signed,
                            args.concurrency,
                            workdir,
                            args.wrk_seconds,
                        )
                    else:
                        service = await closed_loop(
                            f"service {kind}",
                            signed,
                            args.concurrency,  # type: ignore[arg-type]
                            http_sender(http),
                        )
                    rows.append((base, service))
                    await drain(client, settings)
                # Latency at half the baseline's one-event throughput, open loop, both sides,
                # each starting on a caught-up worker.
                await drain(client, settings)
                rate = rows[0][0].rate / 2
                count = max(50, int(rate * args.half_load_seconds))
                half_base = await open_loop(
                    "baseline at ½ load",
                    workload(count, False, "hb"),  # type: ignore[arg-type]
                    rate,
                    raw_sender(client, settings),
                )
                await drain(client, settings)
                half_service = await open_loop(
                    "service at ½ load",
                    presign(workload(count, False, "hs")),  # type: ignore[arg-type]
                    rate,
                    http_sender(http),
                )
                rows.append((half_base, half_service))
            rss = {
                "worker after journeys": rss_after_journeys,
                "worker after all": peak_rss_mb(worker.pid),
                "api": peak_rss_mb(api.pid),
            }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(rows, journey, rss, generator, args, rate)


def report(
    rows: list[tuple[Figures, Figures]],
    journey: object,
    rss: dict[str, float],
    generator: str,
    args: argparse.Namespace,
    half_rate: float,
) -> None:
    console.print(f"\nmachine: {os.cpu_count()} cores; load generator for the service: {generator}")
    console.print(
        f"M={args.events} events, C={args.concurrency}; batching "
        f"{'off' if args.no_batching else 'on'}; ½ load = {half_rate:.0f} events/s"
    )
    table = Table(title="ingest: baseline (raw signal-with-start) vs service (signed webhooks)")
    for column in ("run", "events/s", "p50 ms", "p95 ms", "p99 ms", "service/baseline"):
        table.add_column(column, justify="right")
    for base, service in rows:
        for figures in (base, service):
            ratio = f"{service.rate / base.rate:.2f}" if figures is service and base.rate else ""
            if "½" in figures.label and figures is service:
                ratio = f"p99 {service.pct(99) / base.pct(99):.2f}x"
            table.add_row(
                figures.label,
                f"{figures.rate:.0f}",
                f"{figures.pct(50):.1f}",
                f"{figures.pct(95):.1f}",
                f"{figures.pct(99):.1f}",
                ratio,
            )
    console.print(table)
    result = journey  # a SimulationResult
    console.print(
        f"journeys: {len(result.runs)} users in {result.seconds:.1f}s, "  # type: ignore[attr-defined]
        f"{result.requests / result.seconds:.0f} requests/s, mismatches {result.mismatches}; "  # type: ignore[attr-defined]
        "peak RSS " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items())
    )
    print(
        json.dumps(
            {
                "events": args.events,
                "concurrency": args.concurrency,
                "generator": generator,
                "rows": [
                    {
                        "label": f.label,
                        "events_per_s": round(f.rate, 1),
                        "p50_ms": round(f.pct(50), 2),
                        "p95_ms": round(f.pct(95), 2),
                        "p99_ms": round(f.pct(99), 2),
                    }
                    for pair in rows
                    for f in pair
                ],
                "journey": {
                    "users": len(result.runs),
                    "seconds": round(result.seconds, 2),  # type: ignore[attr-defined]
                    "mismatches": result.mismatches,
                },  # type: ignore[attr-defined]
                "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
            }
        )
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000, help="M events per run")
    parser.add_argument("--concurrency", type=int, default=32, help="C in-flight requests")
    parser.add_argument("--users", type=int, default=300, help="users in the journey run")
    parser.add_argument("--half-load-seconds", type=float, default=10.0)
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument("--wrk-seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--no-batching", action="store_true", help="one signal per event")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
