"""Reading the fleet from Temporal's visibility: pages of onboardings newest first or longest in
their stage first, counts, and the onboarding longest in a stage.

Visibility on SQL stores (the embedded default, PostgreSQL) cannot order by a search attribute,
so "longest in stage first" is computed here: a range query on ``OnboardingStageEnteredAt`` from
where the previous page ended (keyset paging), reading search attributes only, keeping the
smallest ``page_size`` in a heap. The oldest in a stage narrows a time window with counts, all
of one round at once, until the window holds at most one visibility page."""

from __future__ import annotations

import asyncio
import base64
import binascii
import heapq
import itertools
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from temporalio.client import Client, WorkflowExecution

from onboarding.core.identity import user_id_from
from onboarding.core.models import CamelModel, Stage, Status
from onboarding.core.selection import (
    EARLIEST,
    EPOCH,
    LATEST,
    OnboardingFilter,
    visibility_query,
)
from workflows import search_attributes

# Rows per visibility call when scanning (the servers' usual maximum page size).
SCAN_PAGE = 1000
# How far back the first round of counts looks, as ages; older than the last lies before it.
AGE_LADDER = tuple(
    timedelta(seconds=s)
    for s in (60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400, 365 * 86400)
)
# Each later round splits the window holding the oldest into this many parts.
SPLITS = 8


class ListOrder(StrEnum):
    NEWEST = "newest"  # visibility's own order: most recently started first
    LONGEST_IN_STAGE = "longest_in_stage"  # earliest to enter its current stage first


class OnboardingSummary(CamelModel):
    user_id: str
    workflow_id: str
    stage: Stage | None
    status: Status | None
    started_at: datetime | None
    ended_at: datetime | None
    # When it entered its current stage, and for how long it has been (or was, if ended) in it;
    # None for an onboarding that has not published this since it existed.
    stage_entered_at: datetime | None = None
    time_in_stage: float | None = None  # seconds


class OnboardingPage(CamelModel):
    items: list[OnboardingSummary]
    next_page_token: str | None


class BadPageToken(ValueError):
    """A page token this service did not issue (or issued for the other order)."""


def summary_of(execution: WorkflowExecution, now: datetime) -> OnboardingSummary:
    attrs = execution.typed_search_attributes
    stage = attrs.get(search_attributes.STAGE)
    status = attrs.get(search_attributes.STATUS)
    entered = attrs.get(search_attributes.STAGE_ENTERED_AT)
    if entered is not None and entered.tzinfo is None:
        entered = entered.replace(tzinfo=UTC)
    age = None
    if entered is not None:
        age = max(((execution.close_time or now) - entered).total_seconds(), 0.0)
    return OnboardingSummary(
        user_id=user_id_from(execution.id),
        workflow_id=execution.id,
        stage=Stage(stage) if stage in set(Stage) else None,
        status=Status(status) if status in set(Status) else None,
        started_at=execution.start_time,
        ended_at=execution.close_time,
        stage_entered_at=entered,
        time_in_stage=age,
    )


# --- page tokens -------------------------------------------------------------------------------

_NEWEST_PREFIX = b"onboardings.v1:"
_SORTED_PREFIX = b"onboardings.sorted.v1:"


def encode_newest_token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(_NEWEST_PREFIX + raw).decode()


def decode_newest_token(page_token: str | None) -> bytes | None:
    return _decode(page_token, _NEWEST_PREFIX)


def encode_sorted_token(after: tuple[datetime, str]) -> str:
    entered, workflow_id = after
    body = json.dumps([entered.astimezone(UTC).isoformat(), workflow_id]).encode()
    return base64.urlsafe_b64encode(_SORTED_PREFIX + body).decode()


def decode_sorted_token(page_token: str | None) -> tuple[datetime, str] | None:
    body = _decode(page_token, _SORTED_PREFIX)
    if body is None:
        return None
    try:
        entered, workflow_id = json.loads(body)
        when = datetime.fromisoformat(entered)
    except (ValueError, TypeError):
        raise BadPageToken() from None
    if not isinstance(workflow_id, str) or when.tzinfo is None:
        raise BadPageToken()
    try:
        in_range = EARLIEST <= when <= LATEST
    except OverflowError:  # a zone that pushes it past what datetime can hold
        in_range = False
    if not in_range:
        raise BadPageToken()
    return when, workflow_id


