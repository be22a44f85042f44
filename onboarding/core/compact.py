"""What of an event's ``data`` is worth keeping in the workflow.

Smile's ``TASK_FINISHED`` may carry the user's whole data set as ``payload`` (megabytes of
personal data, over Temporal's payload limit). The workflow needs ids, statuses, counts and error
codes, so only top-level scalars, lists of scalars and small flat objects are kept."""

from __future__ import annotations

import json
from typing import Any

# Dropped by name: the data payload itself, and the user's login name for the provider.
_DROPPED = frozenset({"payload", "loginName"})
_MAX_STRING = 512
_MAX_LIST = 50


def _scalar(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, bool | int | float)
        or (isinstance(value, str) and len(value) <= _MAX_STRING)
    )


def compact_data(data: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in _DROPPED:
            continue
        if _scalar(value) or (
            isinstance(value, list) and len(value) <= _MAX_LIST and all(map(_scalar, value))
        ):
            kept[key] = value
        elif isinstance(value, dict):
            flat = {k: v for k, v in value.items() if _scalar(v) and k not in _DROPPED}
            if flat:
                kept[key] = flat
    return kept


def without_dropped_fields(body: bytes) -> bytes:
    """A webhook body to keep (the dead-letter) without what is never stored: ``data``'s
    ``payload`` and ``loginName``. Anything that is not a JSON object with such a ``data`` is
    kept exactly as it came."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return body
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict) or not _DROPPED & data.keys():
        return body
    kept = {k: v for k, v in data.items() if k not in _DROPPED}
    return json.dumps({**envelope, "data": kept}, separators=(",", ":")).encode()
