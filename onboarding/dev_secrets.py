"""Secrets for the embedded default: taken from the environment when set, otherwise generated
once and kept (mode 0600) under the data directory so a restart reuses them."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

# name in secrets.json -> environment variable that overrides it (None: dev only)
_SECRETS: dict[str, str | None] = {
    "webhookSecret": "SMILE_WEBHOOK_SECRET",
    "adminToken": "ONBOARDING_ADMIN_TOKEN",
    "callbackSecret": "ONBOARDING_CALLBACK_SECRET",
    "standinApiKey": None,
    "standinApiSecret": None,
}


@dataclass(frozen=True)
class DevSecrets:
    webhook_secret: str
    admin_token: str
    callback_secret: str
    standin_api_key: str
    standin_api_secret: str


def load_or_create(data_dir: Path) -> DevSecrets:
    path = data_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    kept = dict(stored)
    values: dict[str, str] = {}
    for name, env in _SECRETS.items():
        from_env = os.environ.get(env, "").strip() if env else ""
        if name not in kept:
            kept[name] = secrets.token_urlsafe(32)
        values[name] = from_env or kept[name]
    if kept != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle, indent=2)
    return DevSecrets(
        webhook_secret=values["webhookSecret"],
        admin_token=values["adminToken"],
        callback_secret=values["callbackSecret"],
        standin_api_key=values["standinApiKey"],
        standin_api_secret=values["standinApiSecret"],
    )
