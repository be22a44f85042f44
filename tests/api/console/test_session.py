"""The console's session cookie and CSRF tokens, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from api.console import session as sessions

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=8)
TOKENS = [SecretStr("first-admin-token"), SecretStr("second-admin-token")]
KEY = sessions.session_key(TOKENS)
assert KEY is not None


def test_a_session_verifies_until_it_expires() -> None:
    cookie, session = sessions.issue(KEY, NOW)
    assert sessions.verify(KEY, cookie, NOW, TTL) == session
    assert sessions.verify(KEY, cookie, NOW + TTL - timedelta(seconds=1), TTL) == session
    assert sessions.verify(KEY, cookie, NOW + TTL, TTL) is None
    # the TTL in force now counts: shortening it shortens sessions already issued
    assert sessions.verify(KEY, cookie, NOW + timedelta(hours=2), timedelta(hours=1)) is None


def test_the_cookie_is_not_the_admin_token_and_each_session_differs() -> None:
    first, one = sessions.issue(KEY, NOW)
    second, other = sessions.issue(KEY, NOW)
    assert first != second and one.nonce != other.nonce
    for token in TOKENS:
        assert token.get_secret_value() not in first
    assert first.startswith("s1.")


def test_a_tampered_cookie_is_refused() -> None:
    cookie, _ = sessions.issue(KEY, NOW)
    version, issued, nonce, mac = cookie.split(".")
    later = str(int(issued) + 86400)  # pushing the issue time forward to live longer

    def flip(text: str) -> str:  # another last character, whatever it was
        return text[:-1] + ("B" if text[-1] == "A" else "A")

    forged = [
        f"{version}.{later}.{nonce}.{mac}",
        f"{version}.{issued}.{flip(nonce)}.{mac}",
        f"{version}.{issued}.{nonce}.{flip(mac)}",
        f"s2.{issued}.{nonce}.{mac}",
        f"{version}.{issued}.{nonce}",
        cookie + ".x",
        "",
        "s1." + "9" * 300,
        "first-admin-token",
    ]
    for value in forged:
        assert sessions.verify(KEY, value, NOW, TTL) is None, value
    assert sessions.verify(KEY, None, NOW, TTL) is None


def test_a_session_from_the_future_is_refused_beyond_clock_skew() -> None:
    cookie, _ = sessions.issue(KEY, NOW + timedelta(seconds=sessions.CLOCK_SKEW + 5))
    assert sessions.verify(KEY, cookie, NOW, TTL) is None
    cookie, _ = sessions.issue(KEY, NOW + timedelta(seconds=sessions.CLOCK_SKEW - 5))
    assert sessions.verify(KEY, cookie, NOW, TTL) is not None


def test_the_key_comes_from_the_first_token_so_rotation_signs_everyone_out() -> None:
    # Every replica with the same tokens derives the same key: any of them accepts the cookie.
    assert sessions.session_key([SecretStr("first-admin-token")]) == KEY
    cookie, _ = sessions.issue(KEY, NOW)
    rotated = sessions.session_key([SecretStr("new-token"), *TOKENS])
    assert rotated is not None and rotated != KEY
    assert sessions.verify(rotated, cookie, NOW, TTL) is None
    # the second token's position does not matter; no tokens: nobody
    assert sessions.session_key([TOKENS[0], SecretStr("other")]) == KEY
    assert sessions.session_key([]) is None
    assert sessions.verify(None, cookie, NOW, TTL) is None


def test_any_admin_token_signs_in() -> None:
    assert sessions.token_matches(TOKENS, "first-admin-token")
    assert sessions.token_matches(TOKENS, "second-admin-token")
    assert not sessions.token_matches(TOKENS, "second-admin-toke")
    assert not sessions.token_matches(TOKENS, "")
    assert not sessions.token_matches([], "first-admin-token")


def test_the_csrf_token_is_bound_to_its_session() -> None:
    _, one = sessions.issue(KEY, NOW)
    _, other = sessions.issue(KEY, NOW)
    token = sessions.csrf_token(KEY, one)
    assert sessions.csrf_ok(KEY, one, token)
    assert not sessions.csrf_ok(KEY, other, token)  # another session's token
    assert not sessions.csrf_ok(KEY, one, None)
    assert not sessions.csrf_ok(KEY, one, "")
    assert not sessions.csrf_ok(KEY, one, token[:-1])
    assert not sessions.csrf_ok(KEY, one, "é" + token)
    rotated = sessions.session_key([SecretStr("new-token")])
    assert rotated is not None and not sessions.csrf_ok(rotated, one, token)
    # it is not the session's MAC either: a cookie's parts do not make a CSRF token
    cookie, session = sessions.issue(KEY, NOW)
    assert not sessions.csrf_ok(KEY, session, cookie.split(".")[-1])
