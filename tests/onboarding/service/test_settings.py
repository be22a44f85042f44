from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

from onboarding.core.models import NoticeType, Stage
from onboarding.service.settings import Settings, new_notify_secret


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


def _values(secrets: list[SecretStr]) -> list[str]:
    return [s.get_secret_value() for s in secrets]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("only-one", ["only-one"]),
        (" old , new ,", ["old", "new"]),
        ('["the old phrase, with a comma", "new"]', ["the old phrase, with a comma", "new"]),
        ('  ["[starts with a bracket", " kept as written "]', ["[starts with a bracket",
                                                              " kept as written "]),
        ("[]", []),
    ],
)  # fmt: skip
def test_secrets_are_a_comma_list_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("SMILE_WEBHOOK_SECRET", value)
    monkeypatch.setenv("ONBOARDING_ADMIN_TOKEN", value)
    settings = Settings()
    assert _values(settings.webhook_secrets) == expected
    assert _values(settings.admin_tokens) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["secret-one", "secret-two"', "not valid JSON"),
        ('["secret-one", 7]', "list of non-empty strings"),
        ('["secret-one", "  "]', "list of non-empty strings"),
        ('[{"secret": "secret-one"}]', "list of non-empty strings"),
    ],
)
@pytest.mark.parametrize("var", ["SMILE_WEBHOOK_SECRET", "ONBOARDING_ADMIN_TOKEN"])
def test_a_bad_json_list_is_a_clear_error_that_does_not_repeat_the_secret(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=message) as err:
        Settings()
    assert var in str(err.value)
    assert "secret-one" not in str(err.value)


def test_required_data_takes_smiles_datapoint_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONBOARDING_REQUIRED_DATA", "IDENTITIES, Incomes,insights")
    assert Settings().required_data == ["identity", "incomes", "insight"]
    monkeypatch.setenv("ONBOARDING_REQUIRED_DATA", "identities,payslips")
    with pytest.raises(ValidationError, match="unknown data type 'payslips'"):
        Settings()


# --- notices ---------------------------------------------------------------------------------


def notify_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"ONBOARDING_NOTIFY_{name.upper()}", value)


def test_notices_are_off_without_a_url_and_on_with_every_type_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().default_options().notices is None
    secret = new_notify_secret()
    notify_env(monkeypatch, url="https://hooks.example.com/a?token=t0k", secret=secret)
    settings = Settings()
    assert settings.notice_problem() is None
    assert settings.default_options().notices == list(NoticeType)
    assert settings.default_options().notice_hold == 3 * 86400
    notify_env(monkeypatch, types="data_ready, onboarding.failed,data_ready")
    assert Settings().default_options().notices == [NoticeType.DATA_READY, NoticeType.FAILED]


def test_a_url_without_a_secret_is_a_problem_for_the_worker_and_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notify_env(monkeypatch, url="https://hooks.example.com/")
    problem = Settings().notice_problem()
    assert problem is not None and "ONBOARDING_NOTIFY_SECRET is not" in problem


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("url", "ftp://hooks.example.com/?token=t0k", "notify URL number 1 is not an absolute"),
        ("url", "https://ok.example.com/,/relative?token=t0k", "notify URL number 2 is not"),
        ("secret", "s3cr3t-not-whsec", "notify secret number 1 does not start with whsec_"),
        ("secret", "whsec_!!not-base64!!", "notify secret number 1 is not whsec_ followed by"),
        ("secret", "whsec_c2hvcnQ=", "notify secret number 1 is too short"),
        ("types", "data_ready,ready", "unknown notice type 'ready'; choose from: started,"),
    ],
)
def test_bad_notice_settings_say_which_and_never_echo_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    notify_env(monkeypatch, **{name: value})
    with pytest.raises(ValidationError) as raised:
        Settings()
    text = str(raised.value)
    assert message in text
    assert "t0k" not in text and "not-whsec" not in text and "c2hvcnQ" not in text


def test_the_codec_endpoint_admits_no_wildcard_origin() -> None:
    with pytest.raises(ValidationError, match="not \\*"):
        Settings(codec_cors_origins="http://127.0.0.1:8233,*")
    assert Settings(codec_cors_origins="http://127.0.0.1:8233").codec_cors_origins == [
        "http://127.0.0.1:8233"
    ]
