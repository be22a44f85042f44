"""Delivering one notice to the customer's backend: a webhook in the Standard Webhooks format
(https://www.standardwebhooks.com), signed by the ``standardwebhooks`` package with every
secret in ``ONBOARDING_NOTIFY_SECRET``, POSTed to every URL in ``ONBOARDING_NOTIFY_URL``.

Each endpoint's answer settles it (2xx: delivered; 3xx and 4xx other than 408 and 429: refused
for good) or asks for a retry (408, 429, 5xx, a network error, a time-out). While any endpoint
asks for a retry, the settled ones are recorded in the activity's heartbeat details and the
attempt fails retryably; the next attempt reads them back and posts only to the others, so a
healthy endpoint gets the notice once while a sick one is retried for days.

Nothing stored, raised or logged here carries a URL (it may hold a token), a response body or a
secret: an endpoint is named by its position in ``ONBOARDING_NOTIFY_URL`` (1-based), a failure
by its HTTP status or the exception's class name."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Protocol

import httpx
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from onboarding.core.models import CamelModel, DeliveryReport, EndpointOutcome, NoticeType

logger = logging.getLogger("onboarding.notify")

# ApplicationError types, recognised by type (the retry policy and the workflow).
NOTICES_NOT_CONFIGURED = "NoticesNotConfigured"  # non-retryable: the worker has no URL
NOTICE_ENDPOINT_UNAVAILABLE = "NoticeEndpointUnavailable"  # retryable: some endpoint said later

# The longest wait between two attempts: the retry policy's maximum interval, and the cap on a
# receiver's Retry-After. Here, not in workflows/policies.py, since activities import no workflow.
NOTICE_MAX_RETRY_INTERVAL = timedelta(hours=6)

# Statuses whose Retry-After is honoured.
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Transient statuses besides 5xx.
_TRANSIENT_STATUSES = frozenset({408, 429})
# At most this much of an answer's body is read (then dropped): enough to keep the connection
# for the next request in the usual case, never a large download.
_READ_AT_MOST = 64 * 1024
USER_AGENT = "smile-onboarding-notices/1"


class OutgoingNotice(CamelModel):
    """One notice as the delivery activity gets it."""

    id: str  # the webhook-id: the same on every attempt and redelivery
    user_id: str
    sequence: int
    type: NoticeType
    body: dict[str, Any]  # {"type", "timestamp", "data"}: sent as compact JSON


class NotifySettings(Protocol):
    """What :meth:`NotifyConfig.from_settings` reads: ``onboarding.service.settings.Settings``
    has these fields (activities do not import the service, so it is named structurally)."""

    @property
    def notify_urls(self) -> Sequence[SecretStr]: ...

    @property
    def notify_secrets(self) -> Sequence[SecretStr]: ...

    @property
    def notify_timeout(self) -> timedelta: ...


@dataclass(frozen=True)
class NotifyConfig:
    """Where notices go and what signs them. Its repr hides both (a URL may carry a token)."""

    urls: tuple[str, ...] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)  # whsec_…; every notice is signed with each
    timeout: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("notices need at least one URL (ONBOARDING_NOTIFY_URL)")
        if not self.secrets:
            raise ValueError(
                "ONBOARDING_NOTIFY_URL is set but ONBOARDING_NOTIFY_SECRET is not: notices "
                "could not be signed (give a whsec_… secret)"
            )
        if self.timeout <= timedelta(0):
            raise ValueError("the notice timeout must be positive")
        for position, secret in enumerate(self.secrets, start=1):
            try:
                Webhook(secret)
            except Exception:  # binascii.Error, EmptyWebhookSecretError…; never echo the value
                raise ValueError(f"notify secret number {position} cannot sign") from None

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> NotifyConfig | None:
        """The worker's configuration, or None when no ``ONBOARDING_NOTIFY_URL`` is set."""
        if not settings.notify_urls:
            return None
        return cls(
            urls=tuple(url.get_secret_value() for url in settings.notify_urls),
            secrets=tuple(secret.get_secret_value() for secret in settings.notify_secrets),
            timeout=settings.notify_timeout,
        )

    @property
    def fingerprint(self) -> str:
        """Names the URL list (order included) without revealing it, so that outcomes recorded
        under another list (the worker restarted with other URLs) are not trusted."""
        digest = hashlib.sha256("\n".join(("notify-urls", *self.urls)).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class _Answer:
    outcome: EndpointOutcome
    transient: bool = False
    retry_after: timedelta | None = None


class NoticeSender:
    """Delivers notices; bound to the worker's configuration and one pooled HTTP client."""

    def __init__(self, config: NotifyConfig | None, http: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._signers = tuple(Webhook(s) for s in config.secrets) if config else ()
        timeout = (config.timeout if config else timedelta(seconds=10)).total_seconds()
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"user-agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        """Close the HTTP client this sender created (one passed in belongs to its owner)."""
        if self._owns_http:
            await self._http.aclose()

    @activity.defn(name="deliver_notice")
    async def deliver(self, notice: OutgoingNotice) -> DeliveryReport:
        config = self._config
        if config is None:
            raise ApplicationError(
                "this worker cannot send notices: set ONBOARDING_NOTIFY_URL and "
                "ONBOARDING_NOTIFY_SECRET on the worker, then redeliver",
                type=NOTICES_NOT_CONFIGURED,
                non_retryable=True,
            )
        info = activity.info()
        settled = _settled_before(info.heartbeat_details, config)
        payload = json.dumps(notice.body, separators=(",", ":"))
        todo = [p for p in range(1, len(config.urls) + 1) if p not in settled]
        async with asyncio.TaskGroup() as group:
            tasks = {
                p: group.create_task(self._post(config, p, notice, payload, info.attempt))
                for p in todo
            }
        answers = {p: task.result() for p, task in tasks.items()}
        outcomes = {**settled, **{p: a.outcome for p, a in answers.items()}}
        pending = sorted(p for p, a in answers.items() if a.transient)
        if not pending:
            return DeliveryReport(
                attempts=info.attempt, endpoints=[outcomes[p] for p in sorted(outcomes)]
            )
        done = [outcomes[p] for p in sorted(outcomes) if p not in pending]
        activity.heartbeat(_checkpoint(config, done))
        waits = [a.retry_after for a in answers.values() if a.retry_after is not None]
        first = answers[pending[0]].outcome
        raise ApplicationError(
            f"notice {notice.id} not delivered yet: endpoint(s) "
            f"{', '.join(map(str, pending))} to retry (endpoint {first.endpoint}: {first.error})",
            {
                "endpoints": [_dump(outcomes[p]) for p in sorted(outcomes)],
                "pending": pending,
                "attempt": info.attempt,
            },
            type=NOTICE_ENDPOINT_UNAVAILABLE,
            next_retry_delay=min(max(waits), NOTICE_MAX_RETRY_INTERVAL) if waits else None,
        )

    async def _post(
        self, config: NotifyConfig, position: int, notice: OutgoingNotice, payload: str,
        attempt: int,
    ) -> _Answer:  # fmt: skip
        answer = await self._exchange(config, position, notice.id, payload)
        outcome = answer.outcome
        what = f"HTTP {outcome.status}" if outcome.status is not None else outcome.error
        if outcome.delivered:
            verdict, level = "delivered", logging.INFO
        elif answer.transient:
            verdict, level = "to retry", logging.WARNING
        else:
            verdict, level = "refused for good", logging.WARNING
        logger.log(
            level,
            "notice %s (user %s, sequence %d, %s) to endpoint %d, attempt %d: %s (%s)",
            notice.id, notice.user_id, notice.sequence, notice.type.value, position, attempt,
            verdict, what,
        )  # fmt: skip
        return answer

    async def _exchange(
        self, config: NotifyConfig, position: int, notice_id: str, payload: str
    ) -> _Answer:
        now = int(time.time())  # fresh on every attempt: receivers reject stale timestamps
        signed_at = datetime.fromtimestamp(now, UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": notice_id,
            "webhook-timestamp": str(now),
            # The spec's form for several signatures: space separated, any one verifies.
            "webhook-signature": " ".join(
                signer.sign(notice_id, signed_at, payload) for signer in self._signers
            ),
        }
        timeout = config.timeout.total_seconds()
        try:
            # httpx bounds each phase by the timeout; this bounds a slow trickle as a whole.
            async with asyncio.timeout(2 * timeout):
                async with self._http.stream(
                    "POST",
                    config.urls[position - 1],
                    content=payload.encode(),
                    headers=headers,
                    timeout=timeout,
                    follow_redirects=False,
                ) as response:
                    await _drain(response)
                    status = response.status_code
                    retry_after = response.headers.get("retry-after")
        except httpx.InvalidURL:  # cannot become valid by waiting
            return _Answer(EndpointOutcome(endpoint=position, delivered=False, error="InvalidURL"))
        except Exception as err:  # a network error or a time-out: try again later
            name = type(err).__name__
            return _Answer(
                EndpointOutcome(endpoint=position, delivered=False, error=name), transient=True
            )
        if 200 <= status < 300:
            return _Answer(EndpointOutcome(endpoint=position, delivered=True, status=status))
        failed = EndpointOutcome(
            endpoint=position, delivered=False, status=status, error=_describe(status)
        )
        if status in _TRANSIENT_STATUSES or status >= 500:
            wait = _retry_after(retry_after) if status in _RETRY_AFTER_STATUSES else None
            return _Answer(failed, transient=True, retry_after=wait)
        return _Answer(failed)


async def _drain(response: httpx.Response) -> None:
    """Read (and drop) a little of the body, so a short answer leaves the connection reusable."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= _READ_AT_MOST:
            break


def _describe(status: int) -> str:
    """``HTTP 503 Service Unavailable``: the phrase is the standard one, never the receiver's."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _retry_after(value: str | None) -> timedelta | None:
    """A Retry-After header (delta-seconds or an HTTP-date) as a positive wait, capped at
    :data:`NOTICE_MAX_RETRY_INTERVAL`; None when absent, unreadable or not in the future."""
    if not value:
        return None
    text = value.strip()
    cap = NOTICE_MAX_RETRY_INTERVAL
    if text.isdigit():
        seconds = int(text)
        wait = cap if seconds >= cap.total_seconds() else timedelta(seconds=seconds)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" parses as naive: it still means UTC
            when = when.replace(tzinfo=UTC)
        wait = min(when - datetime.now(UTC), cap)
    return wait if wait > timedelta(0) else None


def _dump(outcome: EndpointOutcome) -> dict[str, Any]:
    dumped: dict[str, Any] = outcome.model_dump(mode="json", by_alias=True)
    return dumped


def _checkpoint(config: NotifyConfig, settled: list[EndpointOutcome]) -> dict[str, Any]:
    return {"urls": config.fingerprint, "settled": [_dump(o) for o in settled]}


def _settled_before(details: Sequence[Any], config: NotifyConfig) -> dict[int, EndpointOutcome]:
    """The endpoints an earlier attempt settled, from its heartbeat; nothing when the details
    are missing, unreadable or recorded under another URL list (then every endpoint is tried,
    which at worst repeats a delivery: receivers deduplicate on webhook-id)."""
    if not details or not isinstance(details[-1], dict):
        return {}
    checkpoint = details[-1]
    if checkpoint.get("urls") != config.fingerprint:
        return {}
    try:
        outcomes = [EndpointOutcome.model_validate(o) for o in checkpoint.get("settled", [])]
    except ValidationError:
        return {}
    return {o.endpoint: o for o in outcomes if 1 <= o.endpoint <= len(config.urls)}
