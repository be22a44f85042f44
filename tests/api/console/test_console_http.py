"""The console over HTTP (the real app, the real dev server and worker): its doors (sign-in,
session cookie, CSRF), its headers, and its pages' contents and inline errors."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.console.web import CONTENT_SECURITY_POLICY
from onboarding.core.models import Stage, Status
from onboarding.service.settings import Settings
from tests.api.console.conftest import csrf_of, send_webhooks, sign_in, start_onboarding
from tests.conftest import ADMIN_TOKEN, eventually, unique_user

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def assert_console_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def view_of(client: httpx.AsyncClient, user: str) -> dict:  # type: ignore[type-arg]
    response = await client.get(f"/onboardings/{user}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_policy_is_the_strict_one() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


# --- signed out: nothing personal ---------------------------------------------------------------


async def test_signed_out_pages_redirect_and_fragments_are_401(http: httpx.AsyncClient) -> None:
    user = unique_user()
    await send_webhooks(http, user, "ACCOUNT_CONNECTED")
    await eventually(lambda: view_of(http, user))
    for path in ("/console", "/console/stuck", f"/console/onboardings/{user}",
                 f"/console/open?user_id={user}"):  # fmt: skip
        response = await http.get(path)
        assert response.status_code == 303, (path, response.text)
        assert response.headers["location"].startswith("/console/sign-in?next=/console")
        assert user not in response.text
        assert_console_headers(response)
    for path in ("/console/fragments/funnel", f"/console/fragments/onboardings/{user}"):
        for headers in ({}, {"HX-Request": "true"}):
            response = await http.get(path, headers=headers)
            assert response.status_code == 401, path
            assert user not in response.text and "Sign in" in response.text
            assert_console_headers(response)
    # htmx asking for a page gets a 401 to swap, not a redirect it would follow silently
    response = await http.get(f"/console/onboardings/{user}", headers={"HX-Request": "true"})
    assert response.status_code == 401 and user not in response.text


async def test_signed_out_posts_are_refused_and_change_nothing(http: httpx.AsyncClient) -> None:
    user = await start_onboarding(http)
    before = await view_of(http, user)
    for action, form in (("timeouts", {"stall_created": "9h"}), ("cancel", {"confirm": "yes"}),
                         ("reconcile", {}), ("link-token", {})):  # fmt: skip
        response = await http.post(f"/console/onboardings/{user}/{action}", data=form)
        assert response.status_code == 401, action
        assert_console_headers(response)
    after = await view_of(http, user)
    assert (after["status"], after["timeouts"]) == (before["status"], before["timeouts"])
    assert after["reconcile"]["runs"] == before["reconcile"]["runs"]
    assert after["token"]["refreshCount"] == before["token"]["refreshCount"]


# --- signing in and out -------------------------------------------------------------------------


async def test_a_wrong_token_is_refused_without_a_cookie(http: httpx.AsyncClient) -> None:
    for token in ("not-the-token", "", ADMIN_TOKEN + " "):
        response = await http.post("/console/sign-in", data={"token": token})
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert "not an admin token" in response.text
        assert_console_headers(response)
    assert (await http.get("/console")).status_code == 303


async def test_repeated_wrong_tokens_from_one_address_must_wait(console_app: FastAPI) -> None:
    def client_from(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=console_app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with client_from("10.0.0.7") as guesser, client_from("10.0.0.8") as operator:
        for _ in range(9):
            assert (
                await guesser.post("/console/sign-in", data={"token": "guess"})
            ).status_code == 401
        await sign_in(guesser)  # a success forgets the failures before it
        for _ in range(10):
            assert (
                await guesser.post("/console/sign-in", data={"token": "guess"})
            ).status_code == 401
        # The eleventh is refused before the token is compared: even the right one waits.
        throttled = await guesser.post("/console/sign-in", data={"token": ADMIN_TOKEN})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 300
        assert (
            "Too many failed sign-ins" in throttled.text and "set-cookie" not in throttled.headers
        )
        assert_console_headers(throttled)
        await sign_in(operator)  # another address is not held up


async def test_sign_in_sets_a_strict_http_only_session_cookie(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/console/sign-in", data={"token": ADMIN_TOKEN, "next": "/console/stuck"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/stuck"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "max-age=28800" in cookie.lower()  # ONBOARDING_CONSOLE_SESSION_TTL, 8h
    assert "secure" not in attributes  # plain HTTP here: see the next test
    assert ADMIN_TOKEN not in cookie
    assert_console_headers(response)
    page = await http.get("/console")
    assert page.status_code == 200 and "Funnel" in page.text
    assert_console_headers(page)


@pytest.mark.parametrize("where", ["https", "trusted proxy", "untrusted proxy"])
async def test_the_cookie_is_secure_over_https(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings, where: str
) -> None:
    settings = api_settings
    base, headers = "http://testserver", {}
    if where == "https":
        base = "https://testserver"
    else:
        headers = {"X-Forwarded-Proto": "https"}
        if where == "trusted proxy":  # the ASGI transport's peer is 127.0.0.1
            settings = api_settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    app = create_app(settings, dev_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
        response = await client.post("/console/sign-in", data={"token": ADMIN_TOKEN},
                                     headers=headers)  # fmt: skip
    assert response.status_code == 303
    secure = "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}
    assert secure is (where != "untrusted proxy")


async def test_next_never_leads_off_the_console(http: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/console", "/console/../docs",
                   "/console//evil.example", "/docs", "/console\\@evil"):  # fmt: skip
        response = await http.post("/console/sign-in", data={"token": ADMIN_TOKEN, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/console", target


async def test_every_admin_token_signs_in_and_rotation_signs_everyone_out(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    two = api_settings.model_copy(
        update={"admin_tokens": [SecretStr(ADMIN_TOKEN), SecretStr("older-token")]}
    )
    app = create_app(two, dev_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:  # fmt: skip
        await sign_in(client, "older-token")  # the second token signs in too
        cookie = client.cookies.get("onboarding_console")
        assert cookie and (await client.get("/console")).status_code == 200
    # Another replica with the same tokens accepts the session: no per-process key.
    replica = create_app(two, dev_env.client)
    rotated = create_app(
        api_settings.model_copy(
            update={"admin_tokens": [SecretStr("brand-new"), SecretStr(ADMIN_TOKEN)]}
        ),
        dev_env.client,
    )
    for other, status in ((replica, 200), (rotated, 303)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other),
            base_url="http://testserver",
            cookies={"onboarding_console": cookie},
        ) as client:
            assert (await client.get("/console")).status_code == status


async def test_a_tampered_cookie_is_signed_out(http: httpx.AsyncClient) -> None:
    await sign_in(http)
    cookie = http.cookies.get("onboarding_console")
    assert cookie
    version, issued, nonce, mac = cookie.split(".")
    http.cookies.clear()
    http.cookies.set("onboarding_console", f"{version}.{int(issued) + 3600}.{nonce}.{mac}",
                     domain="testserver.local", path="/console")  # fmt: skip
    assert (await http.get("/console")).status_code == 303
    http.cookies.clear()
    http.cookies.set("onboarding_console", ADMIN_TOKEN, domain="testserver.local",
                     path="/console")  # fmt: skip
    assert (await http.get("/console")).status_code == 303


async def test_sign_out_needs_the_csrf_token_then_forgets_the_cookie(
    http: httpx.AsyncClient,
) -> None:
    csrf = await sign_in(http)
    refused = await http.post("/console/sign-out", data={})
    assert refused.status_code == 403
    assert (await http.get("/console")).status_code == 200
    response = await http.post("/console/sign-out", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    assert 'onboarding_console=""' in response.headers["set-cookie"]
    assert (await http.get("/console")).status_code == 303


# --- CSRF ---------------------------------------------------------------------------------------


async def test_a_post_without_its_sessions_csrf_token_is_403_and_changes_nothing(
    console_app: FastAPI, http: httpx.AsyncClient
) -> None:
    user = await start_onboarding(http)
    before = await view_of(http, user)
    mine = await sign_in(http)
    # another operator's session: its token is valid, but not for this session
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=console_app),
                                 base_url="http://testserver") as other:  # fmt: skip
        theirs = await sign_in(other)
    assert theirs != mine
    url = f"/console/onboardings/{user}/timeouts"
    form = {"stall_created": "9h"}
    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        (form, {}),
        ({**form, "csrf_token": "wrong"}, {}),
        ({**form, "csrf_token": theirs}, {}),
        (form, {"X-CSRF-Token": theirs}),
        (form, {"X-CSRF-Token": mine[:-1]}),
        ({**form, "csrf_token": ""}, {"HX-Request": "true"}),
    ]
    for data, headers in attempts:
        response = await http.post(url, data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert "CSRF" in response.text
        assert_console_headers(response)
    # a JSON body carries no form field; a forged header alone is no better
    assert (await http.post(url, json={"csrf_token": mine, **form})).status_code == 403
    for action in ("cancel", "reconcile", "link-token"):
        response = await http.post(f"/console/onboardings/{user}/{action}",
                                   data={"confirm": "yes"})  # fmt: skip
        assert response.status_code == 403, action
    after = await view_of(http, user)
    assert after["timeouts"] == before["timeouts"] and after["status"] == before["status"]
    assert after["reconcile"]["runs"] == before["reconcile"]["runs"]
    assert after["token"]["refreshCount"] == before["token"]["refreshCount"]
    # the right token, as a hidden field or as htmx's header, goes through
    done = await http.post(url, data={**form, "csrf_token": mine})
    assert done.status_code == 200, done.text
    assert (await view_of(http, user))["timeouts"]["stall"]["created"] == 9 * 3600
    done = await http.post(url, data={"stall_created": "10h"},
                           headers={"X-CSRF-Token": mine, "HX-Request": "true"})  # fmt: skip
    assert done.status_code == 200, done.text
    assert (await view_of(http, user))["timeouts"]["stall"]["created"] == 10 * 3600


# --- pages --------------------------------------------------------------------------------------


def assert_no_inline_script_or_style(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert not re.search(r"\sstyle=", html), "an inline style attribute"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"
    assert "://" not in re.sub(r'href="https?://[^"]*"', "", html).replace(
        "http://www.w3.org", ""
    ), "something loaded from elsewhere"


async def test_pages_load_nothing_from_elsewhere_and_nothing_inline(
    http: httpx.AsyncClient,
) -> None:
    user = unique_user()
    await send_webhooks(http, user, "ACCOUNT_CREATED", "ACCOUNT_CONNECTED")
    await eventually(lambda: view_of(http, user))
    sign_in_page = await http.get("/console/sign-in")
    assert_console_headers(sign_in_page)
    assert_no_inline_script_or_style(sign_in_page.text)
    await sign_in(http)
    pages = ["/console", "/console/fragments/funnel", "/console/stuck?status=any",
             f"/console/onboardings/{user}", f"/console/fragments/onboardings/{user}"]  # fmt: skip
    for path in pages:
        response = await http.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert_console_headers(response)
        assert_no_inline_script_or_style(response.text)
    assets = [("htmx.min.js", "javascript"), ("console.css", "text/css"),
              ("favicon.svg", "image/svg+xml"), ("htmx.LICENSE.txt", "text/plain")]  # fmt: skip
    for asset, kind in assets:
        response = await http.get(f"/console/static/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
        assert response.headers["x-content-type-options"] == "nosniff"
    page = (await http.get("/console")).text
    assert 'src="/console/static/htmx.min.js"' in page
    assert '"includeIndicatorStyles": false' in page
    assert "hx-headers=" in page  # htmx sends the CSRF token with every request


async def test_the_funnel_counts_by_stage_and_status_with_stalls(
    http: httpx.AsyncClient,
) -> None:
    await sign_in(http)
    page = (await http.get("/console/fragments/funnel")).text
    assert 'hx-trigger="every 5s"' in page
    for stage in ("created", "account_created", "connected", "uploads", "data_ready"):
        assert f'id="stage-{stage}"' in page
    for status in ("active", "stalled", "completed", "cancelled", "expired", "failed"):
        assert f'id="status-{status}"' in page

    def connected_now(html: str) -> int:
        row = html.split('id="stage-connected"', 1)[1]
        return int(re.search(r'data-cell="now">(\d+)<', row).group(1))  # type: ignore[union-attr]

    before = connected_now(page)
    await send_webhooks(http, unique_user(), "ACCOUNT_CONNECTED")

    async def moved() -> None:
        html = (await http.get("/console/fragments/funnel")).text
        assert connected_now(html) >= before + 1  # others share the namespace

    await eventually(moved, timeout=30)  # the funnel's figures may be 5 s old


async def test_one_user_shows_stage_accounts_data_and_timeline(http: httpx.AsyncClient) -> None:
    user = unique_user()
    await send_webhooks(http, user, "ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "IDENTITY_ADDED")

    async def three_events() -> None:
        assert len((await view_of(http, user))["events"]) == 3

    await eventually(three_events)
    await sign_in(http)
    page = (await http.get(f"/console/onboardings/{user}")).text
    assert user in page
    assert 'id="user-stage">connected<' in page
    assert 'id="user-status" class="badge status-active">active<' in page
    assert "ACCOUNT_CONNECTED" in page and "IDENTITY_ADDED" in page
    assert page.count('class="source source-webhook">webhook<') >= 4  # 3 events, 1 account
    assert "abccorp" in page or "providers" in page.lower()
    assert "identity" in page
    assert "Notices are off" in page
    # no Temporal UI URL configured: no link
    assert "Temporal's web UI" not in page
    # the nav's "open a user" goes there; nonsense is refused inline
    opened = await http.get(f"/console/open?user_id={user}")
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/console/onboardings/{user}"
    bad = await http.get("/console/open?user_id=%3Cscript%3E")
    assert bad.status_code == 422 and "<script>" not in bad.text
    missing = await http.get(f"/console/onboardings/{unique_user()}")
    assert missing.status_code == 404 and "no onboarding for user" in missing.text
    assert_console_headers(missing)


async def test_a_temporal_ui_link_when_configured(
    dev_env: WorkflowEnvironment, dev_worker: None, api_settings: Settings
) -> None:
    settings = api_settings.model_copy(update={"temporal_ui_url": "http://127.0.0.1:8233/"})
    app = create_app(settings, dev_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:  # fmt: skip
        user = unique_user()
        await send_webhooks(client, user, "ACCOUNT_CREATED")
        await eventually(lambda: view_of(client, user))
        await sign_in(client)
        page = (await client.get(f"/console/onboardings/{user}")).text
    namespace = dev_env.client.namespace
    assert (
        f'href="http://127.0.0.1:8233/namespaces/{namespace}/workflows/onboarding-{user}"' in page
    )


async def test_who_is_stuck_lists_the_filter_oldest_first(http: httpx.AsyncClient) -> None:
    users = []
    for _ in range(3):
        user = unique_user()
        await send_webhooks(http, user, "ACCOUNT_CREATED")
        users.append(user)
        await eventually(lambda user=user: view_of(http, user))  # type: ignore[misc]
    await sign_in(http)

    async def listed() -> list[str]:
        """Every user the filter lists, page after page, in the order shown."""
        shown: list[str] = []
        url: str | None = "/console/stuck?stage=account_created&status=active&page_size=50"
        while url is not None:
            html = await http.get(url)
            assert html.status_code == 200
            shown += re.findall(r'<tr data-user="([^"]+)"', html.text)
            following = re.search(r'<a rel="next" href="([^"]+)"', html.text)
            url = following.group(1).replace("&amp;", "&") if following else None
        assert all(user in shown for user in users)
        return shown

    shown = await eventually(listed)
    # The first to enter its stage comes first, across pages, and nobody is shown twice.
    assert [u for u in shown if u in users] == users
    assert len(shown) == len(set(shown))
    # Those waiting longer than a day: none of these three.
    long_waiting = await http.get("/console/stuck?stage=account_created&waiting=1d")
    assert long_waiting.status_code == 200
    assert not any(user in long_waiting.text for user in users)
    assert 'value="1d"' in long_waiting.text
    assert (await http.get("/console/stuck?waiting=soon")).status_code == 422
    assert (await http.get("/console/stuck?page_size=51")).status_code == 422
    assert (await http.get("/console/stuck?stage=nowhere")).status_code == 422
    assert (await http.get("/console/stuck?page_token=bm9wZQ")).status_code == 400
    # paged: one per page, a link to the next
    first = await http.get("/console/stuck?stage=account_created&status=active&page_size=1")
    assert first.text.count("data-user=") == 1 and 'rel="next"' in first.text


# --- actions ------------------------------------------------------------------------------------


async def test_actions_confirm_what_they_did(http: httpx.AsyncClient) -> None:
    user = await start_onboarding(http)
    csrf = await sign_in(http)
    hx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    base = f"/console/onboardings/{user}"

    response = await http.post(f"{base}/timeouts",
                               data={"stall_connected": "12h", "expire_after": "3d"},
                               headers=hx)  # fmt: skip
    assert response.status_code == 200
    assert "Timeouts changed" in response.text
    assert "stall timeout for connected: 12h" in response.text
    assert response.headers["hx-trigger"] == "onboarding-changed"
    assert "<html" not in response.text  # a fragment for htmx to swap

    response = await http.post(f"{base}/reconcile", headers=hx)
    assert response.status_code == 200 and "Reconciled with Smile" in response.text

    response = await http.post(f"{base}/link-token", headers=hx)
    assert response.status_code == 200 and "Shown once" in response.text
    token = re.search(r'id="issued-link-token">([^<]+)<', response.text)
    assert token and len(token.group(1)) > 8
    assert_console_headers(response)  # no-store: the token is never cached

    response = await http.post(f"{base}/cancel", data={"reason": "duplicate applicant",
                                                      "confirm": "yes"}, headers=hx)  # fmt: skip
    assert response.status_code == 200 and "Cancelled. Status now cancelled" in response.text
    view = await view_of(http, user)
    assert (view["status"], view["statusReason"]) == ("cancelled", "duplicate applicant")
    assert view["timeouts"]["stall"]["connected"] == 12 * 3600

    # without JavaScript: the whole page, the result beside its form
    response = await http.post(f"{base}/reconcile", data={"csrf_token": csrf})
    assert response.status_code == 409 and "<html" in response.text
    assert "has already ended" in response.text


@pytest.mark.parametrize(
    ("action", "form", "status", "message"),
    [
        ("timeouts", {"stall_created": "soon"}, 422, "invalid duration"),
        ("timeouts", {"stall_created": "0s"}, 422, "must be a positive number"),
        ("timeouts", {}, 422, "give at least one duration"),
        ("timeouts", {"expire_after": "99999d"}, 422, "too large"),
        ("cancel", {"reason": "no box ticked"}, 422, "tick the box to confirm"),
        ("cancel", {"reason": "x" * 501, "confirm": "yes"}, 422, "at most 500"),
    ],
)
async def test_invalid_forms_are_refused_inline_and_change_nothing(
    http: httpx.AsyncClient, action: str, form: dict[str, str], status: int, message: str
) -> None:
    user = await start_onboarding(http)
    before = await view_of(http, user)
    csrf = await sign_in(http)
    response = await http.post(f"/console/onboardings/{user}/{action}", data=form,
                               headers={"X-CSRF-Token": csrf, "HX-Request": "true"})  # fmt: skip
    assert response.status_code == status
    assert message in response.text and 'class="result error"' in response.text
    assert "hx-trigger" not in response.headers
    after = await view_of(http, user)
    assert (after["status"], after["timeouts"]) == (before["status"], before["timeouts"])


async def test_an_action_on_an_unknown_user_is_404_inline(http: httpx.AsyncClient) -> None:
    csrf = await sign_in(http)
    response = await http.post(f"/console/onboardings/{unique_user()}/reconcile",
                               headers={"X-CSRF-Token": csrf, "HX-Request": "true"})  # fmt: skip
    assert response.status_code == 404 and "no onboarding for user" in response.text


async def test_the_link_token_is_never_logged(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    user = await start_onboarding(http)
    csrf = await sign_in(http)
    # INFO, as the service runs (the Temporal SDK's own DEBUG lines show activity results).
    with caplog.at_level(logging.INFO):
        response = await http.post(
            f"/console/onboardings/{user}/link-token",
            headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
        )
    token = re.search(r'id="issued-link-token">([^<]+)<', response.text)
    assert token
    assert any("link_token for user" in record.getMessage() for record in caplog.records)
    leaks = [r.name for r in caplog.records if token.group(1) in r.getMessage()]
    assert not leaks, leaks
    assert all(csrf not in record.getMessage() for record in caplog.records)


async def test_a_page_without_javascript_still_works(http: httpx.AsyncClient) -> None:
    user = await start_onboarding(http)
    await sign_in(http)
    page = (await http.get(f"/console/onboardings/{user}")).text
    csrf = csrf_of(page)
    for action in ("timeouts", "reconcile", "link-token", "cancel"):
        assert f'action="/console/onboardings/{user}/{action}" method="post"' in page
    response = await http.post(f"/console/onboardings/{user}/timeouts",
                               data={"csrf_token": csrf, "stall_created": "2h"})  # fmt: skip
    assert response.status_code == 200
    assert "Timeouts changed" in response.text and "<html" in response.text


async def test_a_form_with_too_many_fields_is_refused(http: httpx.AsyncClient) -> None:
    crowded = {f"field{i}": "x" for i in range(40)}
    response = await http.post("/console/sign-in", data={**crowded, "token": ADMIN_TOKEN})
    assert response.status_code == 422 and "set-cookie" not in response.headers
    assert_console_headers(response)


async def test_the_funnel_counts_those_stalled_in_each_stage(
    console_app: FastAPI, http: httpx.AsyncClient
) -> None:
    user = await start_onboarding(http, timeouts={"stall": {"created": "1s"}})

    async def stalled() -> None:
        assert (await view_of(http, user))["status"] == "stalled"

    await eventually(stalled, timeout=20)
    onboardings = console_app.state.onboardings
    await sign_in(http)

    def stalled_in_created(html: str) -> int:
        row = html.split('id="stage-created"', 1)[1].split("</tr>", 1)[0]
        cell = row.split('data-cell="stalled">', 1)[1]
        return int(re.sub(r"<[^>]+>", "", cell).split()[0])

    async def counted() -> None:
        expected = await onboardings.count(Stage.CREATED, Status.STALLED)
        assert expected >= 1
        html = (await http.get("/console/fragments/funnel")).text
        assert stalled_in_created(html) == expected
        assert '/console/stuck?stage=created&amp;status=stalled"' in html

    await eventually(counted, timeout=30)  # cached figures meet the live count
    stuck = (await http.get("/console/stuck?stage=created&status=stalled&page_size=50")).text
    assert f'data-user="{user}"' in stuck
