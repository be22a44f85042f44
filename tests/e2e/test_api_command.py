"""``onboarding api`` as production runs it: uvicorn in a subprocess, over real HTTP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from onboarding.core.signatures import sign
from tests.conftest import ADMIN_TOKEN, ENCRYPTION_KEY, WEBHOOK_SECRET, free_port, unique_user
from tests.e2e.test_dev_command import ONBOARDING, wait_for
from tests.smile_samples import webhook_body

SMILE_IP = "18.142.61.230"


@pytest.fixture
def api_url() -> Iterator[str]:
    """The API with Smile's address allow-listed and no trusted proxies. Temporal is a closed
    port: the API starts anyway, and the allow-list answers before Temporal is asked."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMILE_", "ONBOARDING_"))},
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SMILE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SMILE_WEBHOOK_ALLOWED_IPS": SMILE_IP,
        "ONBOARDING_ADMIN_TOKEN": ADMIN_TOKEN,
        "ONBOARDING_CALLBACK_SECRET": "api-command-callback-secret",
        "ONBOARDING_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    }
    process = subprocess.Popen(
        [str(ONBOARDING), "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        assert process.poll() is None, f"onboarding api exited with {process.returncode}"
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(live, 30, "onboarding api to listen")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_forwarded_for_from_localhost_is_not_believed(api_url: str) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to; the service decides
    that with ONBOARDING_TRUSTED_PROXIES alone (empty here)."""
    body = webhook_body("USER_CREATED", unique_user())
    headers = {"Smile-Signature": sign(body, WEBHOOK_SECRET), "X-Forwarded-For": SMILE_IP}
    response = httpx.post(f"{api_url}/webhooks/smile", content=body, headers=headers)
    # Believed, the spoofed address would pass the allow-list and meet the missing Temporal: 503.
    assert response.status_code == 403, response.text
    assert "Smile's addresses" in response.json()["detail"]
