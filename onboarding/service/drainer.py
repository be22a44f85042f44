"""The drainer: delivers spooled events to Temporal as soon as it takes them again.

Each loop leases the waiting events of one user (oldest first, in ``createdAt`` order), sends
them as one signal-with-start and removes them only once Temporal has them. A delivery that
fails gives the events back with a growing delay. A process that dies while holding a lease
loses nothing: the lease runs out and any replica takes the events again. Delivering twice is
harmless, because the onboarding ignores an event id it has seen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from onboarding.core.backoff import retry_delay
from onboarding.core.models import Event, Source
from onboarding.core.webhook_triage import Unusable, describe_errors
from onboarding.service.dead_letters import DeadLetters
from onboarding.service.onboardings import EventRefused, Onboardings
from onboarding.service.spool import SpooledEvent, SpoolError
from onboarding.service.spooling import Spooler, TemporalGate, is_unavailability

logger = logging.getLogger("onboarding.spool")

BATCH = 100
CHUNK_BYTES = 512 * 1024
IDLE_POLL = 1.0  # seconds: other replicas' events are seen this often (ours wake us at once)
RETRY_BASE = 1.0
RETRY_CAP = 60.0
JITTER = 0.2


@dataclass
class DrainCounts:
    delivered: int = 0
    ended: int = 0  # events for onboardings that had already ended: dropped, as on the live path
    refused: int = 0  # refused by Temporal itself: moved to the dead-letter
    failed_attempts: int = 0


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Drainer:
    def __init__(
        self,
        spooler: Spooler,
        onboardings: Onboardings,
        gate: TemporalGate,
        dead_letters: DeadLetters,
        *,
        lease: timedelta,
        timeout: float,
        concurrency: int = 4,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._spooler = spooler
        self._onboardings = onboardings
        self._gate = gate
        self._dead_letters = dead_letters
        self._lease = lease
        self._timeout = timeout
        self._concurrency = concurrency
        self._random = random_fraction
        self.owner = owner_name()
        self.counts = DrainCounts()
        self._failures = 0  # in a row, across loops: the delay before the next try grows
        self._spool_down = False

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(self._concurrency):
                group.create_task(self._loop(polls=n == 0), name=f"drainer-{n}")

    async def _loop(self, polls: bool) -> None:
        """One loop polls the spool while it is idle; the others wait until there is work
        (an event spooled here, or a backlog the poller found), so an idle API asks its
        spool once a second, not once per loop."""
        while True:
            try:
                busy = await self._drain_one()
                if self._spool_down:
                    logger.info("the spool answers again")
                    self._spool_down = False
            except SpoolError as err:
                if not self._spool_down:  # once per outage, not once a second per loop
                    logger.warning("the spool cannot be read: %s", err)
                    self._spool_down = True
                busy = False
            except Exception:  # never let one bad turn stop the drain
                logger.exception("draining the spool failed; trying again")
                busy = False
            if busy:
                self._spooler.wakeup.set()  # there may be more: the other loops help
            else:
                await self._idle(polls)

    async def _idle(self, polls: bool) -> None:
        wakeup = self._spooler.wakeup
        if polls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), IDLE_POLL)
        else:
            await wakeup.wait()
        wakeup.clear()

    async def _drain_one(self) -> bool:
        """Deliver one user's waiting events; False when there was nothing to do now."""
        if not self._gate.would_admit():
            return False  # the breaker is open: wait for it, as the webhook path does
        spool = await self._spooler.ready()
        now = datetime.now(UTC)
        batch = await spool.claim(self.owner, now, now + self._lease, BATCH)
        if not batch:
            return False
        self._gate.admit()  # this delivery is the probe if the breaker is half-open
        chunks = _chunks(await self._readable(batch))
        for n, chunk in enumerate(chunks):
            if not await self._deliver(chunk):
                # The rest waits with the failed chunk, so the user's order holds.
                await self._retry_later([item for c in chunks[n:] for item in c])
                return True
        return True

    async def _readable(self, batch: list[SpooledEvent]) -> list[SpooledEvent]:
        """The events that still parse. One that does not (written by a release whose event
        model has changed since) would block its user for ever: it goes to the dead-letter."""
        readable = []
        for item in batch:
            try:
                Event.model_validate_json(item.payload)
            except ValidationError as err:
                reason = f"the spooled event no longer parses: {describe_errors(err.errors())}"
                await self._dead_letters.keep(item.payload, Unusable(reason, item.event_id, None))
                await (await self._spooler.ready()).remove([item.seq])
                continue
            readable.append(item)
        return readable

    async def _deliver(self, chunk: list[SpooledEvent]) -> bool:
        spool = await self._spooler.ready()
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._onboardings.ingest(
                    chunk[0].user_id,
                    _events(chunk),
                    rpc_timeout=timedelta(seconds=self._timeout),
                )
        except EventRefused as err:
            self._gate.succeeded()  # Temporal answered
            if len(chunk) > 1:  # find the one it refuses; deliver the others
                for single in chunk:
                    if not await self._deliver([single]):
                        return False
                return True
            await self._refused(chunk[0], err)
            await spool.remove([chunk[0].seq])
            self.counts.refused += 1
            return True
        except Exception as err:  # kept in the spool; tried again later
            await self._failed(chunk, err)
            return False
        self._gate.succeeded()
        self._failures = 0
        await spool.remove([item.seq for item in chunk])
        if result.outcome == "onboarding_ended":
            self.counts.ended += len(chunk)
            logger.info(
                "%d spooled event(s) for user %s dropped: the onboarding had ended",
                len(chunk),
                chunk[0].user_id,
            )
        else:
            self.counts.delivered += len(chunk)
        return True

    async def _failed(self, chunk: list[SpooledEvent], err: Exception) -> None:
        if is_unavailability(err):
            self._gate.failed()
        else:
            logger.error(
                "delivering %d spooled event(s) for user %s failed: %s",
                len(chunk),
                chunk[0].user_id,
                type(err).__name__,
            )
        self.counts.failed_attempts += 1
        self._failures += 1

    async def _retry_later(self, items: list[SpooledEvent]) -> None:
        attempts = max(item.attempts for item in items)
        delay = retry_delay(
            attempts, base=RETRY_BASE, cap=RETRY_CAP, jitter=JITTER * self._random()
        )
        spool = await self._spooler.ready()
        await spool.release(
            [item.seq for item in items], datetime.now(UTC) + timedelta(seconds=delay)
        )
        # This loop waits too, so a dead Temporal is not asked in a tight loop.
        pause = retry_delay(self._failures - 1, base=RETRY_BASE / 4, cap=RETRY_CAP / 4, jitter=0.0)
        await asyncio.sleep(pause)

    async def _refused(self, item: SpooledEvent, err: EventRefused) -> None:
        """Smile's webhooks are kept for an operator; the widget's callbacks (hints the browser
        sent, not signed by Smile, and not replayable as webhooks) are only logged."""
        event = Event.model_validate_json(item.payload)
        if event.source is Source.WEBHOOK:
            await self._dead_letters.keep(item.payload, Unusable(str(err), event.id, event.type))
        else:
            logger.error(
                "spooled %s event %s (%s) for user %s dropped: %s",
                event.source.value, event.id, event.type, item.user_id, err,
            )  # fmt: skip


def _chunks(batch: list[SpooledEvent]) -> list[list[SpooledEvent]]:
    """Consecutive runs of at most ``CHUNK_BYTES`` of payload (one event at least), so a
    signal stays far below Temporal's size limits."""
    chunks: list[list[SpooledEvent]] = []
    size = 0
    for item in batch:
        if chunks and size + len(item.payload) <= CHUNK_BYTES:
            chunks[-1].append(item)
            size += len(item.payload)
        else:
            chunks.append([item])
            size = len(item.payload)
    return chunks


def _events(batch: list[SpooledEvent]) -> list[Event]:
    return [Event.model_validate_json(item.payload) for item in batch]
