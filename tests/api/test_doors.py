"""Who may knock where: the webhook allow-list (and X-Forwarded-For only from trusted proxies),
CORS for the front end, body limits everywhere, problem details everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.client_ip import allowed, caller_key, client_ip, parse_networks
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from onboarding.tooling.serving import serving
from tests.conftest import (
    ADMIN_TOKEN,
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    free_port,
    unique_user,
    workflow_exists,
)
from tests.smile_samples import webhook_body

SMILE_IP = "18.142.61.230"


@asynccontextmanager
async def app_client(
    settings: Settings, env: WorkflowEnvironment, peer: str = "127.0.0.1", **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=changes), env.client)
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def signed_webhook(user: str, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = webhook_body("USER_CREATED", user)
    return body, {"Smile-Signature": sign(body, secret)}


def test_client_ip_honours_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8"])
    assert client_ip("10.1.2.3", f"{SMILE_IP}", proxies) == SMILE_IP
    assert client_ip("10.1.2.3", f"1.1.1.1, {SMILE_IP}, 10.9.9.9", proxies) == SMILE_IP
    assert client_ip("203.0.113.9", SMILE_IP, proxies) == "203.0.113.9"  # not a proxy: ignored
    assert client_ip("10.1.2.3", None, proxies) == "10.1.2.3"
    assert allowed("anything", [])
    assert allowed(SMILE_IP, parse_networks([SMILE_IP]))
    assert not allowed("18.142.61.231", parse_networks([SMILE_IP]))
    assert not allowed("not-an-ip", parse_networks([SMILE_IP]))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "status"),
    [
        (SMILE_IP, None, [], 202),
        ("127.0.0.1", None, [], 403),
        ("127.0.0.1", SMILE_IP, [], 403),  # a spoofed header from an untrusted peer
        ("127.0.0.1", SMILE_IP, ["127.0.0.1"], 202),  # behind our own proxy
        ("127.0.0.1", "198.51.100.7", ["127.0.0.1"], 403),
    ],
)
async def test_webhook_allow_list(
    api_settings: Settings, dev_env: WorkflowEnvironment, dev_worker: None,
    peer: str, forwarded: str | None, trusted: list[str], status: int,
) -> None:  # fmt: skip
    user = unique_user()
    body, headers = signed_webhook(user)
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    async with app_client(api_settings, dev_env, peer, webhook_allowed_ips=[SMILE_IP],
                          trusted_proxies=trusted) as client:  # fmt: skip
        response = await client.post("/webhooks/smile", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert await workflow_exists(dev_env.client, user) is (status == 202)


def test_allow_list_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(webhook_allowed_ips="18.142.61.230,smile.example")


async def test_the_old_secret_stops_working_when_rotation_ends(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    user = unique_user()
    body, headers = signed_webhook(user, OLD_WEBHOOK_SECRET)
    async with app_client(api_settings, dev_env,
                          webhook_secrets=[SecretStr(WEBHOOK_SECRET)]) as client:  # fmt: skip
        response = await client.post("/webhooks/smile", content=body, headers=headers)
    assert response.status_code == 401
    assert not await workflow_exists(dev_env.client, user)


async def test_cors_admits_only_configured_origins_and_only_for_posts(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    path = "/onboardings/u-1/callbacks"
    async with app_client(api_settings, dev_env) as client:  # none by default
        response = await client.options(
            path, headers={"Origin": "https://app.example", **preflight}
        )
        assert "access-control-allow-origin" not in response.headers
    async with app_client(api_settings, dev_env, cors_origins=["https://app.example"]) as client:
        ok = await client.options(path, headers={"Origin": "https://app.example", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.options(path, headers={"Origin": "https://evil.example", **preflight})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        get = await client.options("/onboardings", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})  # fmt: skip
        assert get.status_code == 400


async def test_operator_bodies_are_limited(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with app_client(api_settings, dev_env) as client:
        big = {"stall": {"created": "1h"}, "pad": "x" * (api_settings.request_max_bytes + 1)}
        response = await client.put("/onboardings/u-1/timeouts", headers=admin, json=big)
        assert response.status_code == 413
        assert response.json()["status"] == 413


async def test_errors_are_problem_details_everywhere(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    async with app_client(api_settings, dev_env) as client:
        for response in (
            await client.get("/no/such/route"),
            await client.delete("/webhooks/smile"),
            await client.post("/webhooks/smile", content=b"{}"),
        ):
            assert response.headers["content-type"] == "application/problem+json"
            assert set(response.json()) == {"type", "title", "status", "detail"}
            assert response.json()["status"] == response.status_code


async def test_forwarded_for_from_localhost_is_not_believed_over_real_http(
    api_settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    """Served by uvicorn as `onboarding api` serves it: uvicorn's own proxy-header rewrite (on by
    default for 127.0.0.1) must not turn a spoofed header into the peer address."""
    user = unique_user()
    body, headers = signed_webhook(user)
    headers["X-Forwarded-For"] = SMILE_IP
    settings = api_settings.model_copy(update={"webhook_allowed_ips": [SMILE_IP]})
    port = free_port()
    async with (
        serving(create_app(settings, dev_env.client), "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        response = await client.post("/webhooks/smile", content=body, headers=headers)
    assert response.status_code == 403, response.text
    assert not await workflow_exists(dev_env.client, user)


def test_failures_are_counted_per_ipv4_host_and_per_ipv6_slash_64() -> None:
    assert caller_key("192.0.2.7") == "192.0.2.7"
    assert caller_key("::ffff:192.0.2.7") == "192.0.2.7"
    one, other = caller_key("2001:db8:1:2::1"), caller_key("2001:db8:1:2:ffff::9")
    assert one == other == "2001:db8:1:2::/64"
    assert caller_key("2001:db8:1:3::1") != one
    assert caller_key("?") == "?"  # no address known: one shared count
