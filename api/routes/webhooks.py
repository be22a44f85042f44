"""``POST /webhooks/smile``: verify, judge, and make the event durable: a signal, a spooled
event while Temporal cannot take it, or a dead letter when it cannot be used."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.client_ip import allowed, client_ip
from api.deps import IngestDep, SettingsDep
from api.metrics import ApiMetrics
from api.problems import Problem, ProblemError
from onboarding.core.models import CamelModel
from onboarding.core.signatures import SIGNATURE_HEADER, verify
from onboarding.core.webhook_triage import NoUser, Triage, Unusable, event_from, triage
from onboarding.service.dead_letters import DeadLetters
from onboarding.service.onboardings import EventRefused
from onboarding.service.spool import SpoolError
from onboarding.service.spooling import DurableIngest

logger = logging.getLogger("onboarding.webhooks")
router = APIRouter(tags=["webhooks"])


class WebhookAck(CamelModel):
    accepted: bool = True
    outcome: Literal["signalled", "spooled", "onboarding_ended", "no_user", "dead_lettered"]
    event_id: str | None
    type: str | None
    user_id: str | None = None
    workflow_id: str | None = None
    dead_letter_id: str | None = None
    detail: str


_DETAIL = {
    "accepted": "event recorded durably",
    "spooled": "Temporal cannot take it now: event kept in the spool, delivered once it can",
    "onboarding_ended": "the onboarding for this user has already ended; event not recorded",
}


def _ack(ack: WebhookAck, status: int = 202) -> JSONResponse:
    return JSONResponse(ack.model_dump(by_alias=True), status_code=status)


async def _dead_letter(request: Request, body: bytes, unusable: Unusable) -> WebhookAck:
    dead_letters: DeadLetters = request.app.state.dead_letters  # not a dependency: rarely used
    letter = await dead_letters.keep(body, unusable)
    return WebhookAck(
        outcome="dead_lettered",
        event_id=unusable.event_id,
        type=unusable.type,
        dead_letter_id=letter.id,
        detail=f"signed but cannot be used, kept for an operator: {unusable.reason}",
    )


@router.post(
    "/webhooks/smile",
    status_code=202,
    response_model=WebhookAck,
    responses={
        200: {"model": WebhookAck, "description": "Accepted; the onboarding had already ended"},
        401: {"model": Problem, "description": "Missing or invalid Smile-Signature"},
        403: {"model": Problem, "description": "Sender not in SMILE_WEBHOOK_ALLOWED_IPS"},
        413: {"model": Problem, "description": "Body over the size limit"},
        503: {
            "model": Problem,
            "description": "Neither Temporal nor the spool can take the event; Smile will retry",
        },
    },
)
async def receive_smile_webhook(
    request: Request, settings: SettingsDep, ingest: IngestDep
) -> JSONResponse:
    """Receive one Smile webhook. Answers 2xx only once the event is durable: signalled to its
    onboarding in Temporal, or kept in the spool while Temporal cannot take it, or (signed but
    unusable) kept in the dead-letter for an operator."""
    metrics: ApiMetrics = request.app.state.metrics
    peer = request.client.host if request.client else None
    address = client_ip(
        peer, request.headers.get("X-Forwarded-For"), request.app.state.trusted_proxies
    )
    if not allowed(address, request.app.state.webhook_allow):
        logger.warning("webhook refused from %s: not in SMILE_WEBHOOK_ALLOWED_IPS", address)
        metrics.webhook(None, "refused_ip")
        raise ProblemError(403, "webhooks are accepted only from Smile's addresses")
    body = await request.body()  # bounded by SMILE_WEBHOOK_MAX_BYTES in api/limits.py
    signature = request.headers.get(SIGNATURE_HEADER)
    if not verify(body, signature, settings.webhook_secrets):
        metrics.signature_failure("webhooks", "missing" if signature is None else "invalid")
        metrics.webhook(None, "refused_signature")
        raise ProblemError(401, f"missing or invalid {SIGNATURE_HEADER} header")
    verdict = triage(body)
    try:
        ack, status = await _accept(request, body, verdict, ingest)
    except SpoolError:  # neither Temporal nor the spool could take it: 503, Smile retries
        metrics.webhook(_type_of(verdict), "refused_unavailable")
        raise
    metrics.webhook(ack.type, ack.outcome)
    return _ack(ack, status)


def _type_of(verdict: Triage) -> str | None:
    return verdict.type if isinstance(verdict, Unusable) else verdict.envelope.type


async def _accept(
    request: Request, body: bytes, verdict: Triage, ingest: DurableIngest
) -> tuple[WebhookAck, int]:
    """A verified webhook made durable: its acknowledgement and status."""
    if isinstance(verdict, Unusable):
        return await _dead_letter(request, body, verdict), 202
    envelope = verdict.envelope
    if isinstance(verdict, NoUser):
        logger.info(
            "webhook %s (%s) carries no userId; matched no onboarding", envelope.id, envelope.type
        )
        ack = WebhookAck(
            outcome="no_user",
            event_id=envelope.id,
            type=envelope.type,
            detail="event carries no userId: accepted and logged, matched no onboarding",
        )
        return ack, 202
    try:
        result = await ingest(verdict.user_id, event_from(envelope, datetime.now(UTC)))
    except EventRefused as err:
        unusable = Unusable(str(err), envelope.id, envelope.type)
        return await _dead_letter(request, body, unusable), 202
    outcome: Literal["signalled", "spooled", "onboarding_ended"] = (
        "signalled" if result.outcome == "accepted" else result.outcome
    )
    ack = WebhookAck(
        outcome=outcome,
        event_id=envelope.id,
        type=envelope.type,
        user_id=verdict.user_id,
        workflow_id=result.workflow_id,
        detail=_DETAIL[result.outcome],
    )
    return ack, 200 if outcome == "onboarding_ended" else 202
