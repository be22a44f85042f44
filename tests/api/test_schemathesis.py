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
    # its own run-time defaults: what it PUTs to /defaults must not reach the other tests
    settings = api_settings.model_copy(update={"defaults_id": f"schemathesis-{port}"})
    app = create_app(settings, dev_env.client)
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    async with serving(app, "127.0.0.1", port):
        process = await asyncio.create_subprocess_exec(
            str(ST), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "not_a_server_error",
            # A generated bulk operation would change every onboarding of the shared dev
            # server, other tests' included: tests/api/test_bulk.py checks its input instead.
            "--exclude-name", "POST /bulk-operations",
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
    assert f"Tested: {operations - 1}" in text  # every operation of the schema but that one
