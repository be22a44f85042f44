"""``onboarding simulate``: synthetic users played through realistic journeys against a running
service, over HTTP only, the way Smile and the Wink Widget would: signed webhooks shuffled within
a journey, some duplicated, some delivered again as Smile does after a 5xx; widget callbacks with
callback tokens; token expiries and refreshes; account errors retried with another provider;
upload-only users; users who stall and users who come back. At the end every user's state is
read back and compared with what its journey should have produced."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.signatures import sign

# journey kind -> expected (stage, status) once it has been played
EXPECTED: dict[str, tuple[str, str]] = {
    "connected_with_data": ("data_ready", "active"),
    "upload_only": ("data_ready", "active"),
    "error_then_other_provider": ("data_ready", "active"),
    "token_refresh": ("connected", "active"),
    "stalls": ("account_created", "stalled"),
    "comes_back": ("connected", "active"),
}
KINDS = list(EXPECTED)


@dataclass(frozen=True)
class SimulationConfig:
    api_url: str
    admin_token: str
    webhook_secret: str
    users: int
    concurrency: int = 10
    seed: int = 1
    stall_after: float = 2.0  # seconds: the short stall timeout given to stalling users
    settle_timeout: float = 60.0
    duplicate_rate: float = 0.2
    redelivery_rate: float = 0.1


@dataclass
class UserRun:
    kind: str
    user_id: str = ""
    requests: int = 0
    retried: int = 0
    actual: tuple[str, str] | None = None
    error: str | None = None


@dataclass
class SimulationResult:
    runs: list[UserRun]
    seconds: float
    requests: int
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def mismatches(self) -> int:
        return sum(1 for r in self.runs if r.actual != EXPECTED[r.kind])


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class _Player:
    """Plays one user's journey; the only shared state is the HTTP client."""

    def __init__(self, http: httpx.AsyncClient, config: SimulationConfig, rng: random.Random):
        self.http = http
        self.config = config
        self.rng = rng
        self.admin = {"Authorization": f"Bearer {config.admin_token}"}
        self.clock = datetime.now(UTC)

    async def _post(self, run: UserRun, url: str, **kwargs: Any) -> httpx.Response:
        """Like Smile (and a sane front end): a 5xx is retried, twice, after a pause."""
        for attempt in range(3):
            run.requests += 1
            response = await self.http.post(url, **kwargs)
            if response.status_code < 500:
                return response
            run.retried += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")

    def _webhook(self, user: str, event_type: str, offset: int, **data: Any) -> bytes:
        envelope = {
            "id": f"et-{uuid.UUID(int=self.rng.getrandbits(128)).hex}",
            "version": 1,
            "type": event_type,
            "createdAt": _iso(self.clock + timedelta(seconds=offset)),
            "data": {"userId": user, **data},
        }
        return json.dumps(envelope).encode()

    async def deliver(self, run: UserRun, bodies: list[bytes]) -> None:
        """Smile's way: any order, sometimes twice, sometimes again after a failed attempt."""
        deliveries = list(bodies)
        self.rng.shuffle(deliveries)
        deliveries += [b for b in bodies if self.rng.random() < self.config.duplicate_rate]
        for body in deliveries:
            headers = {"Smile-Signature": sign(body, self.config.webhook_secret),
                       "Content-Type": "application/json"}  # fmt: skip
            response = await self._post(run, "/webhooks/smile", content=body, headers=headers)
            if response.status_code not in (200, 202):
                raise RuntimeError(f"webhook refused: HTTP {response.status_code} {response.text}")
            if self.rng.random() < self.config.redelivery_rate:
                await self._post(run, "/webhooks/smile", content=body, headers=headers)

    async def callback(self, run: UserRun, token: str, name: str, data: dict[str, Any]) -> None:
        body = {"callback": name, "data": data, "id": f"cb-{self.rng.getrandbits(64):x}"}
        headers = {"Authorization": f"Bearer {token}"}
        url = f"/onboardings/{run.user_id}/callbacks"
        response = await self._post(run, url, json=body, headers=headers)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"callback refused: HTTP {response.status_code} {response.text}")
        if self.rng.random() < self.config.duplicate_rate:  # the front end retries too
            await self._post(run, url, json=body, headers=headers)

    async def state(self, run: UserRun) -> dict[str, Any]:
        run.requests += 1
        response = await self.http.get(f"/onboardings/{run.user_id}", headers=self.admin)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def wait_for(self, run: UserRun, stage: str, status: str) -> None:
        deadline = time.monotonic() + self.config.settle_timeout
        while time.monotonic() < deadline:
            view = await self.state(run)
            if (view["stage"], view["status"]) == (stage, status):
                return
            await asyncio.sleep(0.2)

    async def play(self, run: UserRun) -> None:
        short = run.kind in ("stalls", "comes_back")
        body: dict[str, Any] = {"externalMetadata": {"simulation": run.kind}}
        if short:
            body["timeouts"] = {"stall": {"account_created": f"{self.config.stall_after}s"}}
        # An idempotency key makes the retry of a start that timed out safe.
        key = {"Idempotency-Key": f"sim-{self.rng.getrandbits(64):x}"}
        response = await self._post(run, "/onboardings", json=body, headers=self.admin | key)
        if response.status_code != 201:
            raise RuntimeError(f"start refused: HTTP {response.status_code} {response.text}")
        started = response.json()
        run.user_id = user = started["userId"]
        token = started["callbackToken"]
        hook = self._webhook
        provider, other = self.rng.sample(["abccorp", "xyzpayroll", "govportal", "gig"], 2)
        account, retry_account = f"a-{uuid.uuid4().hex}", f"a-{uuid.uuid4().hex}"
        await self.callback(run, token, "onUIEvent", {"eventName": "ConsentPageOpened"})
        data_events = [
            hook(user, "IDENTITY_ADDED", 20, accountId=account, identityId="i-1"),
            hook(user, "EMPLOYMENTS_ADDED", 21, accountId=account, count=2),
            hook(user, "INCOMES_ADDED", 22, accountId=account, count=12),
        ]
        if run.kind == "connected_with_data":
            await self.callback(run, token, "onAccountConnected",
                                {"accountId": account, "providerId": provider})  # fmt: skip
            await self.deliver(run, [
                hook(user, "USER_CREATED", 0),
                hook(user, "ACCOUNT_CREATED", 5, accountId=account, providers=[provider]),
                hook(user, "ACCOUNT_CONNECTED", 10, accountId=account, providers=[provider]),
                *data_events,
            ])  # fmt: skip
            await self.callback(run, token, "onClose", {"reason": "exit"})
        elif run.kind == "upload_only":
            archive = f"archive-{uuid.uuid4().hex}"
            await self.callback(run, token, "onUploadsCreated", {"uploads": {"count": 2}})
            await self.deliver(run, [
                hook(user, "ARCHIVE_STARTED", 5, archiveId=archive),
                hook(user, "ARCHIVE_ANALYZED", 30, archiveId=archive),
                hook(user, "TASK_FINISHED", 31, sourceId=archive, sourceType="ARCHIVE",
                     taskType="ANALYZE_ARCHIVE", status="SUCCEEDED"),
            ])  # fmt: skip
        elif run.kind == "error_then_other_provider":
            await self.deliver(run, [
                hook(user, "ACCOUNT_CREATED", 1, accountId=retry_account, providers=[other]),
                hook(user, "ACCOUNT_FAILED", 3, accountId=retry_account, providers=[other],
                     errorCode="INVALID_CREDENTIALS", errorMessage="Invalid username or password!"),
            ])  # fmt: skip
            error = {"accountId": retry_account, "errorCode": "INVALID_CREDENTIALS"}
            await self.callback(run, token, "onAccountError", error)
            data = [hook(user, t, o + 20, accountId=account, count=1)
                    for t, o in (("IDENTITY_ADDED", 0), ("EMPLOYMENTS_ADDED", 1),
                                 ("INCOMES_ADDED", 2))]  # fmt: skip
            await self.deliver(run, [
                hook(user, "ACCOUNT_CREATED", 10, accountId=account, providers=[provider]),
                hook(user, "ACCOUNT_CONNECTED", 15, accountId=account, providers=[provider]),
                *data,
            ])  # fmt: skip
        elif run.kind == "token_refresh":
            await self.callback(run, token, "onTokenExpired", {})
            fresh = await self._post(run, f"/onboardings/{user}/link-token", headers=self.admin)
            if fresh.status_code != 200:
                raise RuntimeError(f"link-token refused: HTTP {fresh.status_code} {fresh.text}")
            token = fresh.json()["callbackToken"]
            await self.callback(run, token, "onAccountCreated", {"accountId": account})
            await self.deliver(run, [
                hook(user, "ACCOUNT_CREATED", 40, accountId=account, providers=[provider]),
                hook(user, "ACCOUNT_CONNECTED", 45, accountId=account, providers=[provider]),
            ])  # fmt: skip
        elif run.kind in ("stalls", "comes_back"):
            await self.deliver(run, [
                hook(user, "USER_CREATED", 0),
                hook(user, "ACCOUNT_CREATED", 5, accountId=account, providers=[provider]),
            ])  # fmt: skip
            await self.callback(run, token, "onClose", {"reason": "close"})
            await self.wait_for(run, "account_created", "stalled")
            if run.kind == "comes_back":
                await self.deliver(run, [
                    hook(user, "ACCOUNT_CONNECTED", 3600, accountId=account, providers=[provider]),
                ])  # fmt: skip
        expected = EXPECTED[run.kind]
        await self.wait_for(run, *expected)
        view = await self.state(run)
        run.actual = (view["stage"], view["status"])


