"""Smile's webhook signature: ``Smile-Signature`` is the lowercase hex HMAC-SHA512 of the exact
raw request body, keyed with the secret registered for the webhook."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from pydantic import SecretStr

SIGNATURE_HEADER = "Smile-Signature"
# Exactly what Smile sends: 128 lowercase hex digits. Uppercase is refused, not normalised:
# the documented format is lowercase and nothing legitimate sends anything else.
_SIGNATURE = re.compile(r"[0-9a-f]{128}")


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


def verify(body: bytes, signature: str | None, secrets: Iterable[SecretStr]) -> bool:
    """True if ``signature`` is the body's signature under any of ``secrets``. Every secret is
    checked with a constant-time compare, so timing says nothing about which one matched."""
    if signature is None or not _SIGNATURE.fullmatch(signature):
        return False
    matched = False
    for secret in secrets:
        expected = sign(body, secret.get_secret_value())
        matched = hmac.compare_digest(expected, signature) or matched
    return matched
