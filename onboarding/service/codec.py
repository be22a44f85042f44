"""The payload codec that keeps personal data encrypted in Temporal (AES-256-GCM), after
temporalio/samples-python's ``encryption`` sample, with several keys for rotation.

Every payload the SDK hands the codec (workflow and activity inputs and results, signals,
updates, queries and their results, memos, failure details, and, with the failure converter
:func:`onboarding.service.temporal.data_converter` sets, failure messages and stack traces) is
serialized whole (metadata and data) and encrypted under the newest key into a new payload:

    metadata  encoding: binary/encrypted,  encryption-key-id: <the key's id>
    data      12-byte random nonce || AES-GCM ciphertext and tag

the sample's layout, so its codec servers in other languages read ours. Decoding picks the key by
the id in the metadata; a payload without ``encoding: binary/encrypted`` (written before
encryption was turned on, or while it was off) passes through unchanged, so running onboardings
keep working. An unknown key id, or a payload that does not decrypt under its key, is an error
that names the key id, never a key. See docs/encryption.md."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from onboarding.core.encryption_keys import EncryptionKey, parse_keys

if TYPE_CHECKING:
    from onboarding.service.settings import Settings

ENCODING_KEY = "encoding"
ENCRYPTED = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16  # AES-GCM's authentication tag, at the end of the ciphertext


class EncryptionError(ValueError):
    """A payload that cannot be decrypted here; the message names the key id, never a key."""


class UnknownEncryptionKey(EncryptionError):
    pass


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first of ``keys`` (when ``encrypt``), decrypts with whichever key a
    payload names. ``encrypt=False`` (``ONBOARDING_ENCRYPTION=off`` with keys still set) writes
    payloads as they are and still reads the encrypted ones."""

    def __init__(self, keys: Sequence[EncryptionKey], *, encrypt: bool = True) -> None:
        super().__init__()
        if encrypt and not keys:
            raise ValueError("encrypting needs at least one key")
        self._ciphers = {key.id: AESGCM(key.key) for key in keys}
        self.key_ids: tuple[str, ...] = tuple(key.id for key in keys)
        self.encrypts = encrypt
        self._newest_id = keys[0].id.encode() if keys else b""
        self._newest = self._ciphers[keys[0].id] if keys else None

    def __repr__(self) -> str:
        return f"EncryptionCodec(key_ids={self.key_ids!r}, encrypts={self.encrypts})"

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)

    def encode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        if self._newest is None or not self.encrypts:
            return list(payloads)
        cipher, key_id = self._newest, self._newest_id
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            encoded.append(
                Payload(
                    metadata={ENCODING_KEY: ENCRYPTED, KEY_ID: key_id},
                    data=nonce + cipher.encrypt(nonce, payload.SerializeToString(), None),
                )
            )
        return encoded

    def decode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get(ENCODING_KEY) != ENCRYPTED:
                decoded.append(payload)  # from before encryption, or written while it was off
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                known = ", ".join(self.key_ids) or "none"
                raise UnknownEncryptionKey(
                    f"a payload is encrypted with key id {key_id!r}, which is not among "
                    f"ONBOARDING_ENCRYPTION_KEYS (ids known here: {known}); add that key back "
                    "(after the newest) to read it"
                )
            data = payload.data
            try:
                if len(data) < NONCE_BYTES + TAG_BYTES:
                    raise InvalidTag()  # too short to hold a nonce and a tag: damaged
                plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
                decoded.append(Payload.FromString(plain))
            except (InvalidTag, DecodeError):
                raise EncryptionError(
                    f"a payload encrypted with key id {key_id!r} does not decrypt with the key "
                    "of that id given here: a different key under the same id, or a damaged "
                    "payload"
                ) from None
        return decoded


def codec_from_keys(keys: Sequence[SecretStr | str], *, encrypt: bool = True) -> EncryptionCodec:
    """A codec from ``ID:BASE64`` keys, newest first (raises ``ValueError`` naming a position)."""
    texts = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
    return EncryptionCodec(parse_keys(texts), encrypt=encrypt)


def codec_for(keys: Sequence[SecretStr], encryption: bool) -> EncryptionCodec | None:
    """The codec for ``ONBOARDING_ENCRYPTION_KEYS``/``ONBOARDING_ENCRYPTION`` (``Settings``'
    ``encryption_keys``/``encryption``): encrypting with the newest key; with encryption off,
    decrypting only (what was written before it was turned off); no keys and encryption off,
    None (plain). No keys with encryption on (a command run without them): a codec that writes
    plain payloads and, meeting an encrypted one, says which key it needs instead of failing
    on an unknown encoding."""
    if not keys:
        return None if not encryption else EncryptionCodec([], encrypt=False)
    return codec_from_keys(keys, encrypt=encryption)


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """:func:`codec_for` the settings' keys and switch."""
    return codec_for(settings.encryption_keys, settings.encryption)
