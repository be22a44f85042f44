"""The API's Prometheus metrics, served at ``GET /metrics``: what came through each door and
what became of it, signature failures, request latency; and, read at scrape time, the spool,
the open onboardings and the circuit breaker in front of Temporal. The spool's figures and the
open onboardings are kept for :data:`SCRAPE_TTL` seconds and read by one scrape at a time, so
however often (and however many at once) ``/metrics`` is scraped, it costs the spool and
Temporal at most one read each per :data:`SCRAPE_TTL`.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (never the process-wide
default: tests build many apps, and ``onboarding dev`` shares its process with other parts).
No label carries personal data or anything a sender chooses freely: routes are templates
(``/onboardings/{user_id}``, never a user id), event types and callbacks outside the catalogue
are counted as ``other``, unknown HTTP methods as ``OTHER``. On the webhook path a metric costs
a dict look-up and prometheus-client's own increment, nothing more."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onboarding.core.catalogue import WEBHOOK_TYPES, WIDGET_CALLBACKS
from onboarding.core.models import Status
from onboarding.service.caching import TtlCache
from onboarding.service.onboardings import Onboardings
from onboarding.service.spool import SpoolError, SpoolStats
from onboarding.service.spooling import Spooler, TemporalGate

logger = logging.getLogger("onboarding.metrics")

WEBHOOK_ROUTE = "/webhooks/smile"
CALLBACK_ROUTE = "/onboardings/{user_id}/callbacks"

# Label values for an event type: one of the catalogue's, or these two.
OTHER = "other"  # a type the catalogue does not know (Smile adds types; senders may send any)
NONE = "none"  # no type known: refused before the body was read, or a body without one

# A request whose client went away before any answer was started: its ``status`` label.
DISCONNECTED = "disconnected"

# Seconds the scrape-time figures (the spool's, the open onboardings) are kept for.
SCRAPE_TTL = 5.0

# Request latency buckets, in seconds: a signalled webhook takes a few milliseconds, a spooled
# one up to the ingest time-out (3 s by default), a reconciliation through the API longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "unmatched"  # no route: 404s (their paths are not labels)
_CALLBACK_PATH = re.compile(r"^/onboardings/[^/]+/callbacks$")
# Refusals the doors' code does not count itself, by status: a body over its limit (answered
# before routing) and a 422 (a path that is not a user id, refused before the route's code runs).
# A request its door counted itself is marked (mark_counted) and not counted again here.
_EARLY_REFUSALS = {413: "refused_too_large", 422: "refused_invalid"}


def webhook_type(value: str | None) -> str:
    if value is None:
        return NONE
    return value if value in WEBHOOK_TYPES else OTHER


def callback_type(value: str | None) -> str:
    if value is None:
        return NONE
    return value if value in WIDGET_CALLBACKS else OTHER


class _Tally:
    """A labelled counter with its children kept in a plain dict, so a hot path's increment
    skips prometheus-client's locked ``labels()`` look-up after the first time."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[tuple[str, ...], Any] = {}

    def inc(self, *labels: str) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._counter.labels(*labels)
        child.inc()


# Open onboardings are counted by these statuses at scrape time (one visibility count each).
OPEN_STATUSES = (Status.ACTIVE, Status.STALLED)


@dataclass(frozen=True)
class ScrapeFigures:
    """What a scrape read from the spool and Temporal; ``None`` for what did not answer."""

    spool: SpoolStats | None = None
    open: dict[Status, int] | None = None


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Marks a background task's outcome as seen, whoever awaited it."""
    if not task.cancelled():
        task.exception()


