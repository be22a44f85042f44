"""Callback-token secrets rotate like the others: issued with the newest, verified under any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from onboarding.core import callback_tokens
from onboarding.service.settings import Settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
secret_texts = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
    min_size=1,
    max_size=40,
)
users = st.from_regex(r"[A-Za-z0-9-]{1,40}", fullmatch=True)


@given(users, st.lists(secret_texts, min_size=1, max_size=4, unique=True), st.data())
def test_issued_with_the_newest_verifies_under_any_list_holding_it(
    user: str, texts: list[str], data: st.DataObject
) -> None:
    secrets = [SecretStr(t) for t in texts]
    token, _ = callback_tokens.issue(user, secrets, timedelta(hours=1), NOW)
    # the same token as the single-secret form gives with the newest alone
    assert token == callback_tokens.issue(user, secrets[0], timedelta(hours=1), NOW)[0]
    older = data.draw(st.lists(secret_texts.filter(lambda t: t not in texts), max_size=3))
    later = [SecretStr(t) for t in older]
    position = data.draw(st.integers(0, len(later)))
    rotated = [*later[:position], secrets[0], *later[position:]]
    assert callback_tokens.verify(token, rotated, NOW) == user
    assert callback_tokens.verify(token, secrets[0], NOW) == user


@given(users, st.lists(secret_texts, min_size=2, max_size=4, unique=True))
def test_without_the_secret_it_was_issued_with_it_is_refused(user: str, texts: list[str]) -> None:
    secrets = [SecretStr(t) for t in texts]
    token, _ = callback_tokens.issue(user, secrets, timedelta(hours=1), NOW)
    with pytest.raises(callback_tokens.InvalidCallbackToken):
        callback_tokens.verify(token, secrets[1:], NOW)


def test_an_expired_token_stays_expired_under_every_secret() -> None:
    secrets = [SecretStr("new"), SecretStr("old")]
    token, _ = callback_tokens.issue("u-1", secrets[1], timedelta(minutes=1), NOW)
    with pytest.raises(callback_tokens.ExpiredCallbackToken):
        callback_tokens.verify(token, secrets, NOW + timedelta(minutes=2))


def test_no_secret_at_all_is_refused() -> None:
    with pytest.raises(ValueError):
        callback_tokens.issue("u-1", [], timedelta(minutes=1), NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("only", ["only"]),
        ("new,old", ["new", "old"]),
        ('["new, with a comma", "old"]', ["new, with a comma", "old"]),
    ],
)
def test_the_setting_takes_one_or_several_newest_first(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("ONBOARDING_CALLBACK_SECRET", value)
    settings = Settings()
    assert [s.get_secret_value() for s in settings.callback_secrets] == expected
    assert value not in repr(settings)


def test_several_given_in_code_and_none() -> None:
    settings = Settings(callback_secret=[SecretStr("b"), "a"])
    assert [s.get_secret_value() for s in settings.callback_secrets] == ["b", "a"]
    assert Settings(callback_secret=None).callback_secrets == []


def test_a_broken_json_list_is_refused_without_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONBOARDING_CALLBACK_SECRET", '["hunter2", ')
    with pytest.raises(ValueError) as refused:
        Settings()
    assert "hunter2" not in str(refused.value)
