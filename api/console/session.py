"""The console's session cookie and CSRF tokens: pure functions of a key, the cookie and the time.

The cookie is never the admin token. It is ``s1.<issued>.<nonce>.<mac>``: when it was issued
(Unix seconds), 16 random bytes naming the session, and an HMAC-SHA256 over both under a key
derived from the **first** admin token. Every API replica derives the same key, so any replica
accepts a session another issued; putting a new token first (rotation) changes the key and
signs every session out. A session is valid from its issue until ``ONBOARDING_CONSOLE_SESSION_TTL``
later, measured with the TTL in force now (shortening it shortens live sessions too).

The CSRF token of a session is an HMAC of its nonce under the same key (with its own label), so
it is bound to that session, needs no storage, and is worthless without the cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr

VERSION = "s1"
COOKIE_NAME = "onboarding_console"
# A session issued this far in the future still counts (replicas' clocks differ a little).
CLOCK_SKEW = 60
_KEY_LABEL = b"smile-onboarding/console/session-key/v1"
_MAC_LABEL = b"session.v1|"
_CSRF_LABEL = b"csrf.v1|"
_NONCE_BYTES = 16
_MAX_COOKIE = 256


@dataclass(frozen=True)
class Session:
    nonce: str  # names the session (logged in part); proves nothing without the MAC
    issued_at: int  # Unix seconds

    def expires_at(self, ttl: timedelta) -> int:
        return self.issued_at + int(ttl.total_seconds())


def session_key(admin_tokens: Sequence[SecretStr]) -> bytes | None:
    """The signing key, from the first admin token; None (nobody gets in) without tokens."""
    if not admin_tokens:
        return None
    first = admin_tokens[0].get_secret_value().encode()
    return hmac.new(first, _KEY_LABEL, hashlib.sha256).digest()


def token_matches(admin_tokens: Sequence[SecretStr], presented: str) -> bool:
    """Whether ``presented`` is one of the admin tokens; compares with every one, in constant
    time each, so neither the match nor its position shows in the timing."""
    given = presented.encode()
    matched = False
    for token in admin_tokens:
        matched = hmac.compare_digest(token.get_secret_value().encode(), given) or matched
    return matched


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(key: bytes, label: bytes, message: str) -> str:
    return _b64(hmac.new(key, label + message.encode(), hashlib.sha256).digest())


def issue(key: bytes, now: datetime) -> tuple[str, Session]:
    """A new session: the cookie's value and what it stands for."""
    session = Session(nonce=_b64(secrets.token_bytes(_NONCE_BYTES)),
                      issued_at=int(now.timestamp()))  # fmt: skip
    body = f"{VERSION}.{session.issued_at}.{session.nonce}"
    return f"{body}.{_mac(key, _MAC_LABEL, body)}", session


def verify(key: bytes | None, cookie: str | None, now: datetime, ttl: timedelta) -> Session | None:
    """The session the cookie stands for, or None if it is missing, malformed, signed under
    another key (tampered with, or from before a rotation), or expired."""
    if key is None or not cookie or len(cookie) > _MAX_COOKIE:
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[1].isascii():
        return None
    version, issued, nonce, mac = parts
    if not hmac.compare_digest(_mac(key, _MAC_LABEL, f"{version}.{issued}.{nonce}"), mac):
        return None
    if not issued.isdigit():
        return None
    session = Session(nonce=nonce, issued_at=int(issued))
    moment = now.timestamp()
    if session.issued_at > moment + CLOCK_SKEW or moment >= session.expires_at(ttl):
        return None
    return session


def csrf_token(key: bytes, session: Session) -> str:
    """The token every POST of this session carries (hidden field or ``X-CSRF-Token``)."""
    return _mac(key, _CSRF_LABEL, session.nonce)


def csrf_ok(key: bytes, session: Session, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(key, session).encode(), presented.encode())
