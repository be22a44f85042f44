"""The encrypting payload codec: AES-256-GCM under the newest key, every older key decrypting
its own, unencrypted payloads passing through; and the settings that turn it on."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError

from onboarding.core.encryption_keys import new_key, parse_key
from onboarding.service.codec import (
    ENCRYPTED,
    KEY_ID,
    EncryptionError,
    UnknownEncryptionKey,
    codec_for,
    codec_from_keys,
)
from onboarding.service.settings import Settings
from onboarding.service.temporal import data_converter

KEY_A, KEY_B = new_key("a"), new_key("b")

payloads = st.builds(
    Payload,
    metadata=st.dictionaries(st.text(max_size=20), st.binary(max_size=40), max_size=4),
    data=st.binary(max_size=2000),
)


@given(st.lists(payloads, max_size=5))
async def test_encode_then_decode_gives_back_every_payload(items: list[Payload]) -> None:
    codec = codec_from_keys([KEY_A])
    encoded = await codec.encode(items)
    assert all(p.metadata == {"encoding": ENCRYPTED, KEY_ID: b"a"} for p in encoded)
    assert await codec.decode(encoded) == items


@given(st.binary(min_size=8, max_size=200))
async def test_the_plain_bytes_are_not_in_the_encrypted_payload(secret: bytes) -> None:
    codec = codec_from_keys([KEY_A])
    (encoded,) = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=secret)])
    assert secret not in encoded.data


async def test_each_encoding_uses_a_fresh_nonce() -> None:
    codec = codec_from_keys([KEY_A])
    item = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec.encode([item, item])
    assert first.data != second.data


async def test_rotation_newest_encrypts_older_decrypt() -> None:
    old = codec_from_keys([KEY_A])
    rotated = codec_from_keys([KEY_B, KEY_A])
    item = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    (under_a,) = await old.encode([item])
    (under_b,) = await rotated.encode([item])
    assert under_b.metadata[KEY_ID] == b"b"
    assert await rotated.decode([under_a, under_b]) == [item, item]
    with pytest.raises(UnknownEncryptionKey, match="key id 'b'") as unknown:
        await old.decode([under_b])
    assert KEY_A.split(":")[1] not in str(unknown.value)


async def test_unencrypted_payloads_pass_through() -> None:
    plain = [Payload(metadata={"encoding": b"json/plain"}, data=b'{"from": "before"}')]
    assert await codec_from_keys([KEY_A]).decode(plain) == plain


async def test_the_wrong_key_under_a_known_id_is_a_clear_error() -> None:
    impostor = new_key("a")  # the same id, another key
    (encoded,) = await codec_from_keys([KEY_A]).encode([Payload(data=b"x")])
    with pytest.raises(EncryptionError, match="does not decrypt"):
        await codec_from_keys([impostor]).decode([encoded])


@pytest.mark.parametrize("damage", [lambda d: d[:5], lambda d: d[:20], lambda d: d[:-1] + b"!"])
async def test_a_damaged_payload_is_a_clear_error_not_a_crash(damage: object) -> None:
    (encoded,) = await codec_from_keys([KEY_A]).encode([Payload(data=b"some data")])
    broken = Payload(metadata=dict(encoded.metadata), data=damage(encoded.data))  # type: ignore[operator]
    with pytest.raises(EncryptionError, match="does not decrypt"):
        await codec_from_keys([KEY_A]).decode([broken])


async def test_encryption_off_writes_plain_and_still_reads_encrypted() -> None:
    item = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    (encrypted,) = await codec_from_keys([KEY_A]).encode([item])
    off = codec_from_keys([KEY_A], encrypt=False)
    assert await off.encode([item]) == [item]
    assert await off.decode([encrypted]) == [item]
    # and the converter then leaves failure messages alone
    assert data_converter(off).failure_converter_class is not (
        DefaultFailureConverterWithEncodedAttributes
    )


async def test_no_keys_the_plain_converter_or_a_codec_that_names_the_key() -> None:
    assert codec_for([], False) is None
    assert data_converter(None) is pydantic_data_converter
    # encryption on but no key here (an operator command): plain writes, a clear error on reading
    keyless = codec_for([], True)
    assert keyless is not None and not keyless.encrypts
    (sealed,) = await codec_from_keys([KEY_A]).encode([Payload(data=b"x")])
    with pytest.raises(UnknownEncryptionKey, match=r"key id 'a'.*ids known here: none"):
        await keyless.decode([sealed])


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = data_converter(codec_from_keys([KEY_A]))
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    failure = Failure()
    error = ApplicationError("Smile said: the password of jane@example.com expired")
    await converter.encode_failure(error, failure)
    raw = failure.SerializeToString()
    assert b"jane@example.com" not in raw and failure.message == "Encoded failure"
    assert not failure.stack_trace
    back = await converter.decode_failure(failure)
    assert "jane@example.com" in str(back)


async def test_a_whole_value_round_trips_through_the_converter() -> None:
    converter = data_converter(codec_from_keys([KEY_B, KEY_A]))
    value = {"externalMetadata": {"applicant": "jane"}, "n": 3}
    encoded = await converter.encode([value])
    assert b"jane" not in encoded[0].SerializeToString()
    assert await converter.decode(encoded, [dict]) == [value]


def test_the_codec_and_settings_never_show_a_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    codec = codec_from_keys([KEY_B, KEY_A])
    settings = Settings(encryption_keys=[KEY_B, KEY_A])
    for key in (KEY_A, KEY_B):
        material = key.split(":")[1]
        assert material not in repr(codec) and material not in repr(settings)
        assert material not in str(parse_key(key))
    assert "'b', 'a'" in repr(codec)


# --- the settings: on by default, refused without a key at worker/api start ---------------


def test_encryption_is_on_by_default_and_needs_a_key() -> None:
    settings = Settings()
    assert settings.encryption and settings.encryption_keys == []
    problem = settings.encryption_problem()
    assert problem is not None
    assert "ONBOARDING_ENCRYPTION_KEYS" in problem and "ONBOARDING_ENCRYPTION=off" in problem


@pytest.mark.parametrize("value", ["off", "false", "0", "OFF"])
def test_turned_off_explicitly_there_is_no_problem(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ONBOARDING_ENCRYPTION", value)
    assert Settings().encryption_problem() is None
    assert codec_for(Settings().encryption_keys, Settings().encryption) is None


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONBOARDING_ENCRYPTION_KEYS", f"{KEY_B}, {KEY_A}")
    settings = Settings()
    assert settings.encryption_problem() is None
    codec = codec_for(settings.encryption_keys, settings.encryption)
    assert codec is not None and codec.key_ids == ("b", "a") and codec.encrypts
    monkeypatch.setenv("ONBOARDING_ENCRYPTION_KEYS", f'["{KEY_B}", "{KEY_A}"]')
    assert [k.get_secret_value() for k in Settings().encryption_keys] == [KEY_B, KEY_A]


def test_a_bad_key_is_refused_naming_its_position_not_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = "c:" + "QUFB" * 3
    monkeypatch.setenv("ONBOARDING_ENCRYPTION_KEYS", f"{KEY_A},{bad}")
    with pytest.raises(ValueError, match="encryption key number 2") as refused:
        Settings()
    assert "QUFB" not in str(refused.value) and KEY_A.split(":")[1] not in str(refused.value)


def test_keys_given_in_code() -> None:
    settings = Settings(encryption_keys=[SecretStr(KEY_A)])
    assert settings.encryption_keys[0].get_secret_value() == KEY_A
