"""A customer's backend for tests: a real HTTP server on a free local port that verifies every
notice it gets with ``standardwebhooks`` (as a receiver would) and answers as scripted.

    async with notice_receiver(secret) as receiver:
        receiver.answer(503, times=2)                  # the next two requests: 503
        receiver.answer(410, user=user, type=STARTED)  # this user's started notice: 410, always
        await receiver.down()                          # connections refused until up()
        await receiver.up()
        receiver.delivered(user)                       # what it accepted (2xx), in arrival order

A request no secret of the receiver's verifies is answered 401 (and recorded as such). Every
request is recorded: its ``webhook-id``, its raw body, which of the receiver's secrets verified
it, and the status it was answered with."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from onboarding.core.models import NoticeType
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import EmbeddedServer, start_server, stop_server

HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes  # the raw bytes, as they came
    verified_by: tuple[str, ...]  # the receiver's secrets whose verify() passed
    status: int  # what the receiver answered

    @property
    def notice(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.notice["data"]
        return data

    @property
    def type(self) -> str:
        kind: str = self.notice["type"]
        return kind

    @property
    def sequence(self) -> int:
        return int(self.data["sequence"])

    @property
    def user_id(self) -> str:
        user: str = self.data["userId"]
        return user

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


@dataclasses.dataclass
class Rule:
    """Answer ``status`` to the requests that match (``user``, ``type``; None matches any),
    ``times`` times (None: always)."""

    status: int
    times: int | None = None
    user: str | None = None
    type: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def matches(self, user: str | None, kind: str | None) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.user in (None, user) and self.type in (None, kind)


class NoticeReceiver:
    """Receives notices at :attr:`url` (which carries a token, as a customer's URL may)."""

    def __init__(self, *secrets: str) -> None:
        if not secrets:
            raise ValueError("a receiver verifies with at least one secret")
        self.secrets = secrets
        self.token = f"tok-{uuid.uuid4().hex}"
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}/notices?token={self.token}"
        self.received: list[Received] = []
        self.rules: list[Rule] = []
        self._verifiers = tuple((secret, Webhook(secret)) for secret in secrets)
        self._app = Starlette(routes=[Route("/notices", self._notice, methods=["POST"])])
        self._server: tuple[EmbeddedServer, Any] | None = None

    # --- scripting ----------------------------------------------------------------------------

    def answer(
        self,
        status: int,
        *,
        times: int | None = None,
        user: str | None = None,
        type: NoticeType | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Rule:
        """From now on, answer ``status`` to matching requests (the earliest rule that matches
        wins; without one: 200)."""
        kind = type.value if isinstance(type, NoticeType) else type
        rule = Rule(status, times, user, kind, dict(headers or {}))
        self.rules.append(rule)
        return rule

    def fix(self, user: str | None = None) -> None:
        """Forget the rules (those for ``user`` only, when given): answer 200 again."""
        self.rules = [r for r in self.rules if user is not None and r.user != user]

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        """Serve (again, on the same port)."""
        if self._server is None:
            self._server = await start_server(self._app, HOST, self.port)

    async def down(self) -> None:
        """Stop serving: connections are refused until :meth:`up`."""
        if self._server is not None:
            server, task = self._server
            self._server = None
            await stop_server(server, task)

    # --- what it got --------------------------------------------------------------------------

    def requests(self, user: str | None = None) -> list[Received]:
        """Every request (for ``user``), in arrival order, whatever it was answered."""
        return [r for r in self.received if user is None or _user_of(r.body) == user]

    def delivered(self, user: str | None = None) -> list[Received]:
        """The notices it accepted (answered 2xx), in arrival order."""
        return [r for r in self.requests(user) if r.delivered]

    # --- the endpoint -------------------------------------------------------------------------

    async def _notice(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        verified = []
        for secret, verifier in self._verifiers:
            try:
                verifier.verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(secret)
        status, extra = 200, {}
        if not verified:
            status = 401
        else:
            rule = next((r for r in self.rules if r.matches(_user_of(body), _type_of(body))), None)
            if rule is not None:
                if rule.times is not None:
                    rule.times -= 1
                status, extra = rule.status, rule.headers
        self.received.append(
            Received(headers.get("webhook-id", ""), headers, body, tuple(verified), status)
        )
        return Response(status_code=status, headers=extra)


def _parsed(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _user_of(body: bytes) -> str | None:
    data = _parsed(body).get("data")
    user = data.get("userId") if isinstance(data, dict) else None
    return user if isinstance(user, str) else None


def _type_of(body: bytes) -> str | None:
    kind = _parsed(body).get("type")
    return kind if isinstance(kind, str) else None


@contextlib.asynccontextmanager
async def notice_receiver(*secrets: str) -> AsyncIterator[NoticeReceiver]:
    """A receiver that is up, verifying with ``secrets``; stopped at the end."""
    receiver = NoticeReceiver(*secrets)
    await receiver.up()
    try:
        yield receiver
    finally:
        await receiver.down()
