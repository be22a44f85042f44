"""What a verified (signed) Smile webhook body is good for: an event for one user's onboarding,
an event that names no user, or something that cannot be used and goes to the dead-letter.

The same rules run when the webhook arrives and when an operator replays a dead letter after
a fix, so a replay is judged exactly as a fresh delivery would be."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from onboarding.core.compact import compact_data
from onboarding.core.identity import is_valid_user_id, user_id_in
from onboarding.core.models import Event, SmileWebhook, Source


@dataclass(frozen=True)
class ForUser:
    envelope: SmileWebhook
    user_id: str


@dataclass(frozen=True)
class NoUser:
    envelope: SmileWebhook


@dataclass(frozen=True)
class Unusable:
    reason: str  # in our words; never repeats the body's values
    event_id: str | None
    type: str | None


Triage = ForUser | NoUser | Unusable


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's errors as ``field.path: message; …``, without the offending input."""
    parts = []
    for error in errors:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "; ".join(parts[:10]) or "invalid"


def _label(value: Any, limit: int) -> str | None:
    """An id or type to file a dead letter under, when the body has a sensible one."""
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def triage(body: bytes) -> Triage:
    try:
        envelope = SmileWebhook.model_validate_json(body)
    except ValidationError as err:
        try:
            raw = json.loads(body)
        except ValueError:
            return Unusable("the body is not JSON", None, None)
        if not isinstance(raw, dict):
            return Unusable("the body is not a JSON object", None, None)
        return Unusable(
            f"not a Smile webhook envelope: {describe_errors(err.errors())}",
            _label(raw.get("id"), 256),
            _label(raw.get("type"), 128),
        )
    user_id = user_id_in(envelope.data)
    if user_id is None:
        return NoUser(envelope)
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        return Unusable(
            "data.userId is not a Smile user id (letters, digits, . _ : @ -, at most 200)",
            envelope.id,
            envelope.type,
        )
    return ForUser(envelope, user_id)


def event_from(envelope: SmileWebhook, received_at: datetime) -> Event:
    """The event the onboarding receives for a webhook."""
    return Event(
        id=envelope.id,
        type=envelope.type,
        source=Source.WEBHOOK,
        created_at=envelope.created_at,
        received_at=received_at,
        data=compact_data(envelope.data),
        version=envelope.version,
    )
