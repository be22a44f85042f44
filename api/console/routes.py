"""The operator console's pages and actions, under ``/console``. Each action goes through the
service layer (``Onboardings``) exactly as the JSON API does; these routes only translate a form
into that call and its outcome (or its error) into HTML."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.client_ip import caller_key
from api.console import session as sessions
from api.console import views
from api.console.web import (
    PREFIX,
    ConsoleRoute,
    FormDep,
    FormError,
    SignedIn,
    SignedInDep,
    caller,
    current_session,
    is_htmx,
    logger,
    now,
    problem,
    read_form,
    render,
    safe_next,
    served_over_https,
)
from api.deps import OnboardingsDep, SettingsDep
from api.errors import status_for
from onboarding.core.durations import format_duration, parse_duration
from onboarding.core.identity import USER_ID_PATTERN
from onboarding.core.models import (
    STALLABLE_STAGES,
    OnboardingView,
    Stage,
    Status,
    TimeoutsChange,
    check_timeouts_change,
)
from onboarding.core.selection import OnboardingFilter
from onboarding.core.throttle import FailureThrottle
from onboarding.service.caching import TtlCache
from onboarding.service.listing import ListOrder, OnboardingSummary
from onboarding.service.onboardings import (
    Funnel,
    IssuedToken,
    OnboardingError,
    Onboardings,
    TemporalUnavailable,
)
from onboarding.service.settings import Settings

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)

UserId = Annotated[str, Path(pattern=USER_ID_PATTERN)]
PAGE_SIZE = 25
MAX_PAGE_SIZE = 50
VIEW_CONCURRENCY = 8  # state queries in flight at once for one page of the stuck list
REASON_MAX = 500


# --- doors ------------------------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_form(
    request: Request, next_: Annotated[str | None, Query(alias="next", max_length=512)] = None
) -> Response:
    return render(request, "sign_in.html", {"next": safe_next(next_), "error": None})


@router.post("/sign-in")
async def sign_in(request: Request, settings: SettingsDep) -> Response:
    """The admin token in, a signed session cookie out (never the token itself). No CSRF token
    here, there is no session yet: the form's own secret is the admin token."""
    form = await read_form(request)
    target = safe_next(form.get("next"))
    throttle: FailureThrottle = request.app.state.sign_in_throttle
    address, moment = caller(request), now()
    who = caller_key(address)
    wait = throttle.retry_after(who, moment)
    if wait is not None:  # refused before the token is even compared
        seconds = max(int(wait.total_seconds() + 0.999), 1)
        logger.warning("console: sign-in throttled (from %s)", address)
        context = {"next": target, "error": "Too many failed sign-ins from this address: "
                   f"try again in {views.human_age(wait)}."}  # fmt: skip
        return render(request, "sign_in.html", context, status_code=429,
                      headers={"Retry-After": str(seconds)})  # fmt: skip
    key = sessions.session_key(settings.admin_tokens)
    token = form.get("token", "")
    if key is None or not token or not sessions.token_matches(settings.admin_tokens, token):
        throttle.failed(who, moment)
        logger.warning("console: sign-in refused (from %s)", address)
        context = {"next": target, "error": "That is not an admin token."}
        return render(request, "sign_in.html", context, status_code=401)
    throttle.succeeded(who)
    cookie, session = sessions.issue(key, moment)
    logger.info("console: signed in (session %s)", session.nonce[:8])
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sessions.COOKIE_NAME,
        cookie,
        max_age=int(settings.console_session_ttl.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=served_over_https(request),
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """Forgets the cookie. A live session must show its CSRF token (one site cannot sign an
    operator out of another); without one there is nothing to protect."""
    signed_in = current_session(request)
    if signed_in is not None:
        form = await read_form(request)
        presented = request.headers.get("x-csrf-token") or form.get("csrf_token")
        if not sessions.csrf_ok(signed_in.key, signed_in.session, presented):
            return problem(request, 403, "Refused: this form's CSRF token is missing or wrong.")
        logger.info("console: signed out (session %s)", signed_in.tag)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(sessions.COOKIE_NAME, path=PREFIX, httponly=True, samesite="strict",
                           secure=served_over_https(request))  # fmt: skip
    return response


# --- the funnel -------------------------------------------------------------------------------


# The funnel's figures (~16 visibility counts) are kept this many seconds, for the whole app:
# every open tab polls the fragment every 5 s, and they share one count per FUNNEL_TTL.
FUNNEL_TTL = 5.0
FunnelFigures = tuple[Funnel, dict[Stage, int]]  # the funnel, and the stalled by stage


def funnel_cache(request: Request) -> TtlCache[FunnelFigures]:
    """The app's one cache of the funnel's figures, made on first use."""
    state = request.app.state
    cache: TtlCache[FunnelFigures] | None = getattr(state, "funnel_cache", None)
    if cache is None:
        cache = state.funnel_cache = TtlCache(FUNNEL_TTL)
    return cache


async def _funnel_figures(onboardings: Onboardings) -> FunnelFigures:
    stalled = asyncio.gather(
        *(onboardings.count(stage, Status.STALLED) for stage in STALLABLE_STAGES)
    )
    funnel, counts = await asyncio.gather(onboardings.funnel(), stalled)
    return funnel, dict(zip(STALLABLE_STAGES, counts, strict=True))


async def _funnel_context(request: Request, onboardings: Onboardings) -> dict[str, Any]:
    funnel, stalled = await funnel_cache(request).get(lambda: _funnel_figures(onboardings))
    return {"funnel": funnel, "rows": views.funnel_rows(funnel, stalled)}


@router.get("")
async def funnel_page(
    request: Request, signed_in: SignedInDep, onboardings: OnboardingsDep
) -> Response:
    context = await _funnel_context(request, onboardings)
    return render(request, "funnel.html", {**context, "section": "funnel"}, signed_in=signed_in)


@router.get("/fragments/funnel")
async def funnel_fragment(
    request: Request, signed_in: SignedInDep, onboardings: OnboardingsDep
) -> Response:
    return render(request, "_funnel.html", await _funnel_context(request, onboardings),
                  signed_in=signed_in)  # fmt: skip


# --- who is stuck -----------------------------------------------------------------------------

ANY = "any"


def _choice(value: str, kind: type[Stage] | type[Status], name: str) -> Any:
    if value in ("", ANY):
        return None
    try:
        return kind(value)
    except ValueError:
        raise FormError([f"{name}: unknown value {value[:40]!r}"]) from None


def _age_choice(value: str) -> timedelta | None:
    if not value.strip():
        return None
    try:
        age = parse_duration(value)
    except ValueError as err:
        raise FormError([f"waiting longer than: {err}"]) from None
    if age <= timedelta(0):
        raise FormError(["waiting longer than: give a positive duration such as 6h"])
    return age


async def _stuck_rows(
    onboardings: Onboardings, items: list[OnboardingSummary], at: datetime
) -> list[views.StuckRow]:
    """Each row's state (for the time it entered its stage), a few queries at a time."""
    limit = asyncio.Semaphore(VIEW_CONCURRENCY)

    async def one(summary: OnboardingSummary) -> views.StuckRow:
        async with limit:
            try:
                view = await onboardings.get(summary.user_id)
            except OnboardingError as err:
                # The list itself answered, so Temporal is up: a state that cannot be read
                # (no worker for its task queue, say) is that row's problem, not the page's.
                return views.StuckRow(summary, None, views.summary_age(summary), str(err))
        return views.StuckRow(summary, view, views.age_in_stage(view, at))

    # The service's order (longest in stage first) is kept: it spans pages, not just this one.
    return list(await asyncio.gather(*(one(item) for item in items)))


@router.get("/stuck")
async def stuck_page(
    request: Request,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    stage: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=32)] = Status.STALLED.value,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
    waiting: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Who is stuck: onboardings in the chosen stage and status, longest in their stage first
    across all pages (by the ``OnboardingStageEnteredAt`` search attribute), optionally only
    those waiting longer than a duration; each row's state is read for its deadlines."""
    stage_value = _choice(stage, Stage, "stage")
    status_value = _choice(status, Status, "status")
    age = _age_choice(waiting)
    moment = now()
    selection = OnboardingFilter(
        stage=stage_value,
        status=status_value,
        entered_stage_before=moment - age if age is not None else None,
    )
    page = await onboardings.list(
        page_size=page_size,
        page_token=page_token or None,
        selection=selection,
        order=ListOrder.LONGEST_IN_STAGE,
    )
    rows = await _stuck_rows(onboardings, page.items, moment)
    context = {
        "section": "stuck",
        "rows": rows,
        "stage": stage_value,
        "status": status_value,
        "page_size": page_size,
        "waiting": format_duration(age) if age is not None else "",
        "next_page_token": page.next_page_token,
        "first_page": not page_token,
        "stages": list(Stage),
        "statuses": list(Status),
        "now": moment,
    }
    return render(request, "stuck.html", context, signed_in=signed_in)


