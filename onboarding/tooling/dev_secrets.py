"""Secrets for the embedded default: taken from the environment when set (through the same
settings as ``onboarding api``, so ``SMILE_WEBHOOK_SECRET="old,new"`` or a JSON list gives several
secrets here too), otherwise generated once and kept (mode 0600) under the data directory so a
restart reuses them.

Only ``onboarding dev`` creates or changes the file (:func:`load_or_create`); the other commands
read it (:func:`read_stored`) to find the running dev service's secrets, and never create it."""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onboarding.core.encryption_keys import new_key, parse_key
from onboarding.service.settings import Settings, check_notify_secret, new_notify_secret

SECRETS_FILE = "secrets.json"


def _token() -> str:
    return secrets.token_urlsafe(32)


# names in secrets.json, and how each is generated
_GENERATED: dict[str, Callable[[], str]] = {
    "webhookSecret": _token,
    "adminToken": _token,
    "callbackSecret": _token,
    "standinApiKey": _token,
    "standinApiSecret": _token,
    "notifySecret": new_notify_secret,  # a Standard Webhooks whsec_… secret
    "encryptionKey": lambda: new_key(f"dev-{secrets.token_hex(4)}"),  # ID:BASE64, AES-256
}

# The environment variable that overrides each kept secret (the stand-in's have none).
OVERRIDDEN_BY: dict[str, str] = {
    "webhookSecret": "SMILE_WEBHOOK_SECRET",
    "adminToken": "ONBOARDING_ADMIN_TOKEN",
    "callbackSecret": "ONBOARDING_CALLBACK_SECRET",
    "notifySecret": "ONBOARDING_NOTIFY_SECRET",
    "encryptionKey": "ONBOARDING_ENCRYPTION_KEYS",
}


class DevSecretsError(RuntimeError):
    """The secrets file cannot be used; the message names the file, never a secret."""


@dataclass(frozen=True)
class DevSecrets:
    webhook_secrets: tuple[str, ...]  # all verify; the first signs (stand-in, simulator)
    admin_tokens: tuple[str, ...]  # all admit; the first is printed and used
    callback_secret: str
    standin_api_key: str
    standin_api_secret: str
    notify_secrets: tuple[str, ...] = ()  # whsec_…: every notice is signed with each
    # ID:BASE64, newest (the one that encrypts) first; never printed, only the newest's id
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    # the names in OVERRIDDEN_BY's values that came from the environment, not the file
    from_environment: frozenset[str] = frozenset()

    @property
    def webhook_secret(self) -> str:
        """The secret the stand-in and the simulator sign with: the first listed."""
        return self.webhook_secrets[0]

    @property
    def admin_token(self) -> str:
        return self.admin_tokens[0]

    @property
    def notify_secret(self) -> str:
        return self.notify_secrets[0]

    @property
    def encryption_key_id(self) -> str:
        """The id of the key new payloads are encrypted with (the id is not secret)."""
        return self.encryption_keys[0].partition(":")[0] if self.encryption_keys else ""


def trusted_file(path: Path) -> bool:
    """Ours to believe, as ssh judges its files: owned by this user and writable by nobody
    else. A planted file beside a dev service could otherwise send the admin token, or the
    commands, somewhere else."""
    try:
        status = path.stat()
    except OSError:
        return False
    return status.st_uid == os.geteuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_stored(data_dir: Path) -> dict[str, str] | None:
    """The kept secrets, or None when there is no usable file. Reads only: never creates it."""
    path = data_dir / SECRETS_FILE
    if path.exists() and not trusted_file(path):
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict):
        return None
    return {k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, str)}


def load_or_create(data_dir: Path, settings: Settings | None = None) -> DevSecrets:
    """``settings`` (default: from the environment) override the generated secrets:
    ``SMILE_WEBHOOK_SECRET``, ``ONBOARDING_ADMIN_TOKEN``, ``ONBOARDING_CALLBACK_SECRET``,
    ``ONBOARDING_NOTIFY_SECRET``, ``ONBOARDING_ENCRYPTION_KEYS``."""
    env = settings if settings is not None else Settings()
    path = data_dir / SECRETS_FILE
    try:
        stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        raise DevSecretsError(f"{path} is not JSON: fix it or remove it") from None
    kept = dict(stored)
    for name, generate in _GENERATED.items():
        if name not in kept:
            kept[name] = generate()
    try:
        check_notify_secret(kept["notifySecret"], 1)
    except ValueError as err:
        raise DevSecretsError(f"notifySecret in {path}: {err}") from None
    try:
        parse_key(kept["encryptionKey"], 1)
    except ValueError as err:
        raise DevSecretsError(f"encryptionKey in {path}: {err}") from None
    if kept != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle, indent=2)
    webhook = tuple(s.get_secret_value() for s in env.webhook_secrets)
    admin = tuple(s.get_secret_value() for s in env.admin_tokens)
    callback = env.callback_secret.get_secret_value() if env.callback_secret else ""
    callback = callback if callback.strip() else ""
    notify = tuple(s.get_secret_value() for s in env.notify_secrets)
    encryption = tuple(s.get_secret_value() for s in env.encryption_keys)
    given = {
        "SMILE_WEBHOOK_SECRET": bool(webhook),
        "ONBOARDING_ADMIN_TOKEN": bool(admin),
        "ONBOARDING_CALLBACK_SECRET": bool(callback),
        "ONBOARDING_NOTIFY_SECRET": bool(notify),
        "ONBOARDING_ENCRYPTION_KEYS": bool(encryption),
    }
    return DevSecrets(
        webhook_secrets=webhook or (kept["webhookSecret"],),
        admin_tokens=admin or (kept["adminToken"],),
        callback_secret=callback or kept["callbackSecret"],
        standin_api_key=kept["standinApiKey"],
        standin_api_secret=kept["standinApiSecret"],
        notify_secrets=notify or (kept["notifySecret"],),
        encryption_keys=encryption or (kept["encryptionKey"],),
        from_environment=frozenset(name for name, set_ in given.items() if set_),
    )