class _ScrapeTimeCollector:
    """What is read when Prometheus scrapes (``refresh`` first): the spool's figures and the
    open onboardings by status, kept in ``figures`` for a few seconds, each read bounded by
    ``within`` seconds; and this process's circuit breaker, read as it is."""

    def __init__(
        self,
        spooler: Spooler,
        gate: TemporalGate,
        within: float,
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self._spooler = spooler
        self._gate = gate
        self._within = within
        self.figures: TtlCache[ScrapeFigures] = TtlCache(ttl, clock)
        self._current = ScrapeFigures()
        # The spool's read in flight. On SQLite it runs in the spool's one thread, which a
        # time-out cannot stop: a read still running when the next refresh comes is awaited
        # again rather than queued behind a second one.
        self._spool_read: asyncio.Task[SpoolStats] | None = None

    async def refresh(self, onboardings: Onboardings | None) -> None:
        self._current = await self.figures.get(lambda: self._read(onboardings))

    async def _read(self, onboardings: Onboardings | None) -> ScrapeFigures:
        spool, open_now = await asyncio.gather(self._read_spool(), self._count_open(onboardings))
        return ScrapeFigures(spool, open_now)

    async def _spool_stats(self) -> SpoolStats:
        spool = await self._spooler.ready()
        return await spool.stats()

    async def _read_spool(self) -> SpoolStats | None:
        read = self._spool_read
        if read is None or read.done():
            read = self._spool_read = asyncio.ensure_future(self._spool_stats())
            read.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(self._within):
                return await asyncio.shield(read)
        except (SpoolError, TimeoutError) as err:
            logger.debug("metrics: the spool did not answer: %s", err or "no answer in time")
            return None

    async def _count_open(self, onboardings: Onboardings | None) -> dict[Status, int] | None:
        if onboardings is None or not self._gate.would_admit():
            return None  # not connected yet, or Temporal is known not to answer
        try:
            async with asyncio.timeout(self._within):
                counts = await asyncio.gather(
                    *(onboardings.count(status=status) for status in OPEN_STATUSES)
                )
        except Exception as err:  # any failure: the gauge is left out of this scrape
            logger.debug("metrics: Temporal did not count onboardings: %s", err or "time-out")
            return None
        return dict(zip(OPEN_STATUSES, counts, strict=True))

    def collect(self) -> Iterator[Metric]:
        stats = self._current.spool
        yield GaugeMetricFamily(
            "onboarding_spool_up",
            "1 when the spool answered (its figures follow), 0 when it did not",
            value=0 if stats is None else 1,
        )
        yield GaugeMetricFamily(
            "onboarding_spool_max_bytes",
            "ONBOARDING_SPOOL_MAX_BYTES: beyond it the spool refuses events",
            value=self._spooler.spool.max_bytes,
        )
        if stats is not None:
            oldest = stats.oldest_spooled_at
            age = 0.0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0)
            for name, help_text, value in (
                ("onboarding_spool_depth", "Events waiting in the spool for Temporal", stats.depth),
                ("onboarding_spool_bytes", "Payload bytes of the events waiting", stats.bytes),
                (
                    "onboarding_spool_oldest_age_seconds",
                    "Age of the oldest event waiting in the spool (0 when it is empty)",
                    age,
                ),
                (
                    "onboarding_spool_dead_letters",
                    "Signed webhooks kept in the dead-letter for an operator",
                    stats.dead_letters,
                ),
            ):
                yield GaugeMetricFamily(name, help_text, value=value)
        if self._current.open is not None:
            open_now = GaugeMetricFamily(
                "onboarding_onboardings",
                "Open onboardings by status, counted by Temporal's visibility at scrape time "
                "(the whole namespace: the same on every API replica)",
                labels=["status"],
            )
            for status, count in self._current.open.items():
                open_now.add_metric([status.value], count)
            yield open_now
        breaker = GaugeMetricFamily(
            "onboarding_temporal_breaker",
            "This process's circuit breaker in front of Temporal: 1 for its current state",
            labels=["state"],
        )
        current = self._gate.state.value
        for state in ("closed", "open", "half_open"):
            breaker.add_metric([state], 1 if state == current else 0)
        yield breaker


