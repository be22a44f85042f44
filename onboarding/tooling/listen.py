"""``onboarding listen``: a local receiver for the service's notices, in the spirit of
``stripe listen``. It verifies each POST as the customer's backend would (Standard Webhooks,
with the ``standardwebhooks`` library: any configured secret may verify), prints one line per
notice and answers ``204``; a ``webhook-id`` already seen in this run is printed as a duplicate
(or, when it was never acknowledged, as a retry) and answered the same way. A bad or missing
signature or a stale timestamp is ``401`` and printed as rejected, without the body; a signed
body that is not JSON is ``400``. ``--answer STATUS`` answers every verified notice with that
status instead (``503`` to watch the retries, ``410`` to watch a refusal)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onboarding.service.settings import check_notify_secret
from onboarding.tooling.devserver import ensure_port_free
from onboarding.tooling.discovery import DevTarget, reachable_url
from onboarding.tooling.serving import start_server, stop_server

DEFAULT_PORT = 8010
DEFAULT_HOST = "127.0.0.1"
MAX_BODY_BYTES = 1024 * 1024  # a notice is a few hundred bytes
SEEN_LIMIT = 100_000  # webhook ids remembered for duplicates, at most (the oldest go first)
TOLERANCE = "5 minutes"  # the standardwebhooks library's, for the messages

Outcome = Literal["notice", "duplicate", "retry", "rejected", "invalid"]


class ListenError(RuntimeError):
    """``onboarding listen`` cannot start; the message says what to do."""


@dataclass(frozen=True)
class Heard:
    """One request, as the listener judged it."""

    at: datetime
    outcome: Outcome  # notice: first time; duplicate: seen and acknowledged before;
    # retry: seen before, never acknowledged; rejected: not verified; invalid: verified, not JSON
    status: int  # what it was answered
    webhook_id: str | None
    body: Any = None  # the parsed body, only once verified
    reason: str | None = None  # why rejected or invalid
    delivery: int = 1  # how many times this webhook-id has arrived in this run


Printer = Callable[[Heard], None]


# --- verifying -------------------------------------------------------------------------------


def _reason(err: Exception) -> str:
    """The library's message, in the listener's words."""
    message = str(err)
    if isinstance(err, WebhookVerificationError):
        if message == "Missing required headers":
            return "missing webhook-id, webhook-timestamp or webhook-signature"
        if message == "Message timestamp too old":
            return f"stale timestamp (more than {TOLERANCE} old)"
        if message == "Message timestamp too new":
            return f"timestamp in the future (more than {TOLERANCE} ahead)"
        if message == "No matching signature found":
            return "no signature matches the secret(s)"
        if message == "Invalid Signature Headers":
            return "unreadable webhook-timestamp"
        return message
    return "malformed webhook-signature"  # a ValueError from taking the header apart


def verify(webhooks: Sequence[Webhook], body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when one of the secrets verifies ``body`` under ``headers``, else why not."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "the body is not UTF-8, so no signature can match"
    plain = dict(headers)
    first: str | None = None
    for webhook in webhooks:
        try:
            webhook.verify(text, plain, json_parse=False)
        except (WebhookVerificationError, ValueError) as err:
            first = first or _reason(err)
            continue
        return None
    return first or "no secret to verify with"


def webhooks_for(secrets: Sequence[str]) -> list[Webhook]:
    """One verifier per secret; a secret that is not ``whsec_`` + base64 of enough bytes is a
    :class:`ListenError` naming its position, never its value."""
    if not secrets:
        raise ListenError("no secret to verify notices with")
    verifiers = []
    for position, secret in enumerate(secrets, start=1):
        try:
            check_notify_secret(secret, position)
            verifiers.append(Webhook(secret))
        except ValueError as err:
            raise ListenError(str(err)) from None
    return verifiers


# --- the app ---------------------------------------------------------------------------------


class _Seen:
    """Webhook ids of this run: how many times each arrived, and whether one was acknowledged."""

    def __init__(self, limit: int = SEEN_LIMIT) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, tuple[int, bool]] = OrderedDict()

    def arrive(self, webhook_id: str) -> tuple[int, bool]:
        """This arrival's number, and whether an earlier one was acknowledged."""
        deliveries, acknowledged = self._ids.pop(webhook_id, (0, False))
        self._ids[webhook_id] = (deliveries + 1, acknowledged)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return deliveries + 1, acknowledged

    def answered(self, webhook_id: str, status: int) -> None:
        deliveries, acknowledged = self._ids.get(webhook_id, (1, False))
        self._ids[webhook_id] = (deliveries, acknowledged or 200 <= status < 300)


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None beyond ``limit`` bytes (stops reading there)."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_listener_app(
    secrets: Sequence[str],
    printer: Printer,
    *,
    answer: int | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The receiver: POST on any path. ``answer``: the status for every verified notice
    (default ``204``)."""
    if answer is not None and not 200 <= answer <= 599:
        raise ListenError(f"--answer {answer}: give an HTTP status from 200 to 599")
    webhooks = webhooks_for(secrets)
    seen = _Seen()
    status_for_notices = answer if answer is not None else 204

    async def receive(request: Request) -> Response:
        at = datetime.now(UTC)
        webhook_id = request.headers.get("webhook-id") or None
        body = await _read_body(request, max_body_bytes)
        if body is None:
            printer(Heard(at, "rejected", 413, webhook_id, reason="body too large"))
            return _problem(413, "Content Too Large", f"a notice is at most {max_body_bytes} bytes")
        problem = verify(webhooks, body, request.headers)
        if problem is not None:
            printer(Heard(at, "rejected", 401, webhook_id, reason=problem))
            return _problem(401, "Unauthorized", f"not verified: {problem}")
        webhook_id = webhook_id or ""  # verified: the header is there
        try:
            parsed = json.loads(body)
        except ValueError:
            printer(Heard(at, "invalid", 400, webhook_id, reason="signed, but not JSON"))
            return _problem(400, "Bad Request", "the body is not JSON")
        delivery, acknowledged = seen.arrive(webhook_id)
        outcome: Outcome = "notice"
        if delivery > 1:
            outcome = "duplicate" if acknowledged else "retry"
        status = status_for_notices
        seen.answered(webhook_id, status)
        printer(Heard(at, outcome, status, webhook_id, body=parsed, delivery=delivery))
        if 200 <= status < 300:
            return Response(status_code=status)
        return _problem(status, "Answered by onboarding listen", f"--answer {status}")

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


# --- printing --------------------------------------------------------------------------------


def _clean(value: object, limit: int = 120) -> str:
    """Text from a request, safe for a terminal: no control characters, bounded."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(heard: Heard) -> str:
    """One readable line."""
    time = heard.at.astimezone().strftime("%H:%M:%S")
    webhook_id = _clean(heard.webhook_id) if heard.webhook_id else "-"
    if heard.outcome in ("rejected", "invalid"):
        return (
            f"{time}  {heard.outcome:<9}  {heard.reason}  webhook-id={webhook_id}  → {heard.status}"
        )
    body: dict[str, Any] = heard.body if isinstance(heard.body, dict) else {}
    raw_data = body.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    fields = [
        f"userId={_clean(data.get('userId', '?'))}",
        f"sequence={_clean(data.get('sequence', '?'))}",
    ]
    for key in ("stage", "status"):
        if key in data:
            fields.append(f"{key}={_clean(data[key])}")
    again = f" (delivery {heard.delivery})" if heard.delivery > 1 else ""
    return (
        f"{time}  {heard.outcome:<9}  {_clean(body.get('type', '?')):<24}  {' '.join(fields)}"
        f"  webhook-id={webhook_id}{again}  → {heard.status}"
    )


