"""The ``onboarding`` console script and its parser, without running any command."""

from importlib.metadata import entry_points

import pytest

from onboarding.cli.main import build_parser, run

COMMANDS = ("dev", "worker", "api", "status", "list", "stats", "timeouts", "start", "link-token",
            "dead-letters",
            "reconcile", "simulate", "cancel", "notices", "listen")  # fmt: skip


def test_the_console_script_is_run() -> None:
    (script,) = entry_points(group="console_scripts", name="onboarding")
    assert script.load() is run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: onboarding {command}")
