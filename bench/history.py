"""History events and Temporal server CPU per journey, for ``bench/ingest.py``.

Two kinds of journey are measured, each on a server that is quiet before it starts:

- the **simulated journeys** (``onboarding simulate``'s mix of kinds, which the benchmark runs
  anyway), reported per kind;
- the **ordinary journey**: six signed webhooks through ``POST /webhooks/smile``, a second apart
  in ``createdAt`` and in real time, each sent only once the previous one was answered, so each is
  its own signal (USER_CREATED, ACCOUNT_CREATED, ACCOUNT_CONNECTED, IDENTITY_ADDED,
  EMPLOYMENTS_ADDED, INCOMES_ADDED). The journeys of this phase run side by side.

For every workflow of a phase, its whole history (every run, should it have continued as new) is
fetched with the Temporal client once the phase is over and the server and worker are quiet, and
its events are counted, by type. The CPU that the Temporal server (and the worker and the API)
spent from the start of a phase until they were quiet again, divided by the number of journeys,
is its CPU per journey. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from onboarding.core.identity import workflow_id_for
from onboarding.core.signatures import sign
from onboarding.tooling.simulate import KINDS, SimulationResult

ORDINARY = "ordinary"
ALL_SIMULATED = "all simulated"
ORDINARY_EVENTS = (
    "USER_CREATED",
    "ACCOUNT_CREATED",
    "ACCOUNT_CONNECTED",
    "IDENTITY_ADDED",
    "EMPLOYMENTS_ADDED",
    "INCOMES_ADDED",
)
# The event types shown as columns (short headings); every type is in the JSON and in the
# ordinary journey's own table.
COLUMNS = {
    "WorkflowTaskCompleted": "wf tasks",
    "WorkflowExecutionSignaled": "signals",
    "TimerStarted": "timers started",
    "TimerCanceled": "timers canceled",
    "TimerFired": "timers fired",
    "UpsertWorkflowSearchAttributes": "SA upserts",
    "ActivityTaskScheduled": "activities",
}

T = TypeVar("T")
Meter = Callable[[], dict[str, float]]  # CPU seconds so far, per process of the stack


def event_type_name(value: int) -> str:
    """``EVENT_TYPE_TIMER_STARTED`` -> ``TimerStarted``, as Temporal's UI names them."""
    name = EventType.Name(value).removeprefix("EVENT_TYPE_")  # type: ignore[arg-type]
    return "".join(word.capitalize() for word in name.split("_"))


async def history_counts(client: Client, workflow_id: str) -> Counter[str]:
    """Events of a workflow by type, over every run of its chain (continue-as-new included)."""
    counts: Counter[str] = Counter()
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        counts.update(event_type_name(event.event_type) for event in history.events)
        first = history.events[0].workflow_execution_started_event_attributes
        run_id = first.continued_execution_run_id or None
        if run_id is None:
            return counts


