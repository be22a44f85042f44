"""Finding the running ``onboarding dev`` from another shell: ``dev.json`` written and read, a
stale one ignored, the kept secrets filled in only where the user set nothing, and no command
but ``dev`` ever creating the secrets file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from onboarding.cli import main as cli
from onboarding.service.settings import Settings, check_notify_secret
from onboarding.tooling.dev import DevOptions, dev_settings
from onboarding.tooling.dev_secrets import load_or_create
from onboarding.tooling.discovery import (
    DEV_FILE,
    DevRun,
    find_dev,
    process_start,
    reachable_url,
    remove_dev_file,
    settings_with_dev,
    write_dev_file,
)

STORED = {
    "webhookSecret": "kept-webhook-secret",
    "adminToken": "kept-admin-token",
    "callbackSecret": "kept-callback-secret",
    "standinApiKey": "kept-key",
    "standinApiSecret": "kept-standin-secret",
    "notifySecret": "whsec_" + "QUJD" * 11,  # 33 bytes
}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shell in a fresh directory: nothing exported, no temporal.toml profile. Returns the
    default data directory (``./.onboarding``)."""
    for name in list(os.environ):
        if name.startswith(("SMILE_", "ONBOARDING_", "TEMPORAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-such-temporal.toml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    return tmp_path / ".onboarding"


def dev_run(data_dir: Path, **changes: object) -> DevRun:
    pid = os.getpid()  # this test process stands in for a running dev
    run = DevRun(
        pid=pid,
        pid_start=process_start(pid),
        api_url="http://127.0.0.1:18000",
        temporal_address="127.0.0.1:17233",
        temporal_namespace="default",
        temporal_ui_url="http://127.0.0.1:18233",
        started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        task_queue="dev-queue",
        smile_standin_url="http://127.0.0.1:18234",
        notice_endpoints=1,
        default_options=Settings(ONBOARDING_NOTIFY_URL="http://127.0.0.1:8010/").default_options(),
        data_dir=data_dir.resolve(),
    )
    return replace(run, **changes)  # type: ignore[arg-type]


def running_dev(data_dir: Path, **changes: object) -> DevRun:
    """dev.json and secrets.json as a running dev leaves them."""
    run = dev_run(data_dir, **changes)
    write_dev_file(data_dir, run)
    (data_dir / "secrets.json").write_text(json.dumps(STORED))
    return run


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


# --- dev.json ------------------------------------------------------------------------------


def test_dev_json_is_written_private_read_back_and_removed_by_its_owner(here: Path) -> None:
    run = dev_run(here)
    path = write_dev_file(here, run)
    assert path == here / DEV_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    found = find_dev(here)
    assert found == run
    assert found is not None and found.default_options is not None
    assert found.default_options.notices is not None  # dev's notices, for `onboarding start`
    remove_dev_file(here, os.getpid() + 1)  # another dev's: left alone
    assert path.exists()
    remove_dev_file(here, os.getpid())
    assert not path.exists()
    assert find_dev(here) is None
    assert [p.name for p in here.iterdir()] == []  # no temporary file left behind


def test_a_file_left_by_a_dev_that_is_gone_is_ignored(here: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_dev_file(here, dev_run(here, pid=int(gone.stdout), pid_start=None))
    assert find_dev(here) is None
    # a pid taken over by another process since: its start time differs
    start = process_start(os.getpid())
    assert start is not None  # Linux: /proc gives every process's start time
    write_dev_file(here, dev_run(here, pid_start=start + 1))
    assert find_dev(here) is None


@pytest.mark.parametrize("text", ["not json", "[]", '{"pid": "1"}', '{"pid": 1}'])
def test_a_file_that_is_not_devs_is_ignored(here: Path, text: str) -> None:
    here.mkdir()
    (here / DEV_FILE).write_text(text)
    assert find_dev(here) is None


# --- settings for a command in another shell ----------------------------------------------


def test_a_command_with_nothing_set_finds_the_running_dev(here: Path) -> None:
    running_dev(here)
    target = settings_with_dev(Settings())
    assert (target.temporal_address, target.temporal_namespace) == ("127.0.0.1:17233", "default")
    assert target.api_url == "http://127.0.0.1:18000"
    assert target.standin_url == "http://127.0.0.1:18234"
    assert target.default_options is not None and target.default_options.notices
    settings = target.settings
    assert settings.task_queue == "dev-queue"
    assert [s.get_secret_value() for s in settings.webhook_secrets] == ["kept-webhook-secret"]
    assert [s.get_secret_value() for s in settings.admin_tokens] == ["kept-admin-token"]
    assert secret(settings.callback_secret) == "kept-callback-secret"
    assert [s.get_secret_value() for s in settings.notify_secrets] == [STORED["notifySecret"]]
    assert target.secrets_file == (here / "secrets.json").resolve()


def test_explicit_settings_win_over_the_running_dev(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_dev(here)
    monkeypatch.setenv("ONBOARDING_CALLBACK_SECRET", "mine")
    monkeypatch.setenv("ONBOARDING_TASK_QUEUE", "my-queue")
    monkeypatch.setenv("ONBOARDING_PORT", "9000")
    monkeypatch.setenv("ONBOARDING_STALL_TIMEOUTS", "connected=1h")
    monkeypatch.setenv("ONBOARDING_ADMIN_TOKEN", "")  # empty: unset, as for dev itself
    settings = Settings()
    assert {"callback_secret", "task_queue", "port"} <= settings.model_fields_set
    target = settings_with_dev(settings)
    assert secret(target.settings.callback_secret) == "mine"
    assert target.settings.task_queue == "my-queue"
    assert target.api_url is None  # ONBOARDING_PORT says where the API is
    assert target.default_options is None  # this shell's own options
    assert [s.get_secret_value() for s in target.settings.admin_tokens] == ["kept-admin-token"]
    assert target.temporal_address == "127.0.0.1:17233"  # nothing set for that

    # --temporal-address, TEMPORAL_ADDRESS or a temporal.toml profile: the SDK's, not dev's
    flagged = settings_with_dev(settings, "elsewhere:7233")
    assert (flagged.temporal_address, flagged.temporal_namespace) == ("elsewhere:7233", None)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
    assert settings_with_dev(settings).temporal_address is None
    monkeypatch.delenv("TEMPORAL_ADDRESS")
    profile = here.parent / "temporal.toml"
    profile.write_text('[profile.default]\naddress = "profiled:7233"\nnamespace = "mine"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    assert settings_with_dev(settings).temporal_address is None
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(here / "none.toml"))
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "my-namespace")
    namespaced = settings_with_dev(settings)
    assert namespaced.temporal_address == "127.0.0.1:17233"
    assert namespaced.temporal_namespace is None  # the environment's namespace stays


def test_a_secret_dev_took_from_its_environment_is_not_offered(here: Path) -> None:
    running_dev(here, secrets_from_environment=frozenset({"ONBOARDING_CALLBACK_SECRET"}))
    settings = settings_with_dev(Settings()).settings
    assert settings.callback_secret is None  # the kept one is not the one dev uses
    assert [s.get_secret_value() for s in settings.admin_tokens] == ["kept-admin-token"]


def test_without_a_running_dev_nothing_is_taken_unless_asked(here: Path) -> None:
    here.mkdir()
    (here / "secrets.json").write_text(json.dumps(STORED))
    target = settings_with_dev(Settings())
    assert target.dev is None and target.temporal_address is None
    assert target.settings.callback_secret is None and not target.settings.notify_secrets
    stopped = settings_with_dev(Settings(), stored_secrets_without_dev=True)
    assert [s.get_secret_value() for s in stopped.settings.notify_secrets] == [
        STORED["notifySecret"]
    ]


def test_reachable_url() -> None:
    assert reachable_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert reachable_url("::", 8010, "/") == "http://[::1]:8010/"
    assert reachable_url("10.0.0.2", 8000) == "http://10.0.0.2:8000"


# --- the commands never create the secrets file -------------------------------------------


def test_commands_never_create_the_secrets_file(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["listen", "--port", "0"]) == 1
    assert "onboarding dev" in capsys.readouterr().err
    assert cli.main(["simulate", "--users", "1"]) == 1
    assert not here.exists()
    # beside a running dev whose secrets file is gone
    write_dev_file(here, dev_run(here))
    assert cli.main(["simulate", "--users", "1"]) == 1
    assert cli.main(["listen", "--port", "0"]) == 1
    assert "ONBOARDING_ADMIN_TOKEN" in capsys.readouterr().err
    assert sorted(p.name for p in here.iterdir()) == [DEV_FILE]


# --- dev's notify secret, and the start checks ---------------------------------------------


def test_dev_keeps_a_notify_secret_and_the_environment_wins(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DevOptions(data_dir=here, host="127.0.0.1", port=8000, temporal_port=7233,
                         ui_port=8233, smile_port=8234)  # fmt: skip
    first = load_or_create(here)
    check_notify_secret(first.notify_secret, 1)  # a whsec_ secret of enough bytes
    assert json.loads((here / "secrets.json").read_text())["notifySecret"] == first.notify_secret
    assert load_or_create(here).notify_secrets == first.notify_secrets  # kept
    settings = dev_settings(options, first)
    assert [s.get_secret_value() for s in settings.notify_secrets] == [first.notify_secret]
    assert settings.notify_urls == [] and not settings.notices_on  # no URL: notices off
    assert first.from_environment == frozenset()

    mine = [STORED["notifySecret"], first.notify_secret]
    monkeypatch.setenv("ONBOARDING_NOTIFY_SECRET", ",".join(mine))
    monkeypatch.setenv("ONBOARDING_NOTIFY_URL", "http://127.0.0.1:8010/")
    from_env = load_or_create(here)
    assert list(from_env.notify_secrets) == mine
    assert from_env.from_environment == frozenset({"ONBOARDING_NOTIFY_SECRET"})
    settings = dev_settings(options, from_env)
    assert [s.get_secret_value() for s in settings.notify_secrets] == mine
    assert settings.notices_on


def test_an_older_secrets_file_gains_a_notify_secret(here: Path) -> None:
    here.mkdir()
    older = {k: v for k, v in STORED.items() if k != "notifySecret"}
    (here / "secrets.json").write_text(json.dumps(older))
    secrets = load_or_create(here)
    kept = json.loads((here / "secrets.json").read_text())
    assert {k: kept[k] for k in older} == older  # nothing else changes
    assert kept["notifySecret"] == secrets.notify_secret.strip()


@pytest.mark.parametrize("command", ["worker", "api"])
def test_worker_and_api_refuse_notices_they_could_not_sign(
    here: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    for name, value in {
        "SMILE_WEBHOOK_SECRET": "w",
        "ONBOARDING_ADMIN_TOKEN": "a",
        "ONBOARDING_CALLBACK_SECRET": "c",
        "ONBOARDING_NOTIFY_URL": "http://127.0.0.1:8010/",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main([command]) == 1
    assert "ONBOARDING_NOTIFY_SECRET is not" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ([], ("127.0.0.1:17233", "default")),
        (["--temporal-address", "mine:7233"], ("mine:7233", None)),
    ],
)
def test_the_cli_connects_where_discovery_and_the_flag_say(
    here: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    expected: tuple[str, str | None],
) -> None:
    running_dev(here)
    calls: list[tuple[str | None, str | None]] = []

    async def connect(address: str | None = None, *, namespace: str | None = None,
                      lazy: bool = False, codec: object = None) -> None:  # fmt: skip
        calls.append((address, namespace))
        raise RuntimeError("not really connecting")

    monkeypatch.setattr("onboarding.service.temporal.connect", connect)
    assert cli.main(["stats", *flag]) == 1
    assert calls == [expected]
    assert "cannot reach Temporal" in capsys.readouterr().err


def test_a_dev_file_others_can_write_is_not_believed(tmp_path: Path) -> None:
    write_dev_file(tmp_path, running_dev(tmp_path))
    assert find_dev(tmp_path) is not None
    (tmp_path / DEV_FILE).chmod(0o622)  # planted, or left writable by anyone
    assert find_dev(tmp_path) is None
