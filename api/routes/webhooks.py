"""``POST /webhooks/smile``: verify, validate, and make the event durable as a signal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.client_ip import allowed, client_ip
from api.deps import IngestDep, SettingsDep
from api.problems import Problem, ProblemError, describe_validation_error
from onboarding.core.compact import compact_data
from onboarding.core.identity import is_valid_user_id, user_id_in
from onboarding.core.models import CamelModel, Event, SmileWebhook, Source
from onboarding.core.signatures import SIGNATURE_HEADER, verify

logger = logging.getLogger("onboarding.webhooks")
router = APIRouter(tags=["webhooks"])


class WebhookAck(CamelModel):
    accepted: bool = True
    outcome: Literal["signalled", "onboarding_ended", "no_user"]
    event_id: str
    type: str
    user_id: str | None = None
    workflow_id: str | None = None
    detail: str


def _event_from(envelope: SmileWebhook) -> Event:
    return Event(
        id=envelope.id,
        type=envelope.type,
        source=Source.WEBHOOK,
        created_at=envelope.created_at,
        received_at=datetime.now(UTC),
        data=compact_data(envelope.data),
        version=envelope.version,
    )


@router.post(
    "/webhooks/smile",
    status_code=202,
    response_model=WebhookAck,
    responses={
        200: {"model": WebhookAck, "description": "Accepted; the onboarding had already ended"},
        400: {"model": Problem, "description": "Malformed JSON or envelope"},
        401: {"model": Problem, "description": "Missing or invalid Smile-Signature"},
        403: {"model": Problem, "description": "Sender not in SMILE_WEBHOOK_ALLOWED_IPS"},
        413: {"model": Problem, "description": "Body over the size limit"},
        503: {"model": Problem, "description": "Temporal unreachable; Smile will retry"},
    },
)
async def receive_smile_webhook(
    request: Request, settings: SettingsDep, ingest: IngestDep
) -> JSONResponse:
    """Receive one Smile webhook. Answers 2xx only once the event is durable in Temporal."""
    peer = request.client.host if request.client else None
    address = client_ip(
        peer, request.headers.get("X-Forwarded-For"), request.app.state.trusted_proxies
    )
    if not allowed(address, request.app.state.webhook_allow):
        logger.warning("webhook refused from %s: not in SMILE_WEBHOOK_ALLOWED_IPS", address)
        raise ProblemError(403, "webhooks are accepted only from Smile's addresses")
    body = await request.body()  # bounded by SMILE_WEBHOOK_MAX_BYTES in api/limits.py
    if not verify(body, request.headers.get(SIGNATURE_HEADER), settings.webhook_secrets):
        raise ProblemError(401, f"missing or invalid {SIGNATURE_HEADER} header")
    try:
        envelope = SmileWebhook.model_validate_json(body)
    except ValidationError as err:
        raise ProblemError(
            400, f"not a Smile webhook envelope: {describe_validation_error(err)}"
        ) from None
    user_id = user_id_in(envelope.data)
    if user_id is None:
        logger.info(
            "webhook %s (%s) carries no userId; matched no onboarding", envelope.id, envelope.type
        )
        ack = WebhookAck(
            outcome="no_user",
            event_id=envelope.id,
            type=envelope.type,
            detail="event carries no userId: accepted and logged, matched no onboarding",
        )
        return JSONResponse(ack.model_dump(by_alias=True), status_code=202)
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise ProblemError(400, "data.userId must be a Smile user id (letters, digits, . _ : @ -)")
    result = await ingest(user_id, _event_from(envelope))
    ended = result.outcome == "onboarding_ended"
    ack = WebhookAck(
        outcome="onboarding_ended" if ended else "signalled",
        event_id=envelope.id,
        type=envelope.type,
        user_id=user_id,
        workflow_id=result.workflow_id,
        detail=(
            "the onboarding for this user has already ended; event not recorded"
            if ended
            else "event recorded durably"
        ),
    )
    return JSONResponse(ack.model_dump(by_alias=True), status_code=200 if ended else 202)
