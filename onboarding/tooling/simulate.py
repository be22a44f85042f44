"""``onboarding simulate``: synthetic users played through realistic journeys against a running
service, over HTTP only, the way Smile and the Wink Widget would: signed webhooks shuffled within
a journey, some duplicated, some delivered again as Smile does after a 5xx; widget callbacks with
callback tokens; token expiries and refreshes; account errors retried with another provider;
upload-only users; users who stall and users who come back; events that share one second;
providers that need no login (data, never ``ACCOUNT_CONNECTED``); uploads whose task is an
``UPLOAD``; lost task and data webhooks healed by reconciliation against the Smile stand-in; and
widget callbacks with only the fields Smile documents as always present. Every ``createdAt`` has
Smile's one-second precision. At the end every user's state is read back and compared with what
its journey should have produced."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onboarding.core.signatures import sign

# journey kind -> expected (stage, status) once it has been played
EXPECTED: dict[str, tuple[str, str]] = {
    "connected_with_data": ("data_ready", "active"),
    "upload_only": ("data_ready", "active"),
    "error_then_other_provider": ("data_ready", "active"),
    "token_refresh": ("connected", "active"),
    "stalls": ("account_created", "stalled"),
    "comes_back": ("connected", "active"),
    "same_second": ("connected", "active"),
    "no_login": ("data_ready", "active"),
    "upload": ("data_ready", "active"),
    "healed": ("data_ready", "active"),
    "minimal_callbacks": ("account_created", "active"),
}
KINDS = list(EXPECTED)
# Kinds that change Smile's records behind the service's back: they need the Smile stand-in.
NEEDS_STANDIN = frozenset({"healed"})


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
    # The Smile stand-in the service talks to (``onboarding dev``'s, e.g.
    # http://127.0.0.1:8234): without it the ``healed`` journeys are skipped.
    standin_url: str | None = None


@dataclass
class UserRun:
    kind: str
    user_id: str = ""
    requests: int = 0
    retried: int = 0
    actual: tuple[str, str] | None = None
    error: str | None = None
    problem: str | None = None  # the stage/status matched, a journey-specific fact did not

    @property
    def matched(self) -> bool:
        return self.actual == EXPECTED[self.kind] and self.problem is None


@dataclass
class SimulationResult:
    runs: list[UserRun]
    seconds: float
    requests: int
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # kind -> why it was not played

    @property
    def mismatches(self) -> int:
        return sum(1 for r in self.runs if not r.matched)


def _iso(value: datetime) -> str:
    """Smile's ``createdAt``: UTC, to the second (``2021-04-14T09:30:24Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Check = Callable[[dict[str, Any]], str | None]


def _statuses(view: dict[str, Any]) -> dict[str, str]:
    return {a["accountId"]: a["status"] for a in view["accounts"]}


