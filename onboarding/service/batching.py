"""Committing bursts: events for one user that arrive while a signal for that user is still on
its way to Temporal are sent together, as one signal carrying the batch.

Smile sends bursts for one user (IDENTITY_ADDED, EMPLOYMENTS_ADDED, INCOMES_ADDED together); on
a small machine the Temporal server is the ceiling, so asking it for fewer signal-with-starts is
the way past it. There is no timer: the first event of a burst goes at once, and only events
that would otherwise queue behind it wait for the next batch. Every caller is answered only once
the batch holding its event is durable, with that batch's outcome (or its error)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from onboarding.core.models import Event
from onboarding.service.onboardings import EventRefused, IngestResult, Onboardings

MAX_BATCH = 100


@dataclass
class _UserQueue:
    waiting: list[tuple[Event, asyncio.Future[IngestResult]]] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None


class SignalBatcher:
    def __init__(self, onboardings: Onboardings, max_batch: int = MAX_BATCH) -> None:
        self._onboardings = onboardings
        self._max_batch = max_batch
        self._queues: dict[str, _UserQueue] = {}
        self.signals_sent = 0
        self.events_sent = 0

    async def submit(self, user_id: str, event: Event) -> IngestResult:
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        # If the caller has gone (client disconnected), nobody else will look at the outcome.
        future.add_done_callback(_observe)
        queue = self._queues.setdefault(user_id, _UserQueue())
        queue.waiting.append((event, future))
        if queue.sender is None:
            queue.sender = asyncio.create_task(self._send(user_id, queue))
        # Shielded: a caller that goes away does not cancel the batch others are waiting on.
        return await asyncio.shield(future)

    async def _send(self, user_id: str, queue: _UserQueue) -> None:
        try:
            while queue.waiting:
                batch = queue.waiting[: self._max_batch]
                del queue.waiting[: self._max_batch]
                await self._commit(user_id, batch)
        finally:
            queue.sender = None
            if not queue.waiting and self._queues.get(user_id) is queue:
                del self._queues[user_id]

    async def _commit(
        self, user_id: str, batch: list[tuple[Event, asyncio.Future[IngestResult]]]
    ) -> None:
        try:
            result = await self._onboardings.ingest(user_id, [e for e, _ in batch])
        except EventRefused as err:
            if len(batch) == 1:
                _fail(batch, err)
                return
            # Too large together: each on its own, so only an event too large alone fails.
            for item in batch:
                await self._commit(user_id, [item])
            return
        except Exception as err:  # every caller in the batch hears the same failure
            _fail(batch, err)
            return
        self.signals_sent += 1
        self.events_sent += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(result)


def _fail(batch: list[tuple[Event, asyncio.Future[IngestResult]]], err: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(err)


def _observe(future: asyncio.Future[IngestResult]) -> None:
    if not future.cancelled():
        future.exception()
