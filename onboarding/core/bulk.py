"""Bulk operations over the fleet: what is asked (change timeouts, reconcile or cancel every
onboarding a filter selects), how it is named, and how its progress adds up.

Pure. The bulk workflow pages through the selection and hands chunks to an activity that
applies the existing validated update to each onboarding; these rules say what each outcome
counts as, and which id one request gets, so that the same request twice is one operation."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field, model_validator

from onboarding.core.models import CamelModel, TimeoutsChange, check_timeouts_change
from onboarding.core.selection import OnboardingFilter

# Onboardings handled per second, unless the request asks otherwise, and the range it may ask.
DEFAULT_RATE = 50.0
MIN_RATE = 0.1
MAX_RATE = 500.0
DEFAULT_CHUNK = 50
MAX_CHUNK = 500
# Onboardings read per visibility page (the servers' usual maximum is 1,000).
DEFAULT_PAGE = 500
MAX_PAGE = 1000
# Changes in flight at once within a chunk (the rate still bounds how many start per second),
# and the longest one change may take (a reconcile waits on Smile up to about 2.5 minutes).
CONCURRENCY = 16
ITEM_WAIT = timedelta(minutes=3)
# Failures kept with their reason (the count keeps counting past these).
MAX_FAILURE_SAMPLES = 20
BULK_ID_PREFIX = "bulk-"


class BulkKind(StrEnum):
    TIMEOUTS = "timeouts"
    RECONCILE = "reconcile"
    CANCEL = "cancel"


class BulkRequest(CamelModel):
    kind: BulkKind
    selection: OnboardingFilter
    # "In their stage for longer than": resolved against the clock when the operation begins,
    # so the same request submitted twice while it runs is still one operation.
    waiting_longer_than: timedelta | None = None
    # Nothing narrows the selection, on purpose: every onboarding there is.
    everything: bool = False
    timeouts: TimeoutsChange | None = None  # for ``timeouts``
    reason: str | None = Field(None, max_length=500)  # for ``cancel``
    rate: float = Field(DEFAULT_RATE, ge=MIN_RATE, le=MAX_RATE)
    # Onboardings per activity: a stop waits for the chunk in hand (about chunk / rate seconds).
    chunk: int = Field(DEFAULT_CHUNK, ge=1, le=MAX_CHUNK)
    page: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    actor: str = Field("operator", max_length=100)

    @model_validator(mode="after")
    def _fits_kind(self) -> BulkRequest:
        if self.kind is BulkKind.TIMEOUTS:
            change = self.timeouts
            if change is None or (
                not change.stall and change.expire_after is None and change.settle_window is None
            ):
                raise ValueError("a bulk timeouts change needs at least one timeout to set")
            check_timeouts_change(change)  # the rule each onboarding's update applies
        elif self.timeouts is not None:
            raise ValueError(f"timeouts are only for a timeouts change, not {self.kind.value}")
        if self.kind is not BulkKind.CANCEL and self.reason is not None:
            raise ValueError("a reason is only for cancelling")
        narrowed = not self.selection.is_everything or self.waiting_longer_than is not None
        if not narrowed and not self.everything:
            raise ValueError(
                "give at least one of stage, status, started_after, started_before or "
                "waiting_longer_than; or say everything to mean every onboarding"
            )
        if narrowed and self.everything:
            raise ValueError("everything takes no other criterion")
        if self.waiting_longer_than is not None and self.waiting_longer_than <= timedelta(0):
            raise ValueError("waiting_longer_than must be a positive duration")
        if self.selection.entered_stage_before is not None or self.selection.open_only:
            raise ValueError("give waiting_longer_than, not a resolved time, for a bulk change")
        return self


def resolve(request: BulkRequest, now: datetime) -> OnboardingFilter:
    """The selection as it stands at ``now``: "waiting longer than" becomes a time."""
    if request.waiting_longer_than is None:
        return request.selection
    return request.selection.model_copy(
        update={"entered_stage_before": now - request.waiting_longer_than}
    )


def bulk_id(request: BulkRequest) -> str:
    """The same change over the same selection is the same operation, whoever asks and at what
    rate: submitting it again while it runs finds the running one."""
    what = request.model_dump(
        mode="json",
        include={"kind", "selection", "waiting_longer_than", "everything", "timeouts", "reason"},
    )
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
    return f"{BULK_ID_PREFIX}{request.kind.value}-{digest[:16]}"


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED_ENDED = "skipped_ended"  # it ended before its turn: nothing to change
    FAILED = "failed"


class ItemResult(CamelModel):
    user_id: str
    outcome: Outcome
    error: str | None = None


class Failure(CamelModel):
    user_id: str
    error: str


class BulkState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # stopped on request (or terminated) before it was through
    FAILED = "failed"  # the workflow itself failed or timed out: a bug or an outside limit


class BulkProgress(CamelModel):
    state: BulkState = BulkState.RUNNING
    matched: int = 0  # counted when it began; the selection may change while it runs
    done: int = 0
    skipped_ended: int = 0
    failed: int = 0
    failures: list[Failure] = Field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.done + self.skipped_ended + self.failed

    @property
    def remaining(self) -> int:
        """Still to handle (running), or left undone (stopped); none once completed, since the
        selection may have shrunk since it was counted."""
        if self.state is BulkState.COMPLETED:
            return 0
        return max(self.matched - self.handled, 0)


def begun(matched: int, still_open: int) -> BulkProgress:
    """The progress when counted at the start. Those already ended are skipped there and then:
    the pages that follow read only open onboardings, so an onboarding that ends while the
    operation runs leaves them rather than being read twice."""
    return BulkProgress(matched=matched, skipped_ended=max(matched - still_open, 0))


def chunk_time_limit(request: BulkRequest) -> timedelta:
    """How long one chunk may take in all: its share of the rate, and every change in it
    taking as long as one may, ``CONCURRENCY`` at a time, with a minute to spare."""
    rounds = -(-request.chunk // CONCURRENCY)
    return (
        timedelta(seconds=request.chunk / request.rate) + ITEM_WAIT * rounds + timedelta(minutes=1)
    )


def tally(progress: BulkProgress, results: list[ItemResult]) -> BulkProgress:
    """``progress`` with a chunk's results added; the first failures are kept with reasons."""
    added = progress.model_copy(deep=True)
    for result in results:
        if result.outcome is Outcome.DONE:
            added.done += 1
        elif result.outcome is Outcome.SKIPPED_ENDED:
            added.skipped_ended += 1
        else:
            added.failed += 1
            if len(added.failures) < MAX_FAILURE_SAMPLES:
                added.failures.append(Failure(user_id=result.user_id, error=result.error or ""))
    return added


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
