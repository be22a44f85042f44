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

from onboarding.core.backoff import retry_delay
from onboarding.core.models import Event
from onboarding.service.onboardings import Onboardings
from onboarding.service.spool import SpooledEvent, SpoolError
from onboarding.service.spooling import Spooler, TemporalGate, is_unavailability

logger = logging.getLogger("onboarding.spool")

BATCH = 100
IDLE_POLL = 1.0  # seconds: other replicas' events are seen this often (ours wake us at once)
RETRY_BASE = 1.0
RETRY_CAP = 60.0
JITTER = 0.2


@dataclass
class DrainCounts:
    delivered: int = 0
    ended: int = 0  # events for onboardings that had already ended: dropped, as on the live path
    failed_attempts: int = 0


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Drainer:
    def __init__(
        self,
        spooler: Spooler,
        onboardings: Onboardings,
        gate: TemporalGate,
        *,
        lease: timedelta,
        timeout: float,
        concurrency: int = 4,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._spooler = spooler
        self._onboardings = onboardings
        self._gate = gate
        self._lease = lease
        self._timeout = timeout
        self._concurrency = concurrency
        self._random = random_fraction
        self.owner = owner_name()
        self.counts = DrainCounts()
        self._failures = 0  # in a row, across loops: the delay before the next try grows

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(self._concurrency):
                group.create_task(self._loop(), name=f"drainer-{n}")

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self._drain_one()
            except SpoolError as err:
                logger.warning("the spool cannot be read: %s", err)
                busy = False
            except Exception:  # never let one bad turn stop the drain
                logger.exception("draining the spool failed; trying again")
                busy = False
            if not busy:
                await self._idle()

    async def _idle(self) -> None:
        wakeup = self._spooler.wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), IDLE_POLL)
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
        seqs = [item.seq for item in batch]
        if not self._gate.admit():  # another caller became the probe meanwhile
            await spool.release(seqs, datetime.now(UTC))
            return False
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._onboardings.ingest(
                    batch[0].user_id,
                    _events(batch),
                    rpc_timeout=timedelta(seconds=self._timeout),
                )
        except Exception as err:  # kept in the spool; tried again later
            await self._failed(batch, err)
            return True
        self._gate.succeeded()
        self._failures = 0
        await spool.remove(seqs)
        if result.outcome == "onboarding_ended":
            self.counts.ended += len(batch)
            logger.info(
                "%d spooled event(s) for user %s dropped: the onboarding had ended",
                len(batch),
                batch[0].user_id,
            )
        else:
            self.counts.delivered += len(batch)
        return True

    async def _failed(self, batch: list[SpooledEvent], err: Exception) -> None:
        if is_unavailability(err):
            self._gate.failed()
        else:
            logger.error(
                "delivering %d spooled event(s) for user %s failed: %s",
                len(batch),
                batch[0].user_id,
                type(err).__name__,
            )
        self.counts.failed_attempts += 1
        self._failures += 1
        attempts = max(item.attempts for item in batch)
        delay = retry_delay(
            attempts, base=RETRY_BASE, cap=RETRY_CAP, jitter=JITTER * self._random()
        )
        spool = await self._spooler.ready()
        await spool.release(
            [item.seq for item in batch], datetime.now(UTC) + timedelta(seconds=delay)
        )
        # This loop waits too, so a dead Temporal is not asked in a tight loop.
        pause = retry_delay(self._failures - 1, base=RETRY_BASE / 4, cap=RETRY_CAP / 4, jitter=0.0)
        await asyncio.sleep(pause)


def _events(batch: list[SpooledEvent]) -> list[Event]:
    return [Event.model_validate_json(item.payload) for item in batch]
