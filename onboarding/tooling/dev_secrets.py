"""Secrets for the embedded default: taken from the environment when set (through the same
settings as ``onboarding api``, so ``SMILE_WEBHOOK_SECRET="old,new"`` or a JSON list gives several
secrets here too), otherwise generated once and kept (mode 0600) under the data directory so a
restart reuses them."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from onboarding.service.settings import Settings

# names in secrets.json
_GENERATED = ("webhookSecret", "adminToken", "callbackSecret", "standinApiKey", "standinApiSecret")


@dataclass(frozen=True)
class DevSecrets:
    webhook_secrets: tuple[str, ...]  # all verify; the first signs (stand-in, simulator)
    admin_tokens: tuple[str, ...]  # all admit; the first is printed and used
    callback_secret: str
    standin_api_key: str
    standin_api_secret: str

    @property
    def webhook_secret(self) -> str:
        """The secret the stand-in and the simulator sign with: the first listed."""
        return self.webhook_secrets[0]

    @property
    def admin_token(self) -> str:
        return self.admin_tokens[0]


def load_or_create(data_dir: Path, settings: Settings | None = None) -> DevSecrets:
    """``settings`` (default: from the environment) override the generated secrets:
    ``SMILE_WEBHOOK_SECRET``, ``ONBOARDING_ADMIN_TOKEN``, ``ONBOARDING_CALLBACK_SECRET``."""
    env = settings if settings is not None else Settings()
    path = data_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    kept = dict(stored)
    for name in _GENERATED:
        if name not in kept:
            kept[name] = secrets.token_urlsafe(32)
    if kept != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle, indent=2)
    webhook = tuple(s.get_secret_value() for s in env.webhook_secrets)
    admin = tuple(s.get_secret_value() for s in env.admin_tokens)
    callback = env.callback_secret.get_secret_value() if env.callback_secret else ""
    return DevSecrets(
        webhook_secrets=webhook or (kept["webhookSecret"],),
        admin_tokens=admin or (kept["adminToken"],),
        callback_secret=callback if callback.strip() else kept["callbackSecret"],
        standin_api_key=kept["standinApiKey"],
        standin_api_secret=kept["standinApiSecret"],
    )
