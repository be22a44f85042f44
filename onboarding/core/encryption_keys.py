"""The keys that encrypt payloads in Temporal (``ONBOARDING_ENCRYPTION_KEYS``): pure parsing and
generation, no I/O and no cryptography beyond the random bytes of a new key.

One key is written ``ID:BASE64``: an id (letters, digits, ``.``, ``_``, ``-``; at most 64; it is
stored in every payload's metadata, so never put anything secret or personal in it) and the
base64 of exactly 32 random bytes (AES-256). Several keys, newest first, are comma separated
(``k2:…,k1:…``) or a JSON list of such strings. New payloads are encrypted with the first; the
others only decrypt what was written under them (rotation). Every error names the key's
position in the list, never its value."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

KEY_BYTES = 32  # AES-256
KEY_ID_MAX = 64
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class EncryptionKey:
    """A key and its id. The key bytes never appear in its repr."""

    id: str
    key: bytes = field(repr=False)


def check_key_id(key_id: str, position: int = 1) -> str:
    if not key_id or len(key_id) > KEY_ID_MAX or not _KEY_ID.fullmatch(key_id):
        raise ValueError(
            f"encryption key number {position} has an invalid id: use 1 to {KEY_ID_MAX} "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return key_id


def _decode_key(text: str, position: int) -> bytes:
    text = text.strip()
    # the standard alphabet or the URL-safe one; padding optional
    normalised = text.replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        key = base64.b64decode(normalised, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"encryption key number {position} is not ID:BASE64 (its key part is not base64)"
        ) from None
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"encryption key number {position} is {len(key)} bytes long; an AES-256 key is "
            f"exactly {KEY_BYTES} random bytes (onboarding encryption-key makes one)"
        )
    return key


def parse_key(text: str, position: int = 1) -> EncryptionKey:
    """``ID:BASE64`` into a key; the error names ``position``, never the value."""
    key_id, sep, material = text.strip().partition(":")
    if not sep:
        raise ValueError(
            f"encryption key number {position} is not ID:BASE64 (no ':' between id and key)"
        )
    return EncryptionKey(check_key_id(key_id.strip(), position), _decode_key(material, position))


def parse_keys(texts: Iterable[str]) -> tuple[EncryptionKey, ...]:
    """Each ``ID:BASE64`` parsed, newest first as given; ids must differ."""
    keys: list[EncryptionKey] = []
    seen: dict[str, int] = {}
    for position, text in enumerate(texts, start=1):
        key = parse_key(text, position)
        if key.id in seen:
            raise ValueError(
                f"encryption key number {position} has the same id as number {seen[key.id]}: "
                "each key needs its own id"
            )
        seen[key.id] = position
        keys.append(key)
    return tuple(keys)


def format_key(key: EncryptionKey) -> str:
    """The ``ID:BASE64`` form :func:`parse_key` reads."""
    return f"{key.id}:{base64.b64encode(key.key).decode()}"


def new_key(key_id: str | None = None) -> str:
    """A fresh key in ``ID:BASE64`` form; without an id, ``k-`` and 8 random hex digits."""
    chosen = key_id if key_id is not None else f"k-{secrets.token_hex(4)}"
    return format_key(EncryptionKey(check_key_id(chosen), secrets.token_bytes(KEY_BYTES)))