class _Player:
    """Plays one user's journey; the only shared state is the HTTP client."""

    def __init__(self, http: httpx.AsyncClient, config: SimulationConfig, rng: random.Random):
        self.http = http
        self.config = config
        self.rng = rng
        self.admin = {"Authorization": f"Bearer {config.admin_token}"}
        self.clock = datetime.now(UTC).replace(microsecond=0)
        self.check: Check | None = None  # a journey-specific fact, checked at the end

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

    async def callback(
        self, run: UserRun, token: str, name: str, data: dict[str, Any] | None
    ) -> None:
        body: dict[str, Any] = {"callback": name, "id": f"cb-{self.rng.getrandbits(64):x}"}
        if data is not None:  # absent altogether: a callback called with no argument
            body["data"] = data
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

    async def record_at_smile(self, run: UserRun, user: str, event_type: str, **data: Any) -> None:
        """Change the stand-in's records as this event would, without delivering it: a webhook
        Smile sent and we never received."""
        assert self.config.standin_url is not None
        body = {"userId": user, "type": event_type, "data": data, "deliver": False}
        run.requests += 1
        response = await self.http.post(f"{self.config.standin_url}/_control/webhooks", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"stand-in refused: HTTP {response.status_code} {response.text}")

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
        # An idempotency key makes the retry of a start that timed out safe. It is fresh for
        # every run (not drawn from the seeded mix): the same seed played again against the
        # same service must start new users, not find the last run's.
        key = {"Idempotency-Key": f"sim-{uuid.uuid4().hex}"}
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
        elif run.kind == "same_second":
            await self.same_second(run, user, account, retry_account, provider, other)
        elif run.kind == "no_login":
            await self.no_login(run, user, account, provider)
        elif run.kind == "upload":
            await self.upload(run, user, token)
        elif run.kind == "healed":
            await self.healed(run, user, account, provider)
        elif run.kind == "minimal_callbacks":
            await self.minimal_callbacks(run, user, token, account, provider, other)
        expected = EXPECTED[run.kind]
        await self.wait_for(run, *expected)
        view = await self.state(run)
        run.actual = (view["stage"], view["status"])
        if self.check is not None:
            run.problem = self.check(view)

    async def same_second(
        self, run: UserRun, user: str, account: str, retried: str, provider: str, other: str
    ) -> None:
        """Smile's ``createdAt`` has one-second precision: a creation and its connection, and a
        failure and the retry that connected, often share a second. What they mean orders them
        (created < failed < connected), never their ids or arrival order."""
        hook = self._webhook
        second = 7
        await self.deliver(run, [
            hook(user, "ACCOUNT_CREATED", second, accountId=account, providers=[provider]),
            hook(user, "ACCOUNT_CONNECTED", second, accountId=account, providers=[provider]),
            hook(user, "ACCOUNT_FAILED", second, accountId=retried, providers=[other],
                 errorCode="INVALID_CREDENTIALS", errorMessage="Invalid username or password!"),
            hook(user, "ACCOUNT_CONNECTED", second, accountId=retried, providers=[other]),
        ])  # fmt: skip
        expected = {account: "connected", retried: "connected"}

        def check(view: dict[str, Any]) -> str | None:
            shown = _statuses(view)
            return None if shown == expected else f"accounts {shown}, expected {expected}"

        self.check = check

    async def no_login(self, run: UserRun, user: str, account: str, provider: str) -> None:
        """A provider that needs no login: Smile sends ``ACCOUNT_CREATED``, then data and a
        successful task, and never ``ACCOUNT_CONNECTED``; the data proves the connection."""
        hook = self._webhook
        await self.deliver(run, [
            hook(user, "USER_CREATED", 0),
            hook(user, "ACCOUNT_CREATED", 2, accountId=account, providers=[provider]),
            hook(user, "TASK_STARTED", 3, sourceId=account, sourceType="ACCOUNT",
                 taskType="LINK_ACCOUNT", providers=[provider]),
            hook(user, "IDENTITY_ADDED", 9, accountId=account, identityId=f"i-{account}",
                 providers=[provider]),
            hook(user, "INCOMES_ADDED", 9, accountId=account, count=6, providers=[provider]),
            hook(user, "TASK_FINISHED", 10, sourceId=account, sourceType="ACCOUNT",
                 taskType="LINK_ACCOUNT", status="SUCCEEDED", errorCode=None,
                 providers=[provider], datapoints=["IDENTITIES", "INCOMES"]),
        ])  # fmt: skip

        def check(view: dict[str, Any]) -> str | None:
            shown = [(a["status"], a["everConnected"]) for a in view["accounts"]]
            if shown != [("connected", True)]:
                return f"accounts {shown}, expected one connected (proven by its data)"
            return None

        self.check = check

    async def upload(self, run: UserRun, user: str, token: str) -> None:
        """Documents uploaded through the widget: the archive is started, then either its
        ``UPLOAD`` task succeeds or it is analyzed (or both); either makes data ready."""
        hook = self._webhook
        archive = f"archive-{uuid.UUID(int=self.rng.getrandbits(128)).hex}"
        await self.callback(run, token, "onUIEvent", {"eventName": "FileTypePageOpened"})
        await self.callback(run, token, "onUploadsCreated",
                            {"uploads": {"fileType": "PAYSLIP", "count": 1}})  # fmt: skip
        task = hook(user, "TASK_FINISHED", 20, sourceId=archive, sourceType="UPLOAD",
                    taskType="ANALYZE_UPLOAD", status="SUCCEEDED", errorCode=None,
                    providers=["user-provided"], datapoints=["DOCUMENTS"])  # fmt: skip
        analyzed = hook(user, "ARCHIVE_ANALYZED", 19, archiveId=archive)
        ending = self.rng.choice([[task], [analyzed], [task, analyzed]])
        await self.deliver(run, [hook(user, "ARCHIVE_STARTED", 5, archiveId=archive), *ending])

    async def healed(self, run: UserRun, user: str, account: str, provider: str) -> None:
        """The account connects (delivered), then Smile's task and data webhooks are lost: they
        are only in Smile's records. Reconciliation reads those and the user is data ready."""
        hook = self._webhook
        connected = [
            ("ACCOUNT_CREATED", 2, {"accountId": account, "providers": [provider]}),
            ("ACCOUNT_CONNECTED", 6, {"accountId": account, "providers": [provider]}),
        ]
        for event_type, _, data in connected:
            await self.record_at_smile(run, user, event_type, **data)
        await self.deliver(run, [hook(user, t, at, **data) for t, at, data in connected])
        await self.wait_for(run, "connected", "active")
        lost: list[tuple[str, dict[str, Any]]] = [
            ("TASK_FINISHED", {"sourceId": account, "sourceType": "ACCOUNT",
                               "taskType": "LINK_ACCOUNT", "status": "SUCCEEDED"}),
            ("IDENTITY_ADDED", {"accountId": account}),
            ("EMPLOYMENTS_ADDED", {"accountId": account, "count": 2}),
            ("INCOMES_ADDED", {"accountId": account, "count": 12}),
        ]  # fmt: skip
        for event_type, data in lost:
            await self.record_at_smile(run, user, event_type, **data)
        response = await self._post(run, f"/onboardings/{user}/reconcile", headers=self.admin)
        if response.status_code != 200:
            raise RuntimeError(f"reconcile refused: HTTP {response.status_code} {response.text}")

        def check(view: dict[str, Any]) -> str | None:
            if view["reconcile"]["runs"] < 1:
                return "never reconciled"
            delivered = {e["type"] for e in view["events"] if e["source"] == "webhook"}
            if delivered & {t for t, _ in lost}:
                return f"a lost webhook was delivered: {sorted(delivered)}"
            if not any(t["succeeded"] for t in view["tasks"]):
                return "no successful task from reconciliation"
            return None

        self.check = check

    async def minimal_callbacks(
        self, run: UserRun, user: str, token: str, account: str, provider: str, other: str
    ) -> None:
        """The widget's callbacks with only what Smile documents as always there: no reason on
        close, no uploads, a null error code, no account id on an error, a numeric event time,
        and an MFA screen naming only its provider."""
        hook = self._webhook
        # In the past, so that the widget's MFA screen (stamped on arrival) comes after it.
        mfa_account, other_account = account, f"a-{uuid.uuid4().hex}"
        await self.deliver(run, [
            hook(user, "ACCOUNT_CREATED", -60, accountId=mfa_account, providers=[provider]),
            hook(user, "ACCOUNT_CREATED", -60, accountId=other_account, providers=[other]),
        ])  # fmt: skip
        await self.wait_for_accounts(run, 2)
        epoch_ms = int(time.time() * 1000)
        callbacks: list[tuple[str, dict[str, Any] | None]] = [
            ("onUIEvent", {"eventName": "LoginPageOpened", "eventTime": epoch_ms}),
            ("onUIEvent", {"eventName": "MfaPageOpened", "account": {"providerId": provider}}),
            ("onAccountError", {"accountId": None, "errorCode": "INVALID_CREDENTIALS"}),
            ("onAccountError", {"providerId": other, "errorCode": None}),
            ("onUploadsCreated", {}),
            ("onUploadsRemoved", None),
            ("onTokenExpired", None),
            ("onClose", None),
        ]
        for name, data in callbacks:
            await self.callback(run, token, name, data)
        expected = {mfa_account: "awaiting_mfa", other_account: "pending"}

        def check(view: dict[str, Any]) -> str | None:
            widget = view["widget"]
            got = (_statuses(view), widget["state"], widget["closeReason"],
                   widget["uploadsCreated"], widget["uploadsRemoved"])  # fmt: skip
            want = (expected, "closed", None, 1, 1)
            return None if got == want else f"accounts/widget {got}, expected {want}"

        self.check = check

    async def wait_for_accounts(self, run: UserRun, count: int) -> None:
        deadline = time.monotonic() + self.config.settle_timeout
        while time.monotonic() < deadline:
            if len((await self.state(run))["accounts"]) >= count:
                return
            await asyncio.sleep(0.1)


