"""Smile's documented example payloads (copied verbatim from its webhook reference) and helpers
for building events in tests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onboarding.core.models import Event, Source

FIXTURES = Path(__file__).parent / "fixtures" / "smile"
EXAMPLE_USER = "tenantId-123abc456def789abc123def456abc78"
BASE_TIME = datetime(2021, 4, 14, 9, 30, 24, tzinfo=UTC)


def example_body(event_type: str) -> bytes:
    """The documented example payload, byte for byte."""
    return (FIXTURES / "webhooks" / f"{event_type}.json").read_bytes()


def example_types() -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "webhooks").glob("*.json"))


def spec_event_types() -> list[str]:
    lines = (FIXTURES / "webhook-event-types.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def webhook_body(
    event_type: str,
    user_id: str,
    *,
    event_id: str | None = None,
    created_at: datetime | None = None,
    **data: Any,
) -> bytes:
    """A documented example re-targeted at ``user_id`` (fresh id, optional extra data)."""
    path = FIXTURES / "webhooks" / f"{event_type}.json"
    envelope: dict[str, Any]
    if path.is_file():
        envelope = json.loads(path.read_text())
    else:
        envelope = {"version": 1, "type": event_type, "data": {}}
    envelope["id"] = event_id or f"et-{uuid.uuid4().hex}"
    envelope["createdAt"] = (created_at or BASE_TIME).isoformat().replace("+00:00", "Z")
    envelope["data"]["userId"] = user_id
    envelope["data"].update(data)
    return json.dumps(envelope).encode()


def event(
    event_type: str,
    *,
    event_id: str | None = None,
    source: Source = Source.WEBHOOK,
    at: int = 0,
    **data: Any,
) -> Event:
    """An event as the workflow receives it, ``at`` seconds after a fixed base time."""
    created = BASE_TIME + timedelta(seconds=at)
    return Event(
        id=event_id or f"et-{uuid.uuid4().hex}",
        type=event_type,
        source=source,
        created_at=created,
        received_at=created,
        data={"userId": "u-test", **data},
    )


# --- every documented example (extracted from Smile's docs by fixtures/smile/extract_documented.py)

DOCUMENTED = FIXTURES / "documented"
# Event types that name no user: Smile sends them, and they match no onboarding.
NO_USER_TYPES = frozenset(
    {"RECORD_CREATED", "RECORD_COMPLETED", "VERIFICATION_STARTED", "VERIFICATION_COMPLETED"}
)


def documented_webhooks() -> list[dict[str, Any]]:
    """Every webhook example of Smile's OpenAPI spec and webhook reference, with where it came
    from (``source``) and the ``data`` fields the spec marks required for its type."""
    return json.loads((DOCUMENTED / "webhooks.json").read_text())  # type: ignore[no-any-return]


def documented_callbacks() -> dict[str, Any]:
    """The Wink Widget callbacks (name -> documented data properties) and ``onUIEvent``
    screens (event name -> event-specific properties) of Smile's callback reference."""
    return json.loads((DOCUMENTED / "callbacks.json").read_text())  # type: ignore[no-any-return]


def minimal_data(example: dict[str, Any]) -> dict[str, Any]:
    """An example's ``data`` reduced to the fields the spec marks required (those the example
    has), required nested objects (the ``session``) reduced the same way."""
    data: dict[str, Any] = example["envelope"].get("data") or {}
    kept = {name: data[name] for name in example["required"] if name in data}
    for name, fields in example.get("requiredNested", {}).items():
        if isinstance(kept.get(name), dict):
            kept[name] = {f: kept[name][f] for f in fields if f in kept[name]}
    return kept


def fresh_envelope(
    example: dict[str, Any], user_id: str, *, minimal: bool = False
) -> dict[str, Any]:
    """A documented example with a fresh event id, re-targeted at ``user_id`` wherever it names
    its user (``data.userId``, or ``data.session.userId`` for the session events)."""
    envelope: dict[str, Any] = json.loads(json.dumps(example["envelope"]))
    envelope["id"] = f"et-{uuid.uuid4().hex}"
    if minimal:
        envelope["data"] = minimal_data(example)
    data = envelope.setdefault("data", {})
    if isinstance(data.get("session"), dict):
        data["session"]["userId"] = user_id
    elif envelope["type"] not in NO_USER_TYPES:
        data["userId"] = user_id
    return envelope
