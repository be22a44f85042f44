from datetime import timedelta

import pytest
from pydantic import ValidationError

from onboarding.models import Stage
from onboarding.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.stall_timeouts[Stage.ACCOUNT_CREATED] == timedelta(hours=1)
    assert settings.required_data == ["identity", "employments", "incomes"]
    assert settings.settle_window == timedelta(minutes=10)
    assert settings.expire_after == timedelta(days=7)


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMILE_WEBHOOK_SECRET", "old-secret, new-secret")
    monkeypatch.setenv("ONBOARDING_ADMIN_TOKEN", "t1")
    monkeypatch.setenv("ONBOARDING_PORT", "9000")
    monkeypatch.setenv("ONBOARDING_STALL_TIMEOUTS", "connected=2h,uploads=30m")
    monkeypatch.setenv("ONBOARDING_REQUIRED_DATA", "Identity,incomes")
    monkeypatch.setenv("ONBOARDING_EXPIRE_AFTER", "3d")
    settings = Settings()
    assert [s.get_secret_value() for s in settings.webhook_secrets] == ["old-secret", "new-secret"]
    assert settings.port == 9000
    assert settings.stall_timeouts[Stage.CONNECTED] == timedelta(hours=2)
    assert settings.stall_timeouts[Stage.CREATED] == timedelta(hours=24)  # default kept
    assert settings.required_data == ["identity", "incomes"]
    options = settings.default_options()
    assert options.timeouts.stall[Stage.UPLOADS] == 1800
    assert options.timeouts.expire_after == 3 * 86400


def test_secrets_are_not_printed() -> None:
    settings = Settings(webhook_secrets="very-secret-value", admin_tokens="token-value")
    assert "very-secret-value" not in repr(settings)
    assert "token-value" not in str(settings)


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("ONBOARDING_STALL_TIMEOUTS", "sleeping=1h", "unknown stage 'sleeping'"),
        ("ONBOARDING_STALL_TIMEOUTS", "data_ready=1h", "has no stall timeout"),
        ("ONBOARDING_STALL_TIMEOUTS", "connected=0s", "must be positive"),
        ("ONBOARDING_EXPIRE_AFTER", "soon", "invalid duration"),
    ],
)
def test_bad_values_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
