"""The ingest path with its fallback: Temporal first, the spool when Temporal cannot take an
event in time. The spool is not a second hop: while Temporal answers, nothing touches it.

A circuit breaker (rules in :mod:`onboarding.core.breaker`) sits in front of Temporal, shared
with the drainer: once Temporal has failed a few times in a row, callers go straight to the
spool instead of each waiting out the ingest time-out behind a hung server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from onboarding.core.breaker import Breaker, BreakerState, admit, failed, succeeded
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import Event
from onboarding.service.onboardings import IngestResult, TemporalUnavailable
from onboarding.service.spool import Spool, SpoolFull

logger = logging.getLogger("onboarding.spool")

Deliver = Callable[[str, Event], Awaitable[IngestResult]]


class TemporalGate:
    """The breaker's state for one process (the API's handlers and its drainer share it)."""

    def __init__(
        self, cooldown: float, threshold: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._breaker = Breaker(threshold=threshold, cooldown=cooldown)
        self._clock = clock

    @property
    def state(self) -> BreakerState:
        return self._breaker.state

    def admit(self) -> bool:
        admitted, self._breaker = admit(self._breaker, self._clock())
        return admitted

    def would_admit(self) -> bool:
        admitted, _ = admit(self._breaker, self._clock())
        return admitted

    def succeeded(self) -> None:
        if self._breaker.state is not BreakerState.CLOSED:
            logger.info("Temporal answers again: delivering directly")
        self._breaker = succeeded(self._breaker)

    def failed(self) -> None:
        before = self._breaker.state
        self._breaker = failed(self._breaker, self._clock())
        if before is not BreakerState.OPEN and self._breaker.state is BreakerState.OPEN:
            logger.warning(
                "Temporal is not answering: events go to the spool for %.0fs before the next try",
                self._breaker.cooldown,
            )


class Spooler:
    """The spool, opened on first use (the API starts while its database may still be coming
    up), and a wake-up for this process's drainer."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.wakeup = asyncio.Event()
        self._opened = False
        self._lock = asyncio.Lock()
        self.refused_size = 0  # of the last event refused for space, until one is taken

    async def ready(self) -> Spool:
        if not self._opened:
            async with self._lock:
                if not self._opened:
                    await self.spool.open()
                    self._opened = True
        return self.spool

    async def put(self, user_id: str, event: Event) -> None:
        spool = await self.ready()
        payload = event.model_dump_json(by_alias=True).encode()
        try:
            await spool.put(user_id, event.id, event.created_at, payload, datetime.now(UTC))
        except SpoolFull:
            self.refused_size = len(payload)
            raise
        self.refused_size = 0
        self.wakeup.set()

    def is_full(self, spooled_bytes: int) -> bool:
        """The last event refused for space would still not fit."""
        return self.refused_size > 0 and spooled_bytes + self.refused_size > self.spool.max_bytes

    async def close(self) -> None:
        if self._opened:
            await self.spool.close()
            self._opened = False


def is_unavailability(err: BaseException) -> bool:
    """Failures that say Temporal cannot take work now (as opposed to a bug of ours)."""
    return isinstance(err, TimeoutError | TemporalUnavailable)


class DurableIngest:
    """Deliver one event to its onboarding, or spool it; either way it is durable on return.
    Raises :class:`~onboarding.service.spool.SpoolError` only when neither could take it."""

    def __init__(
        self, deliver: Deliver, spooler: Spooler, gate: TemporalGate, timeout: float
    ) -> None:
        self.deliver = deliver
        self.spooler = spooler
        self.gate = gate
        self._timeout = timeout

    async def __call__(self, user_id: str, event: Event) -> IngestResult:
        if self.gate.admit():
            try:
                async with asyncio.timeout(self._timeout):
                    result = await self.deliver(user_id, event)
            except Exception as err:  # whatever it was, the spool keeps the event
                if is_unavailability(err):
                    self.gate.failed()
                else:
                    logger.exception(
                        "delivering event %s failed unexpectedly; spooling it", event.id
                    )
            else:
                self.gate.succeeded()
                return result
        await self.spooler.put(user_id, event)
        return IngestResult("spooled", workflow_id_for(user_id))
