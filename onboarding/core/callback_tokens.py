"""Per-onboarding callback tokens for the customer's front end.

``cbt1.<payload>.<mac>``: the payload is the user id and an expiry, the mac an HMAC-SHA256 under
``ONBOARDING_CALLBACK_SECRET``. Checked without a database: bound to one user, expiring, and
unforgeable without the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
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


def issue(user_id: str, secret: SecretStr, ttl: timedelta, now: datetime) -> tuple[str, datetime]:
    expires = now + ttl
    payload = _b64(json.dumps({"u": user_id, "e": int(expires.timestamp())}).encode())
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_mac(secret, signed)}", expires


def verify(token: str, secret: SecretStr, now: datetime) -> str:
    """The user id the token was issued for; raises if forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidCallbackToken("malformed callback token")
    signed = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_mac(secret, signed).encode(), parts[2].encode()):
        raise InvalidCallbackToken("invalid callback token")
    try:
        claims = json.loads(_unb64(parts[1]))
        user_id, expires = str(claims["u"]), int(claims["e"])
    except (ValueError, KeyError, TypeError):
        raise InvalidCallbackToken("malformed callback token") from None
    if now.timestamp() >= expires:
        raise ExpiredCallbackToken("callback token has expired")
    return user_id
