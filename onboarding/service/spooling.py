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
from onboarding.service.onboardings import EventRefused, IngestResult, TemporalUnavailable
from onboarding.service.spool import Spool, SpoolError, SpoolFull, SpoolUnavailable

logger = logging.getLogger("onboarding.spool")

Deliver = Callable[[str, Event], Awaitable[IngestResult]]

REOPEN_AFTER = 1.0  # seconds a failed open is answered from memory


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
        if self._breaker.state is BreakerState.CLOSED:  # the webhook path's usual case, cheaply
            return True
        admitted, self._breaker = admit(self._breaker, self._clock())
        return admitted

    def would_admit(self) -> bool:
        admitted, _ = admit(self._breaker, self._clock())
        return admitted

    def succeeded(self) -> None:
        breaker = self._breaker
        if breaker.state is BreakerState.CLOSED and breaker.failures == 0:
            return
        if breaker.state is not BreakerState.CLOSED:
            logger.info("Temporal answers again: delivering directly")
        self._breaker = succeeded(breaker)

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

    def __init__(
        self, spool: Spool, *, timeout: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spool = spool
        self.wakeup = asyncio.Event()
        self._opened = False
        self._lock = asyncio.Lock()
        self._timeout = timeout
        self._clock = clock
        # A failed open is remembered briefly, so callers queued behind it fail at once rather
        # than each waiting out another connection attempt.
        self._failed_open: tuple[float, SpoolError] | None = None
        self.refused_size = 0  # of the last event refused for space, until one is taken

    async def ready(self) -> Spool:
        if self._opened:
            return self.spool
        async with self._lock:
            if self._opened:
                return self.spool
            if self._failed_open is not None:
                at, remembered = self._failed_open
                if self._clock() - at < REOPEN_AFTER:
                    raise remembered
            try:
                async with asyncio.timeout(self._timeout):
                    await self.spool.open()
            except TimeoutError:
                error: SpoolError = SpoolUnavailable(
                    f"the spool did not open within {self._timeout:.0f}s"
                )
                self._failed_open = (self._clock(), error)
                raise error from None
            except SpoolError as err:
                self._failed_open = (self._clock(), err)
                raise
            self._opened, self._failed_open = True, None
        return self.spool

    async def put(self, user_id: str, event: Event) -> None:
        spool = await self.ready()
        payload = event.model_dump_json(by_alias=True).encode()
        try:
            async with asyncio.timeout(self._timeout):
                await spool.put(user_id, event.id, event.created_at, payload, datetime.now(UTC))
        except SpoolFull:
            self.refused_size = len(payload)
            raise
        except TimeoutError:
            # Not acknowledged: the sender retries, and a copy that did commit is a duplicate
            # the onboarding ignores.
            raise SpoolUnavailable(
                f"the spool did not answer within {self._timeout:.0f}s"
            ) from None
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

    Raises :class:`~onboarding.service.onboardings.EventRefused` when Temporal refuses the
    event itself (the caller keeps it as a dead letter), and
    :class:`~onboarding.service.spool.SpoolError` only when neither Temporal nor the spool
    could take it. Anything else that goes wrong on the way to Temporal (a lost connection, an
    expired credential, a bug of ours) leaves the event in the spool, to be tried again."""

    def __init__(
        self, deliver: Deliver, spooler: Spooler, gate: TemporalGate, timeout: float
    ) -> None:
        self.deliver = deliver
        self.spooler = spooler
        self.gate = gate
        self._timeout = timeout

    async def __call__(self, user_id: str, event: Event) -> IngestResult:
        tried = self.gate.admit()
        if tried:
            result = await self._try(user_id, event)
            if result is not None:
                return result
        try:
            await self.spooler.put(user_id, event)
        except SpoolError:
            if tried:
                raise
            # The breaker kept us from Temporal, but the spool cannot help: ask Temporal once.
            result = await self._try(user_id, event)
            if result is None:
                raise
            return result
        return IngestResult("spooled", workflow_id_for(user_id))

    async def _try(self, user_id: str, event: Event) -> IngestResult | None:
        try:
            async with asyncio.timeout(self._timeout):
                result = await self.deliver(user_id, event)
        except EventRefused:
            self.gate.succeeded()  # Temporal answered
            raise
        except Exception as err:  # the spool keeps the event
            if is_unavailability(err):
                self.gate.failed()
            else:
                logger.exception("delivering event %s failed unexpectedly; spooling it", event.id)
            return None
        self.gate.succeeded()
        return result