async def all_counts(
    client: Client, workflow_ids: list[str], concurrency: int = 16
) -> list[Counter[str]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> Counter[str]:
        async with gate:
            return await history_counts(client, workflow_id)

    return list(await asyncio.gather(*(one(w) for w in workflow_ids)))


async def until_quiet(
    read: Meter,
    busy: tuple[str, ...] = ("temporal", "worker"),
    idle_cores: float = 0.1,
    patience: float = 30.0,
) -> None:
    """Until the server and the worker used under ``idle_cores`` between them for a second."""
    deadline = time.perf_counter() + patience
    while time.perf_counter() < deadline:
        before = read()
        await asyncio.sleep(1.0)
        after = read()
        if sum(after[name] - before[name] for name in busy) < idle_cores:
            return


@dataclass
class KindFigures:
    """The histories of one kind of journey."""

    kind: str
    counts: list[Counter[str]]
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per journey, for a whole phase
    states: Counter[str] = field(default_factory=Counter)  # final stage/status, when read

    @property
    def totals(self) -> list[int]:
        return [sum(c.values()) for c in self.counts]

    def mean_of(self, event_type: str) -> float:
        return mean(c[event_type] for c in self.counts) if self.counts else 0.0

    def by_type(self) -> dict[str, float]:
        types = sorted({t for c in self.counts for t in c})
        return {t: round(self.mean_of(t), 2) for t in types}

    def as_json(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "journeys": len(self.counts),
            "events_mean": round(mean(totals), 2) if totals else 0.0,
            "events_min": min(totals, default=0),
            "events_max": max(totals, default=0),
            "by_type": self.by_type(),
            "cpu_ms_per_journey": {k: round(v, 2) for k, v in self.cpu_ms.items()},
            "states": dict(self.states),
        }


@dataclass
class HistoryFigures:
    rows: list[KindFigures]  # the ordinary journey, then each simulated kind, then all of those
    background_cores: float  # what the server and worker used when idle, before the phases

    def as_json(self) -> dict[str, Any]:
        return {
            "background_cores": round(self.background_cores, 4),
            "kinds": {row.kind: row.as_json() for row in self.rows},
        }


async def measure_phase(
    read: Meter, journeys: int, play: Callable[[], Awaitable[T]]
) -> tuple[T, dict[str, float]]:
    """What ``play`` returns, and the CPU ms per journey of each process from its start until
    the server and the worker are quiet again."""
    before = read()
    result = await play()
    await until_quiet(read)
    after = read()
    cpu = {name: (after[name] - before[name]) * 1000 / max(journeys, 1) for name in before}
    return result, cpu


def ordinary_webhook(user: str, event_type: str, at: datetime, secret: str) -> tuple[bytes, str]:
    data: dict[str, object] = {"userId": user}
    if event_type != "USER_CREATED":
        data["accountId"] = f"a-{user}"
    if event_type.startswith("ACCOUNT_"):
        data["providers"] = ["abccorp"]
    if event_type == "IDENTITY_ADDED":
        data["identityId"] = "i-1"
    elif event_type.endswith("S_ADDED"):
        data["count"] = 2
    envelope = {
        "id": f"et-{uuid.uuid4().hex}",
        "version": 1,
        "type": event_type,
        "createdAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    return body, sign(body, secret)


async def play_ordinary(api_url: str, secret: str, users: list[str]) -> None:
    """Each user's six webhooks one per second (``createdAt`` and real time), each sent once the
    previous one was answered (so durable): six signals. The users go side by side."""
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:

        async def one(user: str) -> None:
            clock = datetime.now(UTC).replace(microsecond=0)
            started = time.perf_counter()
            for second, event_type in enumerate(ORDINARY_EVENTS):
                delay = started + second - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body, signature = ordinary_webhook(
                    user, event_type, clock + timedelta(seconds=second), secret
                )
                headers = {"Smile-Signature": signature, "Content-Type": "application/json"}
                for attempt in range(3):  # a 5xx is retried, as Smile does
                    response = await http.post("/webhooks/smile", content=body, headers=headers)
                    if response.status_code < 500:
                        break
                    await asyncio.sleep(0.5 * (attempt + 1))
                if response.status_code not in (200, 202):
                    raise RuntimeError(
                        f"webhook refused: HTTP {response.status_code} {response.text[:200]}"
                    )

        await asyncio.gather(*(one(u) for u in users))


async def final_states(api_url: str, admin: str, users: list[str]) -> Counter[str]:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        states: Counter[str] = Counter()
        for user in users:
            response = await http.get(
                f"/onboardings/{user}", headers={"Authorization": f"Bearer {admin}"}
            )
            view = response.json() if response.status_code == 200 else {}
            states[f"{view.get('stage', '?')}/{view.get('status', response.status_code)}"] += 1
        return states


async def ordinary_phase(
    client: Client, read: Meter, api_url: str, secret: str, admin: str, journeys: int
) -> KindFigures:
    await until_quiet(read)
    tag = uuid.uuid4().hex[:8]
    users = [f"bench-ordinary-{tag}-{i}" for i in range(journeys)]
    _, cpu = await measure_phase(read, journeys, lambda: play_ordinary(api_url, secret, users))
    counts = await all_counts(client, [workflow_id_for(u) for u in users])
    states = await final_states(api_url, admin, users)
    return KindFigures(ORDINARY, counts, cpu, states)


async def simulated_figures(
    client: Client, journey: SimulationResult, cpu_ms: dict[str, float]
) -> list[KindFigures]:
    """Per kind, the histories of the journeys that started; then all of them together, with
    the CPU per journey of the whole (concurrent) run."""
    played = [r for r in journey.runs if r.user_id]
    counts = await all_counts(client, [workflow_id_for(r.user_id) for r in played])
    rows = []
    for kind in KINDS:
        mine = [(r, c) for r, c in zip(played, counts, strict=True) if r.kind == kind]
        if mine:
            states = Counter("/".join(r.actual) if r.actual else "?" for r, _ in mine)
            rows.append(KindFigures(kind, [c for _, c in mine], states=states))
    rows.append(KindFigures(ALL_SIMULATED, counts, cpu_ms))
    return rows


async def background_cores(read: Meter, seconds: float = 2.0) -> float:
    """Cores the server and the worker use while nothing happens (timers, visibility)."""
    before = read()
    await asyncio.sleep(seconds)
    after = read()
    return sum(after[n] - before[n] for n in ("temporal", "worker")) / seconds


def report(figures: HistoryFigures, console: Console, code: str) -> None:
    # Wide enough for every column even when the output is not a terminal (a log, a pipe).
    console = Console(width=max(console.width, 180), no_color=not console.is_terminal)
    console.print(
        f"\nhistory events per journey (workflow code: {code}); background before the phases: "
        f"{figures.background_cores:.3f} cores (server and worker)"
    )
    table = Table(title="History events per journey (means; every run of each workflow)")
    table.add_column("journey", justify="left")
    for column in ("n", "events", "min-max", *COLUMNS.values(), "server CPU ms/journey"):
        table.add_column(column, justify="right")
    for row in figures.rows:
        totals = row.totals
        cpu = row.cpu_ms.get("temporal")
        table.add_row(
            row.kind,
            str(len(row.counts)),
            f"{mean(totals):.1f}" if totals else "-",
            f"{min(totals, default=0)}-{max(totals, default=0)}",
            *(f"{row.mean_of(c):.1f}" for c in COLUMNS),
            f"{cpu:.1f}" if cpu is not None else "",
        )
    console.print(table)
    console.print(
        "columns, per journey: " + "; ".join(f"{short} = {name}" for name, short in COLUMNS.items())
    )
    for row in figures.rows:
        if row.cpu_ms:
            console.print(
                f"CPU ms per journey, {row.kind}: "
                + ", ".join(f"{name} {ms:.1f}" for name, ms in row.cpu_ms.items())
                + (f"; final states {dict(row.states)}" if row.states else "")
            )
    ordinary = next((r for r in figures.rows if r.kind == ORDINARY), None)
    if ordinary is not None and ordinary.counts:
        detail = Table(title="The ordinary journey's events by type (mean per journey)")
        detail.add_column("event type", justify="left")
        detail.add_column("events", justify="right")
        for event_type, count in ordinary.by_type().items():
            detail.add_row(event_type, f"{count:.2f}")
        detail.add_row("total", f"{mean(ordinary.totals):.2f}")
        console.print(detail)