class ConsolePrinter:
    """Readable lines on ``out``; with ``json_lines``, each new notice's body as one JSON line on
    ``out`` and everything else (duplicates, retries, rejections) as readable lines on ``err``,
    so ``onboarding listen --json | jq …`` sees only notices."""

    def __init__(
        self, *, json_lines: bool = False, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.json_lines = json_lines
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr

    def __call__(self, heard: Heard) -> None:
        if self.json_lines and heard.outcome == "notice":
            line = json.dumps(heard.body, ensure_ascii=False, separators=(",", ":"))
            print(line, file=self.out, flush=True)
        else:
            stream = self.err if self.json_lines else self.out
            print(describe(heard), file=stream, flush=True)

    @property
    def info(self) -> TextIO:
        """Where the banner goes: off the JSON stream."""
        return self.err if self.json_lines else self.out


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenOptions:
    secrets: tuple[str, ...]
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    json_lines: bool = False
    answer: int | None = None
    secrets_from: str = "--secret"  # where the secrets came from, for the banner
    hint: str | None = None  # a line about the running dev, for the banner


def listen_options(
    target: DevTarget,
    flag_secrets: Sequence[str] | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    json_lines: bool = False,
    answer: int | None = None,
) -> ListenOptions:
    """The secrets to verify with: ``--secret`` (repeatable), else ``ONBOARDING_NOTIFY_SECRET``,
    else the running (or last) ``onboarding dev``'s from its data directory. None at all: a
    :class:`ListenError` saying what to do."""
    settings = target.settings
    if flag_secrets:
        secrets = tuple(flag_secrets)
        source = "--secret"
    elif settings.notify_secrets:
        secrets = tuple(s.get_secret_value() for s in settings.notify_secrets)
        if "notify_secrets" in target.secrets_used:
            running = "the running onboarding dev's" if target.dev else "onboarding dev's"
            source = f"{running}, from {target.secrets_file}"
        else:
            source = "ONBOARDING_NOTIFY_SECRET"
    else:
        dev = target.dev
        if dev is not None and "ONBOARDING_NOTIFY_SECRET" in dev.secrets_from_environment:
            raise ListenError(
                "the running onboarding dev signs notices with the ONBOARDING_NOTIFY_SECRET of "
                "its own shell: set the same here, or pass it with --secret whsec_…"
            )
        raise ListenError(
            "no secret to verify notices with: start `onboarding dev` (from this directory, "
            f"or with ONBOARDING_DATA_DIR; it keeps one in {settings.data_dir / 'secrets.json'}) "
            "or pass --secret whsec_… (or set ONBOARDING_NOTIFY_SECRET)"
        )
    webhooks_for(secrets)  # a bad secret fails here, before the port is taken
    hint = None
    if target.dev is not None and target.dev.notice_endpoints == 0:
        hint = (
            "the running onboarding dev sends no notices: restart it as "
            f"ONBOARDING_NOTIFY_URL={reachable_url(host, port, '/')} onboarding dev"
        )
    return ListenOptions(
        secrets=secrets,
        host=host,
        port=port,
        json_lines=json_lines,
        answer=answer,
        secrets_from=source,
        hint=hint,
    )


def _bound_port(server: Any, fallback: int) -> int:
    """The port the server listens on (``--port 0`` lets the system choose)."""
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return fallback


async def run_listener(options: ListenOptions, printer: ConsolePrinter | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then return (``onboarding listen`` exits 0)."""
    printer = printer if printer is not None else ConsolePrinter(json_lines=options.json_lines)
    app = create_listener_app(options.secrets, printer, answer=options.answer)
    if options.port:
        ensure_port_free(options.host, options.port, "onboarding listen", "--port")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        server, task = await start_server(app, options.host, options.port)
        url = reachable_url(options.host, _bound_port(server, options.port), "/")
        count = len(options.secrets)
        answering = (
            f"{options.answer} to every verified notice (--answer)"
            if options.answer is not None
            else "204 (try --answer 503 to watch retries, --answer 410 for a refusal)"
        )
        lines = [
            f"onboarding listen: ready on {url}",
            f"  Verifying with     {count} secret{'s' if count > 1 else ''} "
            f"({options.secrets_from})",
            f"  Answering          {answering}",
            f"  Point notices here ONBOARDING_NOTIFY_URL={url}",
        ]
        if options.hint:
            lines.append(f"  Note               {options.hint}")
        lines.append("Ctrl-C stops.")
        print("\n".join(lines), file=printer.info, flush=True)
        stop_task = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        await stop_server(server, task)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
