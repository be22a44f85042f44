"""The load: short, webhook-only journeys with a known end, and the schedule that spreads their
deliveries over time at a steady rate.

Each user's events go out in the journey's order with ``createdAt`` increasing, at Smile's
one-second precision; users are interleaved, so every user's journey spans most of the load.
Some events are delivered twice on purpose (Smile delivers at least once): a second, independent
delivery of the same signed body a little later. Only the events of a fixed subset of users get
one (every third user by default), so the other journeys are delivered once each: a second
delivery can repair an acknowledged-then-lost first one and so hide it, and these journeys have
none to hide anything."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from onboarding.core.models import Stage, Status

CONNECTED_ONLY = "connected"
WITH_DATA = "data_ready"

# journey kind -> (event types in order, expected (stage, status) once all are applied). With
# the default required data (identity, employments, incomes) the data events make it data_ready;
# the default settle window (10 minutes) keeps it active for far longer than a run.
JOURNEYS: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    WITH_DATA: (
        ("USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED",
         "IDENTITY_ADDED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED"),
        (Stage.DATA_READY.value, Status.ACTIVE.value),
    ),
    CONNECTED_ONLY: (
        ("USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED"),
        (Stage.CONNECTED.value, Status.ACTIVE.value),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class PlannedEvent:
    event_id: str
    user_id: str
    type: str
    created_at: datetime
    body: bytes  # the envelope exactly as sent (and signed)


@dataclass(frozen=True)
class Journey:
    user_id: str
    kind: str
    events: tuple[PlannedEvent, ...]
    duplicated: bool = False  # of the subset of users whose events may be delivered twice

    @property
    def expected(self) -> tuple[str, str]:
        """(stage, status) once every event is applied."""
        return JOURNEYS[self.kind][1]


@dataclass(frozen=True)
class Delivery:
    at: float  # seconds after the load starts
    event: PlannedEvent
    duplicate: bool  # the on-purpose second delivery of an event


@dataclass(frozen=True)
class LoadPlan:
    journeys: tuple[Journey, ...]
    deliveries: tuple[Delivery, ...]  # by ``at``
    seconds: float

    @property
    def events(self) -> list[PlannedEvent]:
        return [event for journey in self.journeys for event in journey.events]

    def delivered_twice(self) -> frozenset[str]:
        """The ids of the events with an on-purpose second delivery."""
        return frozenset(d.event.event_id for d in self.deliveries if d.duplicate)


def _event_data(event_type: str, user_id: str, account_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"userId": user_id}
    if event_type in ("ACCOUNT_CREATED", "ACCOUNT_CONNECTED"):
        data |= {"accountId": account_id, "providers": ["abccorp"]}
    elif event_type == "IDENTITY_ADDED":
        data |= {"accountId": account_id, "identityId": f"i-{account_id}"}
    elif event_type == "EMPLOYMENTS_ADDED":
        data |= {"accountId": account_id, "count": 2}
    elif event_type == "INCOMES_ADDED":
        data |= {"accountId": account_id, "count": 12}
    return data


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_load(
    users: int,
    seconds: float,
    *,
    seed: int = 1,
    duplicate_rate: float = 0.1,
    duplicate_every: int = 3,
    connected_only_every: int = 4,
    run_id: str | None = None,
    start: datetime | None = None,
) -> LoadPlan:
    """``users`` journeys whose deliveries are spread evenly over ``seconds``. Every
    ``connected_only_every``-th user stops at ``connected`` (0: none), the others reach
    ``data_ready``. Only every ``duplicate_every``-th user's events (the 2nd, 5th, 8th, … with
    3; 0: nobody's) may get a second delivery, 0.5 to 3 seconds after the first (within the
    load), each with the probability that makes about ``duplicate_rate`` of all the events
    delivered twice; every other user's events are delivered once. User ids carry ``run_id``
    (random by default), so runs against one Temporal server never meet."""
    if users < 1 or seconds <= 0:
        raise ValueError("a load needs at least one user and a positive duration")
    if duplicate_every < 0 or not 0.0 <= duplicate_rate <= 1.0:
        raise ValueError("duplicate_every must be >= 0 and duplicate_rate within [0, 1]")
    rng = random.Random(seed)  # noqa: S311 - a reproducible load, not a secret
    run_id = run_id or uuid.uuid4().hex[:8]
    base = (start or datetime.now(UTC)).replace(microsecond=0)
    kinds = [
        CONNECTED_ONLY if connected_only_every and i % connected_only_every == 3 else WITH_DATA
        for i in range(users)
    ]
    duplicated = [
        bool(duplicate_every) and u % duplicate_every == 1 % duplicate_every for u in range(users)
    ]
    # Within the subset: the share that makes about duplicate_rate of all events twice sent.
    duplicate_chance = min(1.0, duplicate_rate * duplicate_every)
    types = [JOURNEYS[kind][0] for kind in kinds]
    # Round-robin over the users: round r sends every user's r-th event.
    order = [(u, r) for r in range(max(len(t) for t in types)) for u in range(users)
             if r < len(types[u])]  # fmt: skip
    step = seconds / len(order)
    offsets = {key: i * step for i, key in enumerate(order)}
    journeys: list[Journey] = []
    for u, kind in enumerate(kinds):
        user_id = f"chaos-{run_id}-{u:05d}"
        account_id = f"a-{run_id}-{u:05d}"
        events: list[PlannedEvent] = []
        previous: datetime | None = None
        for r, event_type in enumerate(types[u]):
            created = base + timedelta(seconds=int(offsets[(u, r)]))
            if previous is not None and created <= previous:
                created = previous + timedelta(seconds=1)  # increasing, second precision
            previous = created
            event_id = f"et-{uuid.UUID(int=rng.getrandbits(128)).hex}"
            envelope = {
                "id": event_id,
                "version": 1,
                "type": event_type,
                "createdAt": _iso(created),
                "data": _event_data(event_type, user_id, account_id),
            }
            body = json.dumps(envelope, separators=(",", ":")).encode()
            events.append(PlannedEvent(event_id, user_id, event_type, created, body))
        journeys.append(Journey(user_id, kind, tuple(events), duplicated[u]))
    deliveries = [
        Delivery(offsets[(u, r)], journeys[u].events[r], duplicate=False) for (u, r) in order
    ]
    for (u, _), delivery in zip(order, list(deliveries), strict=True):
        if duplicated[u] and rng.random() < duplicate_chance:
            later = min(delivery.at + rng.uniform(0.5, 3.0), seconds)
            deliveries.append(Delivery(later, delivery.event, duplicate=True))
    deliveries.sort(key=lambda d: d.at)
    return LoadPlan(tuple(journeys), tuple(deliveries), seconds)