class ApiMetrics:
    """One app's metrics and their registry. The scrape-time figures are kept ``ttl`` seconds
    (by ``clock``) in :attr:`figures`."""

    def __init__(
        self,
        spooler: Spooler,
        gate: TemporalGate,
        within: float = 1.0,
        ttl: float = SCRAPE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._webhooks = _Tally(
            Counter(
                "onboarding_webhooks",
                "Smile webhooks received, by event type and outcome",
                ["type", "outcome"],
                registry=registry,
            )
        )
        self._callbacks = _Tally(
            Counter(
                "onboarding_callbacks",
                "Wink Widget callbacks received, by callback and outcome",
                ["type", "outcome"],
                registry=registry,
            )
        )
        self._signature_failures = _Tally(
            Counter(
                "onboarding_signature_failures",
                "Requests refused for a missing or bad signature: Smile-Signature on webhooks, "
                "the callback token on callbacks",
                ["door", "reason"],
                registry=registry,
            )
        )
        self._latency = Histogram(
            "onboarding_http_request_duration_seconds",
            "Time from a request's arrival to its answer's end, by route template",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._latency_children: dict[tuple[str, str, int | str], Any] = {}
        self._scraped = _ScrapeTimeCollector(spooler, gate, within, ttl, clock)
        self.figures = self._scraped.figures
        registry.register(self._scraped)

    def webhook(self, type_: str | None, outcome: str) -> None:
        self._webhooks.inc(webhook_type(type_), outcome)

    def callback(self, type_: str | None, outcome: str) -> None:
        self._callbacks.inc(callback_type(type_), outcome)

    def signature_failure(self, door: str, reason: str) -> None:
        self._signature_failures.inc(door, reason)

    def request(
        self, route: str, method: str, status: int | str, seconds: float, counted: bool = False
    ) -> None:
        """One request answered with ``status`` (or :data:`DISCONNECTED`); ``counted`` when
        the door's code counted it already."""
        key = (route, method, status)
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self._latency.labels(route, method, str(status))
        child.observe(seconds)
        refused = None if counted or isinstance(status, str) else _EARLY_REFUSALS.get(status)
        if refused is not None:  # not counted by the door's own code: counted here
            if route == WEBHOOK_ROUTE:
                self.webhook(None, refused)
            elif route == CALLBACK_ROUTE:
                self.callback(None, refused)

    async def refresh(self, onboardings: Onboardings | None) -> None:
        """Read what is read at scrape time (unless read less than ``ttl`` seconds ago), each
        read bounded by ``within`` seconds."""
        await self._scraped.refresh(onboardings)


# Set in a request's scope by a door that counted the request itself (see :func:`mark_counted`).
_COUNTED = "onboarding.metrics.counted"


def mark_counted(scope: Scope) -> None:
    """Marks the request as counted by its door's code: the middleware does not count it again
    by its status (a callback whose event Temporal refused is answered 422 by the app's error
    handler, but its route knew and counted its type)."""
    scope[_COUNTED] = True


def _route_of(scope: Scope) -> str:
    """The route template that served the request. A request answered before routing (a body
    over its limit) has none: the two doors' are recognised by their path, the rest are
    ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    path = scope["path"]
    if path == WEBHOOK_ROUTE:
        return WEBHOOK_ROUTE
    if _CALLBACK_PATH.match(path):
        return CALLBACK_ROUTE
    return _UNMATCHED


class MetricsMiddleware:
    """Times every HTTP request, labelled by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None  # until a response starts
        disconnected = False

        async def receiving() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:
            method = scope["method"]
            self.metrics.request(
                _route_of(scope),
                method if method in _METHODS else "OTHER",
                # No response started: the client went away first, or an exception is on its
                # way to be answered outside this middleware (500).
                status if status is not None else DISCONNECTED if disconnected else 500,
                time.perf_counter() - started,
                counted=scope.get(_COUNTED, False),
            )
