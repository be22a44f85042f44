"""The console in a real browser (Debian's Chromium, headless, driven by Playwright) against the
real app served by uvicorn, a real Temporal dev server and a real worker. No fixed sleeps:
Playwright's assertions wait (up to a deadline) for what the page should come to show."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.api.console.conftest import (
    ADMIN,
    WAIT,
    Console,
    Tab,
    send_webhooks,
    start_onboarding,
)
from tests.conftest import ADMIN_TOKEN, eventually, unique_user


async def sign_in(page: Page, token: str = ADMIN_TOKEN) -> None:
    await page.goto("/console/sign-in")
    await page.fill("#token", token)
    await page.get_by_role("button", name="Sign in").click()


async def view_of(console: Console, user: str) -> dict:  # type: ignore[type-arg]
    response = await console.http.get(f"/onboardings/{user}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_sign_in_watch_the_funnel_move_and_open_a_user(tab: Tab, console: Console) -> None:
    page = tab.page
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next=/console$"))
    await page.fill("#token", "not the token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_have_text("That is not an admin token.")
    await page.fill("#token", ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{console.url}/console")
    await expect(page.get_by_role("heading", name="Funnel")).to_be_visible()

    connected = page.locator("#stage-connected [data-cell=now]")
    total = page.locator("#funnel-total")
    before_connected = int(await connected.inner_text())
    before_total = int(await total.inner_text())
    user = unique_user()
    await send_webhooks(console.http, user, "ACCOUNT_CREATED", "ACCOUNT_CONNECTED")
    # htmx polls the fragment every 5 s: the page moves by itself. At least by this user: other
    # tests' onboardings share the namespace (and the session's spool may still be draining).

    async def connected_moved() -> None:
        assert int(await total.inner_text()) >= before_total + 1
        assert int(await connected.inner_text()) >= before_connected + 1

    await eventually(connected_moved, timeout=WAIT / 1000)

    await page.fill("#open-user", user)
    await page.press("#open-user", "Enter")
    await expect(page).to_have_url(f"{console.url}/console/onboardings/{user}")
    await expect(page.locator("#user-stage")).to_have_text("connected")
    await expect(page.locator("#user-status")).to_have_text("active")
    timeline = page.locator("#timeline tbody tr")
    await expect(timeline).to_have_count(2)
    await expect(timeline.first).to_contain_text("ACCOUNT_CONNECTED")
    await expect(timeline.first.locator(".source")).to_have_text("webhook")
    await expect(page.locator("#accounts tbody tr")).to_have_count(1)


async def test_extending_the_timeout_recovers_a_stalled_user(tab: Tab, console: Console) -> None:
    user = await start_onboarding(console.http, timeouts={"stall": {"created": "1s"}})

    async def stalled() -> None:
        assert (await view_of(console, user))["status"] == "stalled"

    await eventually(stalled, timeout=20)
    page = tab.page
    await sign_in(page)
    await page.goto(f"/console/onboardings/{user}")
    await expect(page.locator("#user-status")).to_have_text("stalled")
    await expect(page.locator("#user-status-reason")).to_contain_text("past its stall timeout")

    await page.fill("#stall_created", "soon")  # refused inline, nothing changed
    await page.get_by_role("button", name="Change timeouts").click()
    await expect(page.locator("#result-timeouts .result.error")).to_contain_text("invalid duration")
    await expect(page.locator("#user-status")).to_have_text("stalled")

    await page.fill("#stall_created", "1h")
    await page.get_by_role("button", name="Change timeouts").click()
    await expect(page.locator("#result-timeouts .result.ok")).to_contain_text(
        "Timeouts changed. Status now active"
    )
    # the details reload by themselves after an action
    await expect(page.locator("#user-status")).to_have_text("active")
    await expect(page.locator("#timeout-created")).to_have_text("created 1h")
    view = await view_of(console, user)
    assert (view["status"], view["timeouts"]["stall"]["created"]) == ("active", 3600)


async def test_a_forged_post_is_refused_and_changes_nothing(tab: Tab, console: Console) -> None:
    user = await start_onboarding(console.http)
    page = tab.page
    await sign_in(page)
    await expect(page).to_have_url(f"{console.url}/console")
    cancel = f"/console/onboardings/{user}/cancel"
    # Signed in, with the session cookie, but without the session's CSRF token: 403.
    for form, headers in (
        ({"confirm": "yes"}, {}),
        ({"confirm": "yes", "csrf_token": "wrong"}, {}),
        ({"confirm": "yes"}, {"X-CSRF-Token": "wrong", "HX-Request": "true"}),
    ):
        response = await page.request.post(cancel, form=form, headers=headers)
        assert response.status == 403, await response.text()
    # Another site's page posting a form to the console: SameSite=Strict keeps the cookie
    # at home, so the console sees nobody signed in.
    await page.route(
        "http://elsewhere.test/",
        lambda route: route.fulfill(
            content_type="text/html",
            body=(
                f'<form method="post" action="{console.url}{cancel}">'
                '<input name="confirm" value="yes"><button id="go">go</button></form>'
            ),
        ),
    )
    await page.goto("http://elsewhere.test/")
    async with page.expect_response(re.compile(re.escape(cancel))) as answer:
        await page.click("#go")
    assert (await answer.value).status == 401
    view = await view_of(console, user)
    assert view["status"] == "active" and view["endedAt"] is None


async def test_signed_out_access_is_refused(tab: Tab, console: Console) -> None:
    user = unique_user()
    await send_webhooks(console.http, user, "ACCOUNT_CREATED")
    await eventually(lambda: view_of(console, user))
    page = tab.page
    await page.goto(f"/console/onboardings/{user}")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    # the address the operator asked for is kept for after sign-in; nothing of the onboarding
    await expect(page.locator("h1")).to_have_text("Sign in")
    content = await page.content()
    assert "ACCOUNT_CREATED" not in content and "account created" not in content
    fragment = await page.request.get("/console/fragments/funnel")
    assert fragment.status == 401
    # signing in goes back where the operator was headed; signing out closes the door again
    await page.fill("#token", ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{console.url}/console/onboardings/{user}")
    await expect(page.locator("h1")).to_have_text(user)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{console.url}/console/sign-in")
    await page.goto(f"/console/onboardings/{user}")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    assert (await page.request.get(f"/console/fragments/onboardings/{user}")).status == 401
