"""Per-onboarding callback tokens for the customer's front end.

``cbt1.<payload>.<mac>``: the payload is the user id and an expiry, the mac an HMAC-SHA256 under
``ONBOARDING_CALLBACK_SECRET``. Checked without a database: bound to one user, expiring, and
unforgeable without the secret.

Rotation: several secrets, newest first. A token is issued with the newest and verifies under
any of them (each compared in constant time, all of them every time), so tokens issued before a
new secret was put first keep working until the old one is removed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import SecretStr

PREFIX = "cbt1"


class CallbackTokenError(Exception):
    pass


class InvalidCallbackToken(CallbackTokenError):
    pass


class ExpiredCallbackToken(CallbackTokenError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: SecretStr, signed: str) -> str:
    key = secret.get_secret_value().encode()
    return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


Secrets = SecretStr | Sequence[SecretStr]


def _all(secrets: Secrets) -> Sequence[SecretStr]:
    listed = [secrets] if isinstance(secrets, SecretStr) else list(secrets)
    if not listed:
        raise ValueError("no callback secret")
    return listed


def issue(user_id: str, secrets: Secrets, ttl: timedelta, now: datetime) -> tuple[str, datetime]:
    """A token for ``user_id`` under the newest (first) of ``secrets``, and its expiry."""
    secret = _all(secrets)[0]
    expires = now + ttl
    payload = _b64(json.dumps({"u": user_id, "e": int(expires.timestamp())}).encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_mac(secret, signed)}", expires


def verify(token: str, secrets: Secrets, now: datetime) -> str:
    """The user id the token was issued for, under any of ``secrets``; raises if forged,
    malformed or expired."""
    candidates = _all(secrets)
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidCallbackToken("malformed callback token")
    signed = f"{parts[0]}.{parts[1]}"
    presented = parts[2].encode()
    matched = False
    for secret in candidates:  # every one, whatever matched: no timing tells which
        matched = hmac.compare_digest(_mac(secret, signed).encode(), presented) or matched
    if not matched:
        raise InvalidCallbackToken("invalid callback token")
    try:
        claims = json.loads(_unb64(parts[1]))
        user_id, expires = str(claims["u"]), int(claims["e"])
    except (ValueError, KeyError, TypeError):
        raise InvalidCallbackToken("malformed callback token") from None
    if now.timestamp() >= expires:
        raise ExpiredCallbackToken("callback token has expired")
    return user_id
