"""After the load and the recovery: read every user's onboarding back over the API until it is
settled (every acknowledged event applied), with a deadline, and count what happened to the
events and the journeys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from onboarding.tooling.chaos.journeys import Journey, LoadPlan
from onboarding.tooling.chaos.sender import Sender

TABLE_COLUMNS = (
    "scenario", "events sent", "acknowledged", "spooled", "applied", "lost", "given up",
    "mismatched journeys", "duration",
)  # fmt: skip


@dataclass
class ChaosResult:
    """What one scenario did to the events it sent.

    - ``events_planned``: unique events in the load;
    - ``events_sent``: of those, tried at least once (all, once the sender has finished);
    - ``acknowledged``: of those, answered 2xx at least once;
    - ``spooled``: of those, acknowledged only as ``"outcome": "spooled"`` (kept by the API's
      spool while Temporal could not take them), never as ``signalled``;
    - ``applied``: acknowledged events found in their onboarding's event list;
    - ``lost``: acknowledged and not applied (must be 0);
    - ``acknowledged_once`` and ``lost_once``: the same two counts for the events the load
      delivers once only (no on-purpose duplicate, which could repair a lost first delivery);
    - ``given_up``: sent and never acknowledged (the sender's retries ran out: with Smile,
      lost as well);
    - ``mismatched_journeys``: journeys whose every event was acknowledged and whose final
      stage/status is not the expected one (must be 0); a journey with an event given up is
      not judged, so a run is only complete with ``given_up == 0``;
    - ``applied_unacknowledged``: applied although never acknowledged (the answer was lost);
    - ``facts``: what the scenario measured at its strike (say, requests cut off by a kill,
      or the rows in the spool just after it), by name."""

    scenario: str
    events_planned: int
    events_sent: int
    acknowledged: int
    spooled: int
    applied: int
    lost: int
    given_up: int
    mismatched_journeys: int
    journeys: int
    complete_journeys: int  # journeys whose every event was acknowledged
    seconds: float
    applied_unacknowledged: int = 0
    acknowledged_once: int = 0
    lost_once: int = 0
    deliveries: int = 0
    attempts: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed attempts by cause
    lost_events: list[str] = field(default_factory=list)  # "user/event-id (TYPE)", at most 20
    mismatches: list[str] = field(default_factory=list)  # at most 20
    notes: list[str] = field(default_factory=list)  # what the scenario did, when
    facts: dict[str, int] = field(default_factory=dict)  # what it measured at its strike

    @property
    def acknowledged_ratio(self) -> float:
        return self.acknowledged / self.events_sent if self.events_sent else 0.0

    @staticmethod
    def markdown_header() -> str:
        return (
            "| " + " | ".join(TABLE_COLUMNS) + " |\n"
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(TABLE_COLUMNS))) + "|"
        )

    def markdown_row(self) -> str:
        cells = [
            self.scenario, self.events_sent, self.acknowledged, self.spooled, self.applied,
            self.lost, self.given_up, self.mismatched_journeys, f"{self.seconds:.0f}s",
        ]  # fmt: skip
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def summary(self) -> str:
        """Everything, for a failing assertion or a log: counts, causes, notes, examples."""
        lines = [
            f"{self.scenario}: {self.events_sent} sent, {self.acknowledged} acknowledged "
            f"({self.spooled} spooled), {self.applied} applied, {self.lost} lost "
            f"({self.lost_once} of the {self.acknowledged_once} acknowledged events delivered "
            f"once), {self.given_up} given up, {self.mismatched_journeys} of "
            f"{self.complete_journeys} "
            f"complete journeys mismatched ({self.journeys} journeys), "
            f"{self.applied_unacknowledged} applied unacknowledged; {self.deliveries} "
            f"deliveries, {self.attempts} attempts in {self.seconds:.1f}s",
        ]
        if self.errors:
            causes = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
            lines.append(f"  failed attempts: {causes}")
        if self.facts:
            lines.append("  facts: " + ", ".join(f"{k}={v}" for k, v in self.facts.items()))
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  lost: {item}" for item in self.lost_events]
        lines += [f"  mismatch: {item}" for item in self.mismatches]
        return "\n".join(lines)


class _Reader:
    """Reads views over the API, round-robin over the URLs that answer."""

    def __init__(self, http: httpx.AsyncClient, urls: Sequence[str], admin_token: str) -> None:
        self.http = http
        self.urls = list(urls)
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.turn = 0

    async def view(self, user_id: str) -> dict[str, Any] | None:
        """The view, or None when there is none (404) or it cannot be read just now."""
        self.turn += 1
        url = self.urls[self.turn % len(self.urls)]
        try:
            response = await self.http.get(f"{url}/onboardings/{user_id}", headers=self.headers)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        view = response.json()
        return view if isinstance(view, dict) else None


def _applied_ids(view: dict[str, Any] | None) -> set[str]:
    if view is None:
        return set()
    return {e["id"] for e in view.get("events", []) if e.get("source") == "webhook"}


async def settle(
    plan: LoadPlan,
    sender: Sender,
    api_urls: Sequence[str],
    admin_token: str,
    *,
    within: float,
    concurrency: int = 8,
    interval: float = 0.25,
) -> dict[str, dict[str, Any] | None]:
    """Poll each user's view until every acknowledged event of theirs is applied, or the
    deadline passes; return the last view of every user (None: never read)."""
    deadline = time.monotonic() + within
    views: dict[str, dict[str, Any] | None] = {}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=10) as http:
        reader = _Reader(http, api_urls, admin_token)

        async def one(journey: Journey) -> None:
            acked = {e.event_id for e in journey.events if sender.ledger[e.event_id].acknowledged}
            sent = any(sender.ledger[e.event_id].sent for e in journey.events)
            while True:
                async with gate:
                    view = await reader.view(journey.user_id) if sent else None
                if view is not None or journey.user_id not in views:
                    views[journey.user_id] = view
                if acked <= _applied_ids(views[journey.user_id]):
                    return
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(interval)  # polling interval; the deadline bounds the wait

        await asyncio.gather(*(one(journey) for journey in plan.journeys))
    return views


def count(
    scenario: str,
    plan: LoadPlan,
    sender: Sender,
    views: dict[str, dict[str, Any] | None],
    seconds: float,
    notes: Sequence[str] = (),
    facts: Mapping[str, int] | None = None,
) -> ChaosResult:
    twice = plan.delivered_twice()
    sent = acknowledged = spooled = applied = lost = unacked_applied = 0
    acknowledged_once = lost_once = 0
    mismatched = complete = 0
    lost_events: list[str] = []
    mismatches: list[str] = []
    for journey in plan.journeys:
        view = views.get(journey.user_id)
        present = _applied_ids(view)
        all_acked = True
        for event in journey.events:
            entry = sender.ledger[event.event_id]
            if not entry.sent:
                all_acked = False
                continue
            sent += 1
            if not entry.acknowledged:
                all_acked = False
                unacked_applied += event.event_id in present
                continue
            acknowledged += 1
            once = event.event_id not in twice
            acknowledged_once += once
            if "signalled" not in entry.outcomes and "spooled" in entry.outcomes:
                spooled += 1
            if event.event_id in present:
                applied += 1
            else:
                lost += 1
                lost_once += once
                if len(lost_events) < 20:
                    outcomes = ",".join(entry.outcomes)
                    lost_events.append(
                        f"{journey.user_id}/{event.event_id} ({event.type}, acknowledged as "
                        f"{outcomes or '?'}, delivered {'once' if once else 'twice'})"
                    )
        if all_acked:
            complete += 1
            actual = (view["stage"], view["status"]) if view is not None else None
            if actual != journey.expected:
                mismatched += 1
                if len(mismatches) < 20:
                    shown = "/".join(actual) if actual else "no view"
                    mismatches.append(
                        f"{journey.user_id} ({journey.kind}): {shown}, expected "
                        f"{'/'.join(journey.expected)}"
                    )
    return ChaosResult(
        scenario=scenario,
        events_planned=len(plan.events),
        events_sent=sent,
        acknowledged=acknowledged,
        spooled=spooled,
        applied=applied,
        lost=lost,
        given_up=sent - acknowledged,
        mismatched_journeys=mismatched,
        journeys=len(plan.journeys),
        complete_journeys=complete,
        seconds=seconds,
        applied_unacknowledged=unacked_applied,
        acknowledged_once=acknowledged_once,
        lost_once=lost_once,
        deliveries=sum(e.deliveries for e in sender.ledger.values()),
        attempts=len(sender.attempts()),
        errors=dict(sender.errors()),
        lost_events=lost_events,
        mismatches=mismatches,
        notes=list(notes),
        facts=dict(facts or {}),
    )