def _decode(page_token: str | None, prefix: bytes) -> bytes | None:
    if not page_token:
        return None
    try:
        decoded = base64.b64decode(page_token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadPageToken() from None
    if not decoded.startswith(prefix):
        raise BadPageToken()
    return decoded.removeprefix(prefix)


# --- reading visibility ------------------------------------------------------------------------


class Visibility:
    """Visibility reads over one client; errors are the client's (the service translates them)."""

    def __init__(self, client: Client, rpc_timeout: timedelta) -> None:
        self.client = client
        self.rpc_timeout = rpc_timeout

    async def newest_page(
        self, selection: OnboardingFilter, page_size: int, token: bytes | None, now: datetime
    ) -> tuple[list[OnboardingSummary], bytes | None]:
        iterator = self.client.list_workflows(
            visibility_query(selection),
            page_size=page_size,
            next_page_token=token,
            rpc_timeout=self.rpc_timeout,
        )
        await iterator.fetch_next_page()
        items = [summary_of(execution, now) for execution in iterator.current_page or []]
        return items, iterator.next_page_token

    async def longest_in_stage_page(
        self,
        selection: OnboardingFilter,
        page_size: int,
        after: tuple[datetime, str] | None,
        now: datetime,
    ) -> tuple[list[OnboardingSummary], tuple[datetime, str] | None]:
        """The ``page_size`` onboardings that entered their stage earliest, after ``after`` in
        (entered, workflow id) order. Counts find a window from ``after`` on that holds the
        page (and few more), which is then read; should ties at ``after`` leave it short, the
        rest is read from ``after`` on."""
        low = after[0] if after else EPOCH
        need = page_size + 1  # one more: whether there is a next page
        high = await self._window(selection, low, need, now)
        ordered = await self._earliest(
            visibility_query(selection, entered_from=low, entered_until=high), need, after, now
        )
        if high is not None and len(ordered) < need:  # ties at ``after`` took some places
            ordered = await self._earliest(
                visibility_query(selection, entered_from=low), need, after, now
            )
        page = ordered[:page_size]
        if len(ordered) <= page_size or not page or page[-1].stage_entered_at is None:
            return page, None
        return page, (page[-1].stage_entered_at, page[-1].workflow_id)

    async def _earliest(
        self, query: str, keep: int, after: tuple[datetime, str] | None, now: datetime
    ) -> list[OnboardingSummary]:
        """The ``keep`` earliest to enter their stage among what ``query`` lists, after
        ``after``, in order: every row read once, the earliest kept in a bounded heap."""
        # A max-heap by negated key; the counter keeps rows from being compared themselves.
        heap: list[tuple[float, tuple[int, ...], int, OnboardingSummary]] = []
        arrival = itertools.count()
        async for execution in self.client.list_workflows(
            query, page_size=SCAN_PAGE, rpc_timeout=self.rpc_timeout
        ):
            summary = summary_of(execution, now)
            entered = summary.stage_entered_at
            if entered is None or (after is not None and (entered, summary.workflow_id) <= after):
                continue
            entry = (-entered.timestamp(), _inverted(summary.workflow_id), next(arrival), summary)
            if len(heap) < keep:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
        return sorted(
            (e[3] for e in heap), key=lambda s: (s.stage_entered_at or EPOCH, s.workflow_id)
        )

    async def oldest(self, selection: OnboardingFilter, now: datetime) -> OnboardingSummary | None:
        """The onboarding in ``selection`` that entered its stage earliest (ties: lowest id)."""
        page, _ = await self.longest_in_stage_page(selection, 1, None, now)
        return page[0] if page else None

    async def count(self, query: str) -> int:
        result = await self.client.count_workflows(query, rpc_timeout=self.rpc_timeout)
        return result.count

    async def _window(
        self, selection: OnboardingFilter, low: datetime, need: int, now: datetime
    ) -> datetime | None:
        """An upper bound ``high`` such that ``[low, high)`` holds at least ``need`` of the
        selection (all of them, if it holds fewer: then None) and, where counting can tell,
        at most ``_READ_TARGET``. Counts of "entered from ``low`` and before b" for a ladder of
        bounds, all at once; then the bounds that straddle ``need`` are split again."""
        target = min(max(_READ_TARGET, need), SCAN_PAGE)
        bounds = sorted(b for b in {now - age for age in AGE_LADDER} | {now + _SKEW} if b > low)
        previous = low
        while bounds:
            counts = await asyncio.gather(
                *(
                    self.count(visibility_query(selection, entered_from=low, entered_until=b))
                    for b in bounds
                )
            )
            enough = next((i for i, n in enumerate(counts) if n >= need), None)
            if enough is None:
                # Fewer than needed before the last bound: take everything from ``low`` on
                # (past the last ladder bound, only clock skew could put more).
                return None
            high = bounds[enough]
            start = bounds[enough - 1] if enough else previous
            if counts[enough] <= target or high - start <= _FINEST:
                return high
            previous, bounds = start, split(start, high)
        return None


# Rows a longest-in-stage page aims to read: narrowing further costs a round of counts, reading
# more costs the rows; at a few hundred rows the two are about even on the embedded server.
_READ_TARGET = 200
# Entered times a little ahead of this process's clock (another host's) still count.
_SKEW = timedelta(minutes=5)
# A window this narrow is read as it is, however many it holds.
_FINEST = timedelta(milliseconds=1)


def split(low: datetime, high: datetime) -> list[datetime]:
    """``SPLITS`` equal windows' upper bounds over ``[low, high)``."""
    step = (high - low) / SPLITS
    return [low + step * i for i in range(1, SPLITS)] + [high]


def _inverted(text: str) -> tuple[int, ...]:
    # For the max-heap: a larger id must sort as smaller, so compare negated code points.
    return (*(-ord(c) for c in text), 1)
