"""``onboarding dev``'s settings: its secrets read like the API's, or generated and kept."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from onboarding.core.signatures import sign, verify
from onboarding.service.settings import Settings
from onboarding.tooling.dev import DevOptions, dev_settings
from onboarding.tooling.dev_secrets import load_or_create


def _values(secrets: list[SecretStr]) -> list[str]:
    return [secret.get_secret_value() for secret in secrets]


def _dev_options(tmp_path: Path) -> DevOptions:
    return DevOptions(data_dir=tmp_path, host="127.0.0.1", port=8000, temporal_port=7233,
                      ui_port=8233, smile_port=8081)  # fmt: skip


def test_dev_takes_several_webhook_secrets_like_the_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMILE_WEBHOOK_SECRET", "old,new")
    monkeypatch.setenv("ONBOARDING_ADMIN_TOKEN", '["admin, with a comma"]')
    secrets = load_or_create(tmp_path)
    settings = dev_settings(_dev_options(tmp_path), secrets)
    assert _values(settings.webhook_secrets) == _values(Settings().webhook_secrets)
    assert _values(settings.webhook_secrets) == ["old", "new"]
    assert secrets.webhook_secret == "old"  # the first listed signs
    body = b'{"type": "ACCOUNT_CONNECTED"}'
    for secret in ("old", "new"):
        assert verify(body, sign(body, secret), settings.webhook_secrets)
    assert not verify(body, sign(body, "old,new"), settings.webhook_secrets)
    assert _values(settings.admin_tokens) == ["admin, with a comma"]


def test_dev_generates_and_keeps_secrets_when_none_are_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("SMILE_WEBHOOK_SECRET", "ONBOARDING_ADMIN_TOKEN", "ONBOARDING_CALLBACK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    first = load_or_create(tmp_path)
    assert len(first.webhook_secrets) == len(first.admin_tokens) == 1
    assert load_or_create(tmp_path) == first  # a restart reuses them
    settings = dev_settings(_dev_options(tmp_path), first)
    assert _values(settings.webhook_secrets) == [first.webhook_secret]
    assert settings.callback_secret is not None
    assert settings.callback_secret.get_secret_value() == first.callback_secret


def test_dev_links_the_console_to_its_own_temporal_web_ui(tmp_path: Path) -> None:
    secrets = load_or_create(tmp_path)
    options = DevOptions(data_dir=tmp_path, host="127.0.0.1", port=8000, temporal_port=7233,
                         ui_port=18233, smile_port=8081)  # fmt: skip
    assert dev_settings(options, secrets).temporal_ui_url == "http://127.0.0.1:18233"
