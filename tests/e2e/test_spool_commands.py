"""The operator's commands about the spool, as a user runs them, while Temporal is away."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from onboarding.service.spool import open_spool
from tests.conftest import free_port
from tests.e2e.test_dev_command import ONBOARDING


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMILE_", "ONBOARDING_", "TEMPORAL_"))
    }
    return subprocess.run(
        [str(ONBOARDING), *args], env={**clean, **env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


async def spool_one(path: Path) -> None:
    spool = open_spool(str(path), 1 << 20)
    await spool.open()
    now = datetime.now(UTC)
    await spool.put("tenantId-1", "evt-1", now, b"{}", now)
    await spool.close()


def test_status_reports_the_spool_while_temporal_is_away(tmp_path: Path) -> None:
    asyncio.run(spool_one(tmp_path / "spool.sqlite3"))
    away = f"127.0.0.1:{free_port()}"
    result = run("status", "--json", TEMPORAL_ADDRESS=away, ONBOARDING_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    health = json.loads(result.stdout)
    assert (health["status"], health["temporal"]) == ("degraded", "unreachable")
    assert health["spool"]["depth"] == 1
    text = run("status", TEMPORAL_ADDRESS=away, ONBOARDING_DATA_DIR=str(tmp_path)).stdout
    assert "Temporal is unreachable: events are spooled" in text and "1 waiting" in text


def test_commands_never_make_a_spool_of_their_own(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-the-service"
    result = run(
        "dead-letters", "list", TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        ONBOARDING_DATA_DIR=str(elsewhere),
    )  # fmt: skip
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not elsewhere.exists()


def test_a_bad_spool_url_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    result = run(
        "api",
        SMILE_WEBHOOK_SECRET="s",
        ONBOARDING_ADMIN_TOKEN="t",
        ONBOARDING_CALLBACK_SECRET="c",
        ONBOARDING_SPOOL_URL="mysql://operator:hunter2@db.example/spool",
    )
    assert result.returncode == 1
    assert "ONBOARDING_SPOOL_URL" in result.stderr and "unsupported spool URL" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
