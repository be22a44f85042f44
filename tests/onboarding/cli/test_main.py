"""The ``onboarding`` console script and its parser, without running any command."""

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from onboarding.cli.main import build_parser, main, run

COMMANDS = ("dev", "worker", "api", "status", "list", "stats", "timeouts", "start", "link-token",
            "dead-letters",
            "reconcile", "simulate", "cancel", "notices", "listen", "defaults", "bulk")  # fmt: skip


def test_the_console_script_is_run() -> None:
    (script,) = entry_points(group="console_scripts", name="onboarding")
    assert script.load() is run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: onboarding {command}")


@pytest.mark.parametrize(
    "command",
    [["cancel", "someone"], ["timeouts", "someone", "--set", "connected=2d"],
     ["reconcile", "--where", "stage=created"], ["start"]],
)  # fmt: skip
def test_a_command_that_writes_refuses_without_a_key(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Encryption on (the default) and no key: what it would send would be stored in plain
    text, so it says so instead of connecting at all."""
    monkeypatch.chdir(tmp_path)  # no running dev here to take a key from
    monkeypatch.setenv("ONBOARDING_DATA_DIR", str(tmp_path / ".onboarding"))
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    monkeypatch.delenv("ONBOARDING_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("ONBOARDING_ENCRYPTION", raising=False)
    monkeypatch.setenv("ONBOARDING_CALLBACK_SECRET", "for-start")
    assert main(command) == 1
    assert "ONBOARDING_ENCRYPTION_KEYS is not set" in capsys.readouterr().err


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    """``onboarding … | head``: output into a closed pipe ends quietly, not with a traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "onboarding.cli.main", "encryption-key"],
            stdout=write, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
