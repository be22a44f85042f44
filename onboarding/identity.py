"""How a Smile user maps onto a Temporal workflow, and what a valid user id looks like."""

from __future__ import annotations

import re

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