def plan(users: int, seed: int) -> list[UserRun]:
    """Every kind at least once (when there are enough users), then a seeded mix."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not a secret
    kinds = [KINDS[i % len(KINDS)] for i in range(users)]
    rng.shuffle(kinds)
    return [UserRun(kind) for kind in kinds]


async def simulate(config: SimulationConfig, console: Console | None = None) -> SimulationResult:
    console = console or Console()
    runs = plan(config.users, config.seed)
    gate = asyncio.Semaphore(config.concurrency)
    limits = httpx.Limits(max_connections=config.concurrency * 2)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=config.api_url, timeout=60, limits=limits) as http:
        with Progress(
            TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[requests]} requests"), TimeElapsedColumn(),
            console=console, transient=False,
        ) as progress:  # fmt: skip
            bar = progress.add_task("users", total=len(runs), requests=0)

            async def one(index: int, run: UserRun) -> None:
                async with gate:
                    player = _Player(http, config, random.Random(config.seed * 100_003 + index))  # noqa: S311
                    try:
                        await player.play(run)
                    except Exception as err:  # reported per user, never hidden
                        run.error = f"{type(err).__name__}: {err}"
                    total = sum(r.requests for r in runs)
                    progress.update(bar, advance=1, requests=total)

            await asyncio.gather(*(one(i, run) for i, run in enumerate(runs)))
    return SimulationResult(runs, time.monotonic() - started, sum(r.requests for r in runs))


def report(result: SimulationResult, console: Console) -> None:
    table = Table(title="Simulated journeys: expected vs actual")
    for column in ("journey", "users", "expected stage/status", "matched", "mismatches"):
        table.add_column(column)
    for kind in KINDS:
        runs = [r for r in result.runs if r.kind == kind]
        if not runs:
            continue
        matched = sum(1 for r in runs if r.actual == EXPECTED[kind])
        table.add_row(kind, str(len(runs)), "/".join(EXPECTED[kind]), str(matched),
                      str(len(runs) - matched))  # fmt: skip
    console.print(table)
    for run in result.runs:
        if run.actual != EXPECTED[run.kind]:
            got = "/".join(run.actual) if run.actual else run.error or "no state"
            console.print(f"  mismatch: {run.kind} {run.user_id or '(not started)'}: {got}")
    rate = result.requests / result.seconds if result.seconds else 0.0
    retried = sum(r.retried for r in result.runs)
    console.print(
        f"{len(result.runs)} users, {result.requests} requests in {result.seconds:.1f}s "
        f"({rate:.0f} requests/s, {retried} retried after a 5xx); mismatches: {result.mismatches}"
    )
