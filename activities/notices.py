"""Notices to the operator: a stalled onboarding is reported as one structured log line, which
log shippers and alerting pick up; the list endpoints show the same users by status."""

from __future__ import annotations

import logging
from datetime import datetime

from temporalio import activity

from onboarding.core.models import CamelModel, Stage

logger = logging.getLogger("onboarding.notices")


class StallNotice(CamelModel):
    user_id: str
    stage: Stage
    stage_entered_at: datetime
    deadline: datetime
    stalls: int


@activity.defn(name="notify_stalled")
async def notify_stalled(notice: StallNotice) -> None:
    logger.warning(
        "onboarding stalled: user=%s stage=%s since=%s deadline=%s stalls=%d",
        notice.user_id,
        notice.stage.value,
        notice.stage_entered_at.isoformat(),
        notice.deadline.isoformat(),
        notice.stalls,
    )


ALL_ACTIVITIES = [notify_stalled]
