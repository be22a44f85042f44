"""A Smile-like webhook sender: at-least-once delivery of signed webhooks, each delivery tried
once and retried ``attempts - 1`` times (Smile: twice, about 30 seconds apart) after any non-2xx
answer, connection error or time-out; attempts go round-robin over one or more API URLs, so a
retry reaches another replica. It keeps a ledger per event: sent, acknowledged (2xx, with the
answer's ``outcome``), given up (sent and never acknowledged)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from onboarding.core.signatures import SIGNATURE_HEADER, sign
from onboarding.tooling.chaos.journeys import Delivery, LoadPlan, PlannedEvent


@dataclass(frozen=True)
class SenderConfig:
    urls: Sequence[str]  # API base URLs; ``/webhooks/smile`` is appended
    webhook_secret: str
    attempts: int = 3  # Smile: the first try and two retries
    retry_delay: float = 30.0  # Smile: about 30 seconds between tries
    timeout: float = 10.0  # per request, all of it (connect, send, wait, read)


@dataclass
class Attempt:
    url: str
    started: float  # time.monotonic()
    finished: float | None = None
    status: int | None = None
    outcome: str | None = None  # the answer's ``outcome`` on 2xx
    error: str | None = None  # the exception's class name, or None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class EventLedger:
    event: PlannedEvent
    deliveries: int = 0  # deliveries started (the on-purpose duplicate is a second one)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def sent(self) -> bool:
        return bool(self.attempts)

    @property
    def acknowledged(self) -> bool:
        return any(a.acknowledged for a in self.attempts)

    @property
    def given_up(self) -> bool:
        return self.sent and not self.acknowledged

    @property
    def outcomes(self) -> list[str]:
        return [a.outcome or "" for a in self.attempts if a.acknowledged]


class Sender:
    """Sends a :class:`LoadPlan` on its schedule. ``run`` returns once every delivery is
    acknowledged or given up; ``wait_progress`` and ``wait_in_flight`` let a scenario strike
    at a point of the load."""

    def __init__(self, config: SenderConfig, plan: LoadPlan) -> None:
        if not config.urls:
            raise ValueError("the sender needs at least one API URL")
        self.config = config
        self.plan = plan
        self.ledger: dict[str, EventLedger] = {e.event_id: EventLedger(e) for e in plan.events}
        self.started_deliveries = 0
        self.finished_deliveries = 0
        self.in_flight: dict[int, Attempt] = {}
        self._progress = asyncio.Condition()
        self._next_attempt_id = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None

    # --- what a scenario reads --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.finished_deliveries == len(self.plan.deliveries)

    def attempts(self) -> list[Attempt]:
        return [a for entry in self.ledger.values() for a in entry.attempts]

    def errors(self) -> Counter[str]:
        """Failed attempts by cause: an exception's class name or ``HTTP <status>``."""
        causes: Counter[str] = Counter()
        for attempt in self.attempts():
            if attempt.error is not None:
                causes[attempt.error] += 1
            elif attempt.status is not None and not attempt.acknowledged:
                causes[f"HTTP {attempt.status}"] += 1
        return causes

    async def wait_progress(self, fraction: float) -> None:
        """Until ``fraction`` of the deliveries have started."""
        target = min(len(self.plan.deliveries), max(1, round(fraction * len(self.plan.deliveries))))
        async with self._progress:
            await self._progress.wait_for(lambda: self.started_deliveries >= target)

    async def wait_in_flight(
        self, url: str, older_than: float = 0.003, within: float = 2.0
    ) -> bool:
        """Until a request to ``url`` has been waiting for its answer for ``older_than``
        seconds (it has reached the server, which is working on it); False at the deadline.
        Returns without yielding to the event loop once it sees one, so a signal sent right
        after reaches the server before this process reads any answer."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            now = time.monotonic()
            if any(a.url == url and now - a.started >= older_than
                   for a in self.in_flight.values()):  # fmt: skip
                return True
            await asyncio.sleep(0.001)  # polling interval; the deadline above bounds the wait
        return False

    async def wait_acknowledged(
        self, url: str, outcome: str, *, after: float = 0.0, within: float = 10.0
    ) -> bool:
        """Until ``url`` has answered an attempt started at or after ``after`` (monotonic) with
        2xx and ``outcome``; False at the deadline."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.acknowledged_by(url, outcome, started_after=after):
                return True
            await asyncio.sleep(0.02)  # polling interval; the deadline above bounds the wait
        return False

    def acknowledged_by(
        self,
        url: str,
        outcome: str,
        *,
        started_after: float = 0.0,
        finished_before: float = float("inf"),
    ) -> set[str]:
        """Ids of the events ``url`` acknowledged with ``outcome`` in an attempt started at or
        after ``started_after`` and answered before ``finished_before`` (monotonic)."""
        return {
            entry.event.event_id
            for entry in self.ledger.values()
            for a in entry.attempts
            if a.url == url and a.acknowledged and a.outcome == outcome
            and a.started >= started_after
            and a.finished is not None and a.finished < finished_before
        }  # fmt: skip

    def cut_off(self, url: str, at: float) -> list[Attempt]:
        """Attempts to ``url`` that were waiting for their answer at ``at`` (monotonic) and
        ended without one because the connection broke (not a refused or timed-out connect,
        not a time-out): the server died while working on them."""
        return [
            a for a in self.attempts()
            if a.url == url and a.started < at and a.finished is not None and a.finished >= at
            and a.status is None and a.error is not None
            and a.error != "ConnectError" and "Timeout" not in a.error
        ]  # fmt: skip

    # --- sending -----------------------------------------------------------------------------

    async def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection per webhook
        async with httpx.AsyncClient(limits=limits, timeout=self.config.timeout) as http:
            self.started_at = start = time.monotonic()
            tasks: list[asyncio.Task[None]] = []
            for index, delivery in enumerate(self.plan.deliveries):
                wait = start + delivery.at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the load's pace, not a wait for async work
                tasks.append(asyncio.create_task(self._deliver(http, index, delivery)))
                async with self._progress:
                    self.started_deliveries += 1
                    self._progress.notify_all()
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
            self.finished_at = time.monotonic()

    async def _deliver(self, http: httpx.AsyncClient, index: int, delivery: Delivery) -> None:
        entry = self.ledger[delivery.event.event_id]
        entry.deliveries += 1
        body = delivery.event.body
        headers = {SIGNATURE_HEADER: sign(body, self.config.webhook_secret),
                   "Content-Type": "application/json"}  # fmt: skip
        urls = self.config.urls
        try:
            for attempt_number in range(self.config.attempts):
                if attempt_number:
                    await asyncio.sleep(self.config.retry_delay)  # Smile's retry schedule
                url = urls[(index + attempt_number) % len(urls)]
                if await self._attempt(http, entry, url, body, headers):
                    return
        finally:
            async with self._progress:
                self.finished_deliveries += 1
                self._progress.notify_all()

    async def _attempt(
        self,
        http: httpx.AsyncClient,
        entry: EventLedger,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> bool:
        attempt = Attempt(url, time.monotonic())
        entry.attempts.append(attempt)
        attempt_id = self._next_attempt_id
        self._next_attempt_id += 1
        self.in_flight[attempt_id] = attempt
        try:
            async with asyncio.timeout(self.config.timeout):
                response = await http.post(f"{url}/webhooks/smile", content=body, headers=headers)
            attempt.status = response.status_code
            if attempt.acknowledged:
                try:
                    answer = response.json()
                    attempt.outcome = (
                        str(answer.get("outcome", "")) if isinstance(answer, dict) else ""
                    )
                except ValueError:
                    attempt.outcome = ""
        except (httpx.HTTPError, TimeoutError) as err:
            attempt.error = type(err).__name__
        finally:
            attempt.finished = time.monotonic()
            del self.in_flight[attempt_id]
        return attempt.acknowledged
