"""The dead-letter: signed webhooks that cannot be used are kept, never signalled, until an
operator replays (after a fix is deployed) or discards them."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from onboarding.core.compact import without_dropped_fields
from onboarding.core.models import CamelModel
from onboarding.core.webhook_triage import ForUser, NoUser, Unusable, event_from, triage
from onboarding.service.onboardings import EventRefused, InvalidRequest, OnboardingError
from onboarding.service.spool import DeadLetter
from onboarding.service.spooling import Deliver, Spooler

logger = logging.getLogger("onboarding.dead_letters")


class DeadLetterNotFound(OnboardingError):
    def __init__(self, id_: str) -> None:
        super().__init__(f"no dead letter {id_!r}")


class StillUnusable(OnboardingError):
    """A replay judged the body again and it still cannot be used."""


class DeadLetterSummary(CamelModel):
    id: str
    received_at: datetime
    reason: str
    event_id: str | None
    type: str | None
    size: int
    replays: int
    last_error: str | None


class DeadLetterDetail(DeadLetterSummary):
    body: str = Field(description="the signed body as received (UTF-8; undecodable bytes escaped)")


class DeadLetterPage(CamelModel):
    items: list[DeadLetterSummary]
    next_page_token: str | None


class ReplayResult(CamelModel):
    id: str
    outcome: Literal["signalled", "spooled", "onboarding_ended", "no_user"]
    user_id: str | None = None
    event_id: str


def _summary(letter: DeadLetter) -> DeadLetterSummary:
    return DeadLetterSummary(
        id=letter.id,
        received_at=letter.received_at,
        reason=letter.reason,
        event_id=letter.event_id,
        type=letter.type,
        size=len(letter.body),
        replays=letter.replays,
        last_error=letter.last_error,
    )


_TOKEN = re.compile(r"^(\S{1,40}) ([0-9a-f]{32})$")


def _page_token(letter: DeadLetter) -> str:
    """Where the next page starts: after this letter's ``(received_at, id)``, which stays a
    valid place to continue from even if the letter is discarded meanwhile."""
    text = f"{letter.received_at.isoformat()} {letter.id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _after(token: str | None) -> tuple[datetime, str] | None:
    if token is None:
        return None
    invalid = InvalidRequest("pageToken is not one this service issued")
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid from None
    match = _TOKEN.fullmatch(text)
    if match is None or base64.urlsafe_b64encode(text.encode()).decode() != token:
        raise invalid
    try:
        received_at = datetime.fromisoformat(match.group(1))
    except ValueError:
        raise invalid from None
    if received_at.tzinfo is None:
        raise invalid
    return received_at, match.group(2)


class DeadLetters:
    def __init__(self, spooler: Spooler, deliver: Deliver) -> None:
        self._spooler = spooler
        self._deliver = deliver

    async def keep(self, body: bytes, unusable: Unusable) -> DeadLetter:
        spool = await self._spooler.ready()
        letter = await spool.add_dead_letter(
            without_dropped_fields(body),
            unusable.reason,
            unusable.event_id,
            unusable.type,
            datetime.now(UTC),
        )
        logger.warning(
            "webhook %s (%s) kept as dead letter %s: %s",
            unusable.event_id or "without id",
            unusable.type or "no type",
            letter.id,
            unusable.reason,
        )
        return letter

    async def list(self, page_size: int = 50, page_token: str | None = None) -> DeadLetterPage:
        if not 1 <= page_size <= 500:
            raise InvalidRequest("pageSize must be between 1 and 500")
        spool = await self._spooler.ready()
        letters = await spool.dead_letters(page_size + 1, _after(page_token))
        more = len(letters) > page_size
        letters = letters[:page_size]
        token = _page_token(letters[-1]) if more and letters else None
        return DeadLetterPage(items=[_summary(letter) for letter in letters], next_page_token=token)

    async def get(self, id_: str) -> DeadLetterDetail:
        letter = await self._find(id_)
        return DeadLetterDetail(
            **_summary(letter).model_dump(), body=letter.body.decode("utf-8", "backslashreplace")
        )

    async def replay(self, id_: str) -> ReplayResult:
        """Judge the body again, as a fresh delivery would be; if it can now be used, deliver
        it and remove the dead letter. If not, keep it with the reason (``StillUnusable``)."""
        letter = await self._find(id_)
        verdict = triage(letter.body)
        spool = await self._spooler.ready()
        if isinstance(verdict, Unusable):
            await spool.note_replay_failure(letter.id, verdict.reason)
            raise StillUnusable(f"dead letter {letter.id} still cannot be used: {verdict.reason}")
        if isinstance(verdict, NoUser):
            await spool.remove_dead_letter(letter.id)
            return ReplayResult(id=letter.id, outcome="no_user", event_id=verdict.envelope.id)
        return await self._deliver_again(letter, verdict)

    async def _deliver_again(self, letter: DeadLetter, verdict: ForUser) -> ReplayResult:
        spool = await self._spooler.ready()
        event = event_from(verdict.envelope, datetime.now(UTC))
        try:
            result = await self._deliver(verdict.user_id, event)
        except EventRefused as err:
            await spool.note_replay_failure(letter.id, str(err))
            raise StillUnusable(f"dead letter {letter.id} still cannot be used: {err}") from err
        await spool.remove_dead_letter(letter.id)
        outcome: Literal["signalled", "spooled", "onboarding_ended"] = (
            "signalled" if result.outcome == "accepted" else result.outcome
        )
        return ReplayResult(
            id=letter.id, outcome=outcome, user_id=verdict.user_id, event_id=verdict.envelope.id
        )

    async def discard(self, id_: str) -> None:
        spool = await self._spooler.ready()
        if not await spool.remove_dead_letter(id_):
            raise DeadLetterNotFound(id_)

    async def _find(self, id_: str) -> DeadLetter:
        spool = await self._spooler.ready()
        letter = await spool.dead_letter(id_)
        if letter is None:
            raise DeadLetterNotFound(id_)
        return letter