# --- one user ---------------------------------------------------------------------------------


def user_path(user_id: str) -> str:
    return f"{PREFIX}/onboardings/{quote(user_id, safe='@:.-_')}"


@router.get("/open")
async def open_user(
    signed_in: SignedInDep, user_id: Annotated[str, Query(max_length=256)] = ""
) -> Response:
    user_id = user_id.strip()
    if not re.fullmatch(USER_ID_PATTERN, user_id):
        raise FormError(["not a Smile user id (letters, digits and ._:@- only)"])
    return RedirectResponse(user_path(user_id), status_code=303)


def temporal_link(settings: Settings, onboardings: Onboardings, view: OnboardingView) -> str | None:
    if not settings.temporal_ui_url:
        return None
    base = settings.temporal_ui_url.rstrip("/")
    namespace = quote(onboardings.client.namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows/{quote(view.workflow_id, safe='')}"


@dataclass
class Result:
    """What an action did, or why it did nothing, shown next to its form."""

    ok: bool
    message: str
    details: list[str] = field(default_factory=list)
    issued: IssuedToken | None = None


def _user_context(
    settings: Settings, onboardings: Onboardings, view: OnboardingView
) -> dict[str, Any]:
    return {
        "view": view,
        "temporal_url": temporal_link(settings, onboardings, view),
        "stallable": STALLABLE_STAGES,
        "ended": view.status.is_terminal,
        "events": list(reversed(view.events)),
        "stage_age": views.age_in_stage(view, now()),
        "section": None,
    }


@router.get("/onboardings/{user_id}")
async def user_page(
    request: Request,
    user_id: UserId,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    view = await onboardings.get(user_id)
    context = {**_user_context(settings, onboardings, view), "results": {}}
    return render(request, "onboarding.html", context, signed_in=signed_in)


@router.get("/fragments/onboardings/{user_id}")
async def user_fragment(
    request: Request,
    user_id: UserId,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    view = await onboardings.get(user_id)
    context = _user_context(settings, onboardings, view)
    return render(request, "_details.html", context, signed_in=signed_in)


async def _answer(
    request: Request,
    signed_in: SignedIn,
    onboardings: Onboardings,
    settings: Settings,
    user_id: str,
    action: str,
    result: Result,
    status_code: int,
) -> Response:
    """htmx gets the result alone (and, on success, an event that reloads the details); a
    browser without JavaScript gets the whole page with the result beside its form."""
    if is_htmx(request):
        headers = {"HX-Trigger": "onboarding-changed"} if result.ok else None
        return render(request, "_result.html", {"result": result}, status_code=status_code,
                      signed_in=signed_in, headers=headers)  # fmt: skip
    view = await onboardings.get(user_id)
    context = {**_user_context(settings, onboardings, view), "results": {action: result}}
    return render(request, "onboarding.html", context, status_code=status_code,
                  signed_in=signed_in)  # fmt: skip


async def _act(
    request: Request,
    signed_in: SignedIn,
    onboardings: Onboardings,
    settings: Settings,
    user_id: str,
    action: str,
    run: Any,
) -> Response:
    try:
        result: Result = await run()
        status_code = 200
    except FormError as err:
        result, status_code = Result(False, "Nothing changed.", err.messages), 422
    except TemporalUnavailable:
        raise
    except OnboardingError as err:
        result, status_code = Result(False, str(err)), status_for(err)
    logger.info("console: %s for user %s: %s (session %s)", action, user_id,
                "done" if result.ok else f"refused ({status_code})", signed_in.tag)  # fmt: skip
    return await _answer(request, signed_in, onboardings, settings, user_id, action, result,
                         status_code)  # fmt: skip


def timeouts_change(form: dict[str, str]) -> TimeoutsChange:
    """The timeouts form: a duration per field (``6h``, ``1h30m``, ``90s``); blank ones stay."""
    errors: list[str] = []

    def seconds(name: str, label: str) -> float | None:
        text = form.get(name, "").strip()
        if not text:
            return None
        try:
            return parse_duration(text).total_seconds()
        except ValueError as err:
            errors.append(f"{label}: {err}")
            return None

    stall = {}
    for stage in STALLABLE_STAGES:
        value = seconds(f"stall_{stage.value}", f"stall timeout for {stage.value}")
        if value is not None:
            stall[stage.value] = value
    change = TimeoutsChange(
        stall=stall,
        expire_after=seconds("expire_after", "expire after"),
        settle_window=seconds("settle_window", "settle window"),
    )
    if not errors and not (stall or change.expire_after or change.settle_window):
        errors.append("give at least one duration to change")
    if not errors:
        try:
            check_timeouts_change(change)
        except ValueError as err:
            errors.append(str(err))
    if errors:
        raise FormError(errors)
    return change


@router.post("/onboardings/{user_id}/timeouts")
async def change_timeouts(
    request: Request,
    user_id: UserId,
    form: FormDep,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    async def run() -> Result:
        change = timeouts_change(form)
        timeouts = await onboardings.set_timeouts(user_id, change)
        view = await onboardings.get(user_id)
        details = [
            f"stall timeout for {name}: {views.duration(timeouts.stall.get(Stage(name)))}"
            for name in change.stall
        ]
        if change.expire_after is not None:
            details.append(f"expire after: {views.duration(timeouts.expire_after)}")
        if change.settle_window is not None:
            details.append(f"settle window: {views.duration(timeouts.settle_window)}")
        reason = f" ({view.status_reason})" if view.status_reason else ""
        return Result(True, f"Timeouts changed. Status now {view.status.value}{reason}.", details)

    return await _act(request, signed_in, onboardings, settings, user_id, "timeouts", run)


@router.post("/onboardings/{user_id}/reconcile")
async def reconcile_now(
    request: Request,
    user_id: UserId,
    form: FormDep,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    async def run() -> Result:
        view = await onboardings.reconcile(user_id)
        state = view.reconcile
        details = [
            f"accounts seen {state.accounts_seen}, archives {state.archives_seen}, "
            f"tasks {state.tasks_seen}; facts added so far {state.facts_added}",
            f"stage {view.stage.value}, status {view.status.value}",
        ]
        if state.last_error:
            return Result(False, f"Reconciliation failed: {state.last_error}", details)
        return Result(True, f"Reconciled with Smile (run {state.runs}).", details)

    return await _act(request, signed_in, onboardings, settings, user_id, "reconcile", run)


@router.post("/onboardings/{user_id}/link-token")
async def new_link_token(
    request: Request,
    user_id: UserId,
    form: FormDep,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    async def run() -> Result:
        issued = await onboardings.link_token(user_id)  # never logged, shown once
        return Result(True, "New link token issued.", issued=issued)

    return await _act(request, signed_in, onboardings, settings, user_id, "link_token", run)


@router.post("/onboardings/{user_id}/cancel")
async def cancel(
    request: Request,
    user_id: UserId,
    form: FormDep,
    signed_in: SignedInDep,
    onboardings: OnboardingsDep,
    settings: SettingsDep,
) -> Response:
    async def run() -> Result:
        reason = form.get("reason", "").strip() or "cancelled by operator"
        problems = []
        if form.get("confirm") != "yes":
            problems.append("tick the box to confirm: cancelling ends the onboarding for good")
        if len(reason) > REASON_MAX:
            problems.append(f"reason: at most {REASON_MAX} characters")
        if problems:
            raise FormError(problems)
        view = await onboardings.cancel(user_id, reason)
        return Result(True, f"Cancelled. Status now {view.status.value}.", [f"reason: {reason}"])

    return await _act(request, signed_in, onboardings, settings, user_id, "cancel", run)
