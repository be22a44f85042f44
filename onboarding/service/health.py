"""Whether the service can make events durable: Temporal reachable, or the spool writable.
The API's ``/readyz`` and ``onboarding status`` (without a user) report the same document."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Literal

from onboarding.core.models import CamelModel
from onboarding.service.onboardings import Onboardings
from onboarding.service.spool import SpoolError
from onboarding.service.spooling import Spooler, TemporalGate

logger = logging.getLogger("onboarding.health")


class SpoolHealth(CamelModel):
    writable: bool
    full: bool
    depth: int | None
    bytes: int | None
    max_bytes: int
    oldest_age_seconds: float | None
    dead_letters: int | None
    error: str | None = None


class ServiceHealth(CamelModel):
    status: Literal["ready", "degraded", "not ready"]
    detail: str
    temporal: Literal["reachable", "unreachable"]
    breaker: str | None  # this process's: closed, open or half_open
    spool: SpoolHealth

    @property
    def ready(self) -> bool:
        return self.status != "not ready"


async def _temporal_reachable(onboardings: Onboardings, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            return await onboardings.client.service_client.check_health(
                timeout=timedelta(seconds=within)
            )
    except Exception:  # any failure to reach Temporal means "unreachable"
        return False


async def _spool_health(spooler: Spooler, within: float) -> SpoolHealth:
    max_bytes = spooler.spool.max_bytes
    try:
        async with asyncio.timeout(within):
            spool = await spooler.ready()
            stats = await spool.stats()
            await spool.check_writable()
    except (SpoolError, TimeoutError) as err:
        # The details (paths, hosts, the driver's words) go to the log, not to an
        # unauthenticated probe.
        logger.warning("the spool is not writable: %s", err or "no answer in time")
        return SpoolHealth(
            writable=False,
            full=False,
            depth=None,
            bytes=None,
            max_bytes=max_bytes,
            oldest_age_seconds=None,
            dead_letters=None,
            error="no answer in time" if isinstance(err, TimeoutError) else "not writable",
        )
    oldest = stats.oldest_spooled_at
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
    return SpoolHealth(
        writable=True,
        full=stats.bytes >= max_bytes or spooler.is_full(stats.bytes),
        depth=stats.depth,
        bytes=stats.bytes,
        max_bytes=max_bytes,
        oldest_age_seconds=None if age is None else max(age, 0.0),
        dead_letters=stats.dead_letters,
    )


async def check(
    onboardings: Onboardings,
    spooler: Spooler,
    gate: TemporalGate | None = None,
    within: float = 1.0,
) -> ServiceHealth:
    """Both checks run at once, each bounded by ``within`` seconds, so a probe with a short
    time-out still gets an answer while Temporal or the database hangs."""
    reachable, spool = await asyncio.gather(
        _temporal_reachable(onboardings, within), _spool_health(spooler, within)
    )
    takes = spool.writable and not spool.full
    if reachable and takes:
        status, detail = "ready", "events go to Temporal; the spool stands by"
    elif reachable:
        status, detail = "degraded", "events go to Temporal; the spool cannot take any"
    elif takes:
        status, detail = "degraded", "Temporal is unreachable: events are spooled"
    else:
        status, detail = "not ready", "neither Temporal nor the spool can take events"
    return ServiceHealth(
        status=status,
        detail=detail,
        temporal="reachable" if reachable else "unreachable",
        breaker=gate.state.value if gate is not None else None,
        spool=spool,
    )
