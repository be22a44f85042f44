"""Secrets for the embedded default: taken from the environment when set, otherwise generated
once and kept (mode 0600) under the data directory so a restart reuses them."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DevSecrets:
    webhook_secret: str
    admin_token: str
    generated: bool


def load_or_create(data_dir: Path) -> DevSecrets:
    path = data_dir / "secrets.json"
    stored: dict[str, str] = {}
    if path.is_file():
        stored = json.loads(path.read_text())
    env_secret = os.environ.get("SMILE_WEBHOOK_SECRET", "").strip()
    env_token = os.environ.get("ONBOARDING_ADMIN_TOKEN", "").strip()
    webhook_secret = env_secret or stored.get("webhookSecret") or secrets.token_urlsafe(32)
    admin_token = env_token or stored.get("adminToken") or secrets.token_urlsafe(32)
    wanted = {
        "webhookSecret": stored.get("webhookSecret") or webhook_secret,
        "adminToken": stored.get("adminToken") or admin_token,
    }
    generated = wanted != stored
    if generated:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(wanted, handle, indent=2)
    return DevSecrets(webhook_secret, admin_token, generated)
