"""Smile's limits on a user's ``externalMetadata`` (``ObjectExternalMetadata`` in its OpenAPI
spec), checked before Smile is called, so a bad value is our 400 and not Smile's refusal.

The spec: an object whose values are strings (no nested JSON), ASCII only, at most 5
key/value pairs, keys of at most 50 characters, values of at most 500. Pure."""

from __future__ import annotations

from typing import Any

MAX_KEYS = 5
MAX_KEY_LENGTH = 50
MAX_VALUE_LENGTH = 500


def _kind(value: object) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"),
                       (list, "an array"), (dict, "an object"), (str, "a string")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _show(key: str) -> str:
    return repr(key if len(key) <= 20 else key[:20] + "…")


def check_external_metadata(value: dict[str, Any] | None) -> None:
    """Raise ``ValueError`` saying what breaks Smile's limits; ``None`` (no metadata) is fine."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValueError(f"must be an object of strings, not {_kind(value)}")
    if len(value) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys are allowed, got {len(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"keys must be strings, not {_kind(key)}")
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"key {_show(key)} is {len(key)} characters long; at most {MAX_KEY_LENGTH}"
            )
        if not key.isascii():
            raise ValueError(f"key {_show(key)} has non-ASCII characters; only ASCII is allowed")
        if not isinstance(item, str):
            raise ValueError(f"value of {_show(key)} must be a string, not {_kind(item)}")
        if len(item) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"value of {_show(key)} is {len(item)} characters long; at most {MAX_VALUE_LENGTH}"
            )
        if not item.isascii():
            raise ValueError(
                f"value of {_show(key)} has non-ASCII characters; only ASCII is allowed"
            )
