"""Fixtures for the console's tests: the real app against the real dev server and worker, over
ASGI for the HTTP tests and behind a real uvicorn server for the browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from onboarding.core.signatures import sign
from onboarding.service.settings import Settings
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import start_server, stop_server
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET
from tests.smile_samples import webhook_body

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def console_app(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> FastAPI:
    return create_app(api_settings, dev_env.client)


@pytest.fixture
async def http(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An unsigned-in browser-like client (keeps cookies, follows no redirects)."""
    transport = httpx.ASGITransport(app=console_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> str:
    """Sign ``client`` in and return its session's CSRF token (read from a page's form)."""
    response = await client.post("/console/sign-in", data={"token": token})
    assert response.status_code == 303, response.text
    page = await client.get("/console/stuck?status=any&page_size=1")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def start_onboarding(client: httpx.AsyncClient, **body: object) -> str:
    """A new onboarding through the JSON API (the stand-in creates the Smile user)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await client.post("/onboardings", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["userId"])


async def send_webhooks(client: httpx.AsyncClient, user: str, *types: str) -> None:
    """Signed webhooks for ``user``, a second apart in Smile's ``createdAt``, the last now."""
    now = datetime.now(UTC).replace(microsecond=0)
    for position, event_type in enumerate(types):
        at = now - timedelta(seconds=len(types) - 1 - position)
        body = webhook_body(event_type, user, created_at=at)
        headers = {"Smile-Signature": sign(body, WEBHOOK_SECRET),
                   "Content-Type": "application/json"}  # fmt: skip
        response = await client.post("/webhooks/smile", content=body, headers=headers)
        assert response.status_code == 202, response.text


# --- the browser ------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT = 30_000  # ms: the funnel polls every 5 s for figures up to 5 s old; the rest is quicker


@dataclass
class Console:
    url: str
    http: httpx.AsyncClient  # to the same server: webhooks, the JSON API


@pytest.fixture(scope="module")
async def console(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> AsyncIterator[Console]:
    port = free_port()
    server, task = await start_server(create_app(api_settings, dev_env.client), "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Console(url, http)
    finally:
        await stop_server(server, task)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Tab:
    context: BrowserContext
    page: Page
    problems: list[str]  # CSP violations and script errors seen by the page


@pytest.fixture
async def tab(browser: Browser, console: Console) -> AsyncIterator[Tab]:
    context = await browser.new_context(base_url=console.url)
    context.set_default_timeout(WAIT)
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield Tab(context, page, problems)
    finally:
        await context.close()
    assert not problems, problems  # e.g. "Refused to apply inline style … Content Security Policy"