def plan(users: int, seed: int, kinds: list[str] | None = None) -> list[UserRun]:
    """Every kind at least once (when there are enough users), then a seeded mix."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not a secret
    kinds = [k for k in KINDS if kinds is None or k in kinds]
    kinds = [kinds[i % len(kinds)] for i in range(users)]
    rng.shuffle(kinds)
    return [UserRun(kind) for kind in kinds]


async def simulate(config: SimulationConfig, console: Console | None = None) -> SimulationResult:
    console = console or Console()
    skipped: dict[str, str] = {}
    if config.standin_url is None:
        why = ("needs the Smile stand-in (run under `onboarding dev` without Smile credentials, "
               "and give its URL, e.g. http://127.0.0.1:8234)")  # fmt: skip
        skipped = {kind: why for kind in sorted(NEEDS_STANDIN)}
        for kind in skipped:
            console.print(f"[yellow]skipping the {kind!r} journeys: {why}[/yellow]")
    runs = plan(config.users, config.seed, [k for k in KINDS if k not in skipped])
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
    return SimulationResult(
        runs, time.monotonic() - started, sum(r.requests for r in runs), skipped=skipped
    )


def report(result: SimulationResult, console: Console) -> None:
    table = Table(title="Simulated journeys: expected vs actual")
    for column in ("journey", "users", "expected stage/status", "matched", "mismatches"):
        table.add_column(column)
    for kind in KINDS:
        runs = [r for r in result.runs if r.kind == kind]
        if not runs:
            continue
        matched = sum(1 for r in runs if r.matched)
        table.add_row(kind, str(len(runs)), "/".join(EXPECTED[kind]), str(matched),
                      str(len(runs) - matched))  # fmt: skip
    console.print(table)
    for kind, why in result.skipped.items():
        console.print(f"  skipped: {kind}: {why}")
    for run in result.runs:
        if not run.matched:
            got = "/".join(run.actual) if run.actual else run.error or "no state"
            if run.actual == EXPECTED[run.kind]:
                got += f" but {run.problem}"
            console.print(f"  mismatch: {run.kind} {run.user_id or '(not started)'}: {got}")
    rate = result.requests / result.seconds if result.seconds else 0.0
    retried = sum(r.retried for r in result.runs)
    console.print(
        f"{len(result.runs)} users, {result.requests} requests in {result.seconds:.1f}s "
        f"({rate:.0f} requests/s, {retried} retried after a 5xx); mismatches: {result.mismatches}"
    )
