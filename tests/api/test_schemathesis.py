"""Schemathesis against the app's own OpenAPI schema, served by uvicorn over real HTTP against a
real dev server: no generated input may cause a 5xx."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.service.settings import Settings
from onboarding.tooling.serving import serving
from tests.conftest import ADMIN_TOKEN, free_port

ST = Path(sys.executable).parent / "st"


async def test_no_generated_input_causes_a_server_error(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None, tmp_path: Path
) -> None:
    port = free_port()
    async with serving(create_app(api_settings, dev_env.client), "127.0.0.1", port):
        process = await asyncio.create_subprocess_exec(
            str(ST), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
            "--max-examples", "30",
            "--seed", "20261129",
            "--request-timeout", "30",
            "--report-dir", str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )  # fmt: skip
        output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", text), text[-3000:]
    assert "Tested: 18" in text  # every operation of the schema
