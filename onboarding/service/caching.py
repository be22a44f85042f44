"""A value kept for a few seconds, loaded one load at a time: for figures that are read often
(every scrape of ``/metrics``, every poll of the console's funnel) and cost a backend round-trip
each (visibility counts, a spool scan), so that N readers a second cost at most one load per
``ttl`` seconds however many readers there are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _SingleFlight(Generic[T]):
    """The last value a load gave and when, and at most one load running at a time, which
    every reader asking meanwhile shares. A load that fails is not kept."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._value: T | None = None
        self._loaded_at: float | None = None
        self._loading: asyncio.Task[T] | None = None

    def _age(self) -> float | None:
        return None if self._loaded_at is None else self.clock() - self._loaded_at

    def _start(self, load: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load(load))
            # Retrieved even when nobody awaits it: no "never retrieved" warning.
            self._loading.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._loading

    async def _load(self, load: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await load()
            self._value, self._loaded_at = value, self.clock()
            return value
        finally:
            self._loading = None


class TtlCache(_SingleFlight[T]):
    """The last value a load gave, for ``ttl`` seconds after it came in (by ``clock``, in
    seconds). Once it is older, the next :meth:`get` loads afresh; readers arriving while that
    load runs await the same load (single flight), never a second one. A load that fails is not
    kept: its readers see its error, and the next reader tries again. A reader that is cancelled
    (a client gone) does not cancel the load the others await."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.ttl = ttl

    async def get(self, load: Callable[[], Awaitable[T]]) -> T:
        """The kept value while it is fresh; otherwise ``load()``'s, run once for everyone
        asking meanwhile."""
        age = self._age()
        if age is not None and age < self.ttl:
            return self._value  # type: ignore[return-value]  # set with _loaded_at
        return await asyncio.shield(self._start(load))


class Snapshot(_SingleFlight[T]):
    """The last value a load gave, served at once however old, while a fresh one is loaded in
    the background once it is older than ``max_age`` (stale while revalidating): for figures
    that cost seconds to compute and are read by people, who get an answer now with its age
    rather than a wait. Only the very first readers wait for a load (one load for all of
    them). A load that fails leaves the last value in place; with none yet, readers see it."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.max_age = max_age

    async def get(self, load: Callable[[], Awaitable[T]]) -> T:
        age = self._age()
        if age is None:
            return await asyncio.shield(self._start(load))
        if age >= self.max_age:
            self._start(load)  # in the background: this reader is answered now
        return self._value  # type: ignore[return-value]  # set with _loaded_at
