"""The console's plumbing: templates, the headers on every console response, the session and
CSRF checks as dependencies, form bodies, and how errors are shown (a page, or a fragment that
htmx swaps in place)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from api.client_ip import allowed, client_ip
from api.console import session as sessions
from api.console import views
from api.errors import status_for
from api.problems import describe_validation_error
from onboarding.service.onboardings import (
    OnboardingError,
)
from onboarding.service.settings import Settings

logger = logging.getLogger("onboarding.api.console")

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
STATIC_PATH = f"{PREFIX}/static"

# No inline script or style anywhere: htmx is configured by a meta tag, CSS is a static file.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NO_STORE = "no-store"


def _label(value: object) -> str:
    """``account_created`` reads ``account created``."""
    return str(value).replace("_", " ")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(label=_label, when=views.when, age=views.human_age, duration=views.duration)
    env.globals.update(relative=views.relative, prefix=PREFIX)
    return env


templates = Jinja2Templates(env=_environment())


class NoStoreStatic(StaticFiles):
    """htmx, the stylesheet and the icon: nothing personal, but sniffing stays off."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def static_files() -> StaticFiles:
    return NoStoreStatic(directory=HERE / "static")


# --- who is asking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    key: bytes
    session: sessions.Session

    @property
    def csrf(self) -> str:
        return sessions.csrf_token(self.key, self.session)

    @property
    def tag(self) -> str:
        """A short name for the session in logs (part of its nonce: proves nothing)."""
        return self.session.nonce[:8]


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in, fragments and POSTs answer 401."""


class CsrfRefused(Exception):
    """A POST without its session's CSRF token: 403, and nothing is done."""


class FormError(Exception):
    """What the operator typed cannot be used; shown next to the form (422)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def now() -> datetime:
    return datetime.now(UTC)


def current_session(request: Request) -> SignedIn | None:
    settings = _settings(request)
    key = sessions.session_key(settings.admin_tokens)
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    found = sessions.verify(key, cookie, now(), settings.console_session_ttl)
    if key is None or found is None:
        return None
    return SignedIn(key, found)


async def require_session(request: Request) -> SignedIn:
    signed_in = current_session(request)
    if signed_in is None:
        raise NotSignedIn()
    return signed_in


SignedInDep = Annotated[SignedIn, Depends(require_session)]

_MAX_FIELDS = 32


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what browsers and htmx send); the body
    size is already bounded by the app's limit. The first value of each field wins."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        fields = parse_qsl(body, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:
        raise FormError(["more fields than any console form has"]) from None
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name, value)
    return form


async def checked_form(request: Request, signed_in: SignedInDep) -> dict[str, str]:
    """The form of a POST whose CSRF token (``X-CSRF-Token`` from htmx, or the hidden
    ``csrf_token`` field without JavaScript) is this session's; otherwise 403."""
    form = await read_form(request)
    presented = request.headers.get("x-csrf-token") or form.get("csrf_token")
    if not sessions.csrf_ok(signed_in.key, signed_in.session, presented):
        logger.warning("console: %s %s refused: bad CSRF token", request.method, request.url.path)
        raise CsrfRefused()
    return form


FormDep = Annotated[dict[str, str], Depends(checked_form)]


def caller(request: Request) -> str:
    """The caller's address for the logs (``X-Forwarded-For`` only from a trusted proxy)."""
    peer = request.client.host if request.client else None
    found = client_ip(peer, request.headers.get("x-forwarded-for"),
                      request.app.state.trusted_proxies)  # fmt: skip
    return found or "?"


def served_over_https(request: Request) -> bool:
    """HTTPS to this process, or a trusted proxy (``ONBOARDING_TRUSTED_PROXIES``) saying the
    browser used it. The cookie is then ``Secure``."""
    if request.url.scheme == "https":
        return True
    trusted = request.app.state.trusted_proxies
    peer = request.client.host if request.client else None
    if not trusted or not allowed(peer, trusted):
        return False
    proto = request.headers.get("x-forwarded-proto", "")
    return "https" in (part.strip().lower() for part in proto.split(","))


_NEXT = re.compile(r"/console(/[A-Za-z0-9._:@~-]+)*/?(\?[A-Za-z0-9._:@~=&%+-]*)?")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only a console path (no ``..``, no percent-escapes in the
    path, which a browser would decode), never another site."""
    if value and _NEXT.fullmatch(value):
        path = value.split("?", 1)[0]
        segments = path.split("/")
        if ".." not in segments and "." not in segments and not path.startswith(f"{PREFIX}/sign-"):
            return value
    return PREFIX


# --- rendering ----------------------------------------------------------------------------------


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def wants_fragment(request: Request) -> bool:
    return is_htmx(request) or "/fragments/" in request.url.path


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    signed_in: SignedIn | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "signed_in": signed_in is not None,
        "csrf": signed_in.csrf if signed_in is not None else None,
        "now": now(),
        "section": None,
    }
    values.update(context or {})
    response = templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=dict(headers or {})
    )
    return response


def problem(
    request: Request, status_code: int, message: str, *, title: str | None = None
) -> HTMLResponse:
    """An error, as a fragment for htmx to swap in place or as a page."""
    title = title or HTTPStatus(status_code).phrase
    context = {"title": title, "message": message, "status": status_code}
    name = "_problem.html" if wants_fragment(request) else "problem.html"
    return render(request, name, context, status_code=status_code,
                  signed_in=current_session(request))  # fmt: skip


def _not_signed_in(request: Request) -> Response:
    if request.method == "GET" and not wants_fragment(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='/')}", 303)
    context = {"title": "Signed out", "message": "Sign in to see this.", "status": 401}
    name = "_problem.html" if wants_fragment(request) else "problem.html"
    return render(request, name, context, status_code=401)


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = NO_STORE
    return response


class ConsoleRoute(APIRoute):
    """Every console route: its errors shown as HTML (never the JSON problem details), and the
    security headers on whatever it answers, redirects and errors included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await handle(request)
            except NotSignedIn:
                response = _not_signed_in(request)
            except CsrfRefused:
                response = problem(request, 403, "Refused: this form's CSRF token is missing or "
                                   "wrong. Reload the page and try again.")  # fmt: skip
            except RequestValidationError as err:
                response = problem(request, 422, describe_validation_error(err))
            except FormError as err:
                response = problem(request, 422, str(err))
            except OnboardingError as err:
                response = problem(request, status_for(err), str(err))
            except StarletteHTTPException as err:
                detail = err.detail if isinstance(err.detail, str) else None
                response = problem(request, err.status_code,
                                   detail or HTTPStatus(err.status_code).phrase)  # fmt: skip
            return _secure(response)

        return handler
