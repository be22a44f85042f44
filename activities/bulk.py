"""The bulk operation's activities: count the selection, read it a page at a time, and apply
the change to a chunk of onboardings at a bounded rate.

They reach Temporal through :class:`BulkPorts`, which the service layer implements with its
existing operations (the validated updates, the visibility reads) and the worker injects, so
each onboarding is changed exactly as ``PUT /onboardings/{id}/timeouts`` would change it."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from temporalio import activity

from onboarding.core.bulk import CONCURRENCY, BulkRequest, ItemResult
from onboarding.core.models import CamelModel
from onboarding.core.selection import OnboardingFilter

# How often a chunk in progress tells Temporal it is alive (and what it has done so far),
# whether or not a change just finished: well inside the heartbeat timeout.
HEARTBEAT_EVERY = 5.0


class PageItem(CamelModel):
    user_id: str
    ended: bool


class PageInput(CamelModel):
    selection: OnboardingFilter
    token: str | None = None
    size: int = 500


class PageOutput(CamelModel):
    items: list[PageItem]
    next_token: str | None


class CountOutput(CamelModel):
    matched: int
    still_open: int


class ChunkInput(CamelModel):
    request: BulkRequest
    user_ids: list[str]


class ChunkOutput(CamelModel):
    results: list[ItemResult]


class BulkPorts(Protocol):
    async def count(self, selection: OnboardingFilter) -> int: ...

    async def page(self, request: PageInput) -> PageOutput: ...

    async def apply(self, request: BulkRequest, user_id: str) -> ItemResult:
        """The change applied to one onboarding; raises only what a retry could cure."""
        ...


class BulkActivities:
    def __init__(self, ports: BulkPorts) -> None:
        self.ports = ports

    @activity.defn(name="bulk_count")
    async def count(self, selection: OnboardingFilter) -> CountOutput:
        """How many the selection holds, and how many of them are still open."""
        matched, still_open = await asyncio.gather(
            self.ports.count(selection),
            self.ports.count(selection.model_copy(update={"open_only": True})),
        )
        return CountOutput(matched=matched, still_open=still_open)

    @activity.defn(name="bulk_page")
    async def page(self, request: PageInput) -> PageOutput:
        return await self.ports.page(request)

    @activity.defn(name="bulk_apply")
    async def apply(self, chunk: ChunkInput) -> ChunkOutput:
        """Apply the change to each onboarding in the chunk, at most ``rate`` starting per
        second. What is done is recorded in heartbeat details, so a retry (a worker that died
        mid-chunk) starts after it instead of from the beginning."""
        details = activity.info().heartbeat_details
        done: dict[str, ItemResult] = {}
        if details:
            for raw in details[0]:
                result = ItemResult.model_validate(raw)
                done[result.user_id] = result
        todo = [user for user in chunk.user_ids if user not in done]
        interval = 1.0 / chunk.request.rate
        limit = asyncio.Semaphore(CONCURRENCY)
        began = time.monotonic()

        def beat() -> None:
            activity.heartbeat([r.model_dump(mode="json") for r in done.values()])

        async def one(index: int, user_id: str) -> None:
            await asyncio.sleep(max(began + index * interval - time.monotonic(), 0.0))
            async with limit:
                done[user_id] = await self.ports.apply(chunk.request, user_id)
            beat()

        async def keep_beating() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_EVERY)
                beat()

        beating = asyncio.create_task(keep_beating())
        try:
            # A task group: when one change fails (Temporal away), the others stop with it
            # rather than carry on beside the retry.
            async with asyncio.TaskGroup() as group:
                for index, user in enumerate(todo):
                    group.create_task(one(index, user))
        except* Exception as failed:
            raise failed.exceptions[0] from None
        finally:
            beating.cancel()
        return ChunkOutput(results=[done[user] for user in chunk.user_ids])
