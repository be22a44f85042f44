"""How a Smile user maps onto a Temporal workflow, and what a valid user id looks like."""

from __future__ import annotations

import re
from typing import Any

WORKFLOW_ID_PREFIX = "onboarding-"
WORKFLOW_TYPE = "OnboardingWorkflow"
# Smile user ids look like "tenantId-123abc…"; anything else is refused before it reaches Temporal.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
_USER_ID = re.compile(USER_ID_PATTERN)


def workflow_id_for(user_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{user_id}"


def user_id_from(workflow_id: str) -> str:
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


def is_valid_user_id(user_id: str) -> bool:
    return bool(_USER_ID.fullmatch(user_id))


def user_id_in(data: dict[str, Any]) -> object | None:
    """Where a webhook names its user: ``data.userId``, or ``data.session.userId`` for the
    session events (``USER_SESSION_COMPLETED``, ``USER_SESSION_RESET``). Not yet validated."""
    found: object | None = data.get("userId")
    session = data.get("session")
    if found is None and isinstance(session, dict):
        found = session.get("userId")
    return found
