"""Screenshots of the console's pages for ``docs/console/``: a few journeys at every stage, some
stalled, then each page in the browser. Not part of the suite (its name is not ``test_*``); run
it by name, alone, so the funnel shows only these journeys:

    .venv/bin/pytest tests/api/console/screenshots.py     # ONBOARDING_CONSOLE_SCREENSHOTS=DIR
                                                          # to write elsewhere than docs/console
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from playwright.async_api import expect

from tests.api.console.conftest import ADMIN, Console, Tab, send_webhooks, start_onboarding
from tests.conftest import ADMIN_TOKEN, eventually, unique_user

TARGET = os.environ.get("ONBOARDING_CONSOLE_SCREENSHOTS")

DATA_READY = ("ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "IDENTITY_ADDED", "EMPLOYMENTS_ADDED",
              "INCOMES_ADDED")  # fmt: skip


async def status_of(console: Console, user: str) -> str:
    response = await console.http.get(f"/onboardings/{user}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def populate(console: Console) -> str:
    """Journeys at every stage, a few stalled, one cancelled; returns the one to show alone."""
    http = console.http
    journeys = [DATA_READY] * 3 + [DATA_READY[:2]] * 5 + [DATA_READY[:1]] * 3
    await asyncio.gather(*(send_webhooks(http, unique_user(), *j) for j in journeys))
    stalled = [await start_onboarding(http, timeouts={"stall": {"created": "1s"}})
               for _ in range(2)]  # fmt: skip
    for _ in range(2):
        user = await start_onboarding(http, timeouts={"stall": {"account_created": "1s"}})
        await send_webhooks(http, user, "ACCOUNT_CREATED")
        stalled.append(user)
    cancelled = await start_onboarding(http)
    response = await http.post(f"/onboardings/{cancelled}/cancel", headers=ADMIN,
                               json={"reason": "duplicate applicant"})  # fmt: skip
    assert response.status_code == 200
    # the one shown alone: a widget hint, then Smile's webhooks; it stalls while connected
    started = await http.post(
        "/onboardings",
        headers=ADMIN,
        json={"externalMetadata": {"applicationId": "app-1042"},
              "timeouts": {"stall": {"connected": "2s"}}},
    )  # fmt: skip
    assert started.status_code == 201, started.text
    user = started.json()["userId"]
    callback = await http.post(
        f"/onboardings/{user}/callbacks",
        headers={"Authorization": f"Bearer {started.json()['callbackToken']}"},
        json={"callback": "onAccountCreated",
              "data": {"accountId": "a-123abc456def789abc123def456abc78", "providerId": "abccorp"}},
    )  # fmt: skip
    assert callback.status_code == 202, callback.text
    await send_webhooks(http, user, "ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "IDENTITY_ADDED",
                        "TASK_STARTED")  # fmt: skip
    stalled.append(user)
    for one in stalled:

        async def is_stalled(one: str = one) -> None:
            assert await status_of(console, one) == "stalled"

        await eventually(is_stalled, timeout=30)
    return str(user)


async def test_screenshots(tab: Tab, console: Console) -> None:
    target = Path(TARGET or "docs/console")
    target.mkdir(parents=True, exist_ok=True)
    user = await populate(console)
    page = tab.page
    await page.set_viewport_size({"width": 1280, "height": 860})

    await page.goto("/console/sign-in")
    await page.screenshot(path=target / "sign-in.png")
    await page.fill("#token", ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#funnel")).to_be_visible()
    await page.screenshot(path=target / "funnel.png", full_page=True)

    await page.goto("/console/stuck?status=stalled")
    await expect(page.locator("#stuck tbody tr")).to_have_count(5)
    await page.screenshot(path=target / "stuck.png", full_page=True)

    await page.goto(f"/console/onboardings/{user}")
    await expect(page.locator("#user-status")).to_have_text("stalled")
    await page.screenshot(path=target / "onboarding.png", full_page=True)

    await page.fill("#stall_connected", "6h")
    await page.get_by_role("button", name="Change timeouts").click()
    await expect(page.locator("#user-status")).to_have_text("active")
    await page.screenshot(path=target / "action.png")
    await page.get_by_role("button", name="Issue a link token").click()
    await expect(page.locator("#issued-link-token")).to_be_visible()
    await page.locator("aside.actions").screenshot(path=target / "link-token.png")
