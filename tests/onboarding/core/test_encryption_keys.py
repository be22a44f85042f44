"""ONBOARDING_ENCRYPTION_KEYS' format: ID:BASE64 of 32 bytes, newest first; errors name the
position, never the value."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core.encryption_keys import (
    KEY_BYTES,
    EncryptionKey,
    format_key,
    new_key,
    parse_key,
    parse_keys,
)

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
material = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)


@given(ids, material)
def test_format_and_parse_round_trip(key_id: str, key: bytes) -> None:
    assert parse_key(format_key(EncryptionKey(key_id, key))) == EncryptionKey(key_id, key)


@given(ids, material)
def test_the_url_safe_alphabet_without_padding_reads_the_same(key_id: str, key: bytes) -> None:
    text = base64.urlsafe_b64encode(key).decode().rstrip("=")
    assert parse_key(f"{key_id}:{text}").key == key


@given(st.lists(st.tuples(ids, material), min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_several_keys_keep_their_order(keys: list[tuple[str, bytes]]) -> None:
    parsed = parse_keys([format_key(EncryptionKey(i, k)) for i, k in keys])
    assert [(k.id, k.key) for k in parsed] == keys


@given(ids, st.binary(max_size=64).filter(lambda b: len(b) != KEY_BYTES))
def test_a_key_of_the_wrong_length_is_refused_by_position(key_id: str, key: bytes) -> None:
    good = new_key("good")
    bad = f"{key_id}:{base64.b64encode(key).decode()}"
    with pytest.raises(ValueError, match="encryption key number 2 is") as refused:
        parse_keys([good, bad])
    assert good.split(":")[1] not in str(refused.value)
    if key:
        assert base64.b64encode(key).decode() not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("no-colon-here", "no ':'"),
        (":" + base64.b64encode(b"k" * 32).decode(), "invalid id"),
        ("bad id:" + base64.b64encode(b"k" * 32).decode(), "invalid id"),
        ("k1:not base64!!", "not base64"),
    ],
)
def test_malformed_keys_say_what_is_wrong_without_the_value(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_keys([new_key("first"), text])
    assert "number 2" in str(refused.value)
    assert text.partition(":")[2] not in str(refused.value) or not text.partition(":")[2]


def test_two_keys_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="number 2 has the same id as number 1"):
        parse_keys([new_key("same"), new_key("same")])


def test_a_key_never_shows_in_its_repr() -> None:
    key = parse_key(new_key("shown"))
    assert "shown" in repr(key) and base64.b64encode(key.key).decode() not in repr(key)
    assert str(key.key) not in repr(key)


def test_new_keys_are_fresh_and_readable() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert len(parse_key(first).key) == KEY_BYTES
    assert parse_key(first).id.startswith("k-")
