"""Bulk operations, from the service's side: start one (or find the same one running), read its
progress, stop it; and the ports its activities reach Temporal through, built on the
service's own operations so each onboarding is changed exactly as one at a time would be."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.bulk import PageInput, PageItem, PageOutput
from onboarding.core.bulk import (
    BULK_ID_PREFIX,
    BulkKind,
    BulkProgress,
    BulkRequest,
    BulkState,
    ItemResult,
    Outcome,
    bulk_id,
)
from onboarding.core.models import CamelModel
from onboarding.core.selection import OnboardingFilter
from onboarding.service.onboardings import (
    OnboardingEnded,
    OnboardingError,
    OnboardingNotFound,
    Onboardings,
    TemporalUnavailable,
)
from onboarding.service.settings import Settings
from workflows.bulk import BulkInput, BulkOperationWorkflow

logger = logging.getLogger("onboarding.bulk")

_FAILED = {WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TIMED_OUT}


class BulkStatus(CamelModel):
    id: str
    request: BulkRequest
    progress: BulkProgress
    remaining: int
    started_at: datetime | None = None
    closed_at: datetime | None = None


class BulkNotFound(OnboardingError):
    def __init__(self, operation_id: str) -> None:
        super().__init__(f"no bulk operation {operation_id!r}")


class FleetPorts:
    """What the bulk activities need, done by the service layer (used inside the worker)."""

    def __init__(self, onboardings: Onboardings) -> None:
        self.onboardings = onboardings

    async def count(self, selection: OnboardingFilter) -> int:
        return await self.onboardings.count(selection=selection)

    async def page(self, request: PageInput) -> PageOutput:
        token = base64.urlsafe_b64decode(request.token) if request.token else None
        visibility = self.onboardings.visibility
        items, next_token = await visibility.newest_page(
            request.selection, request.size, token, datetime.now(UTC)
        )
        return PageOutput(
            items=[PageItem(user_id=i.user_id, ended=i.ended_at is not None) for i in items],
            next_token=base64.urlsafe_b64encode(next_token).decode() if next_token else None,
        )

    async def apply(self, request: BulkRequest, user_id: str) -> ItemResult:
        """The change to one onboarding, as a result. Only an unreachable Temporal raises (the
        activity is retried); anything else is that onboarding's outcome, so a chunk can never
        be retried for ever over something a retry cannot cure."""
        try:
            if request.kind is BulkKind.TIMEOUTS:
                assert request.timeouts is not None  # checked when the request was made
                await self.onboardings.set_timeouts(user_id, request.timeouts)
            elif request.kind is BulkKind.RECONCILE:
                await self.onboardings.reconcile_only(user_id)
            else:
                await self.onboardings.cancel_only(user_id, request.reason or "cancelled in bulk")
        except TemporalUnavailable:
            raise
        except (OnboardingEnded, OnboardingNotFound):
            return ItemResult(user_id=user_id, outcome=Outcome.SKIPPED_ENDED)
        except OnboardingError as err:  # refused or failed: its message is written for people
            return ItemResult(user_id=user_id, outcome=Outcome.FAILED, error=str(err)[:300])
        except Exception as err:
            # Its type only, here and in the progress: a message might carry personal data.
            logger.error("bulk %s failed for user %s: %s", request.kind.value, user_id,
                         type(err).__name__)  # fmt: skip
            return ItemResult(user_id=user_id, outcome=Outcome.FAILED, error=type(err).__name__)
        return ItemResult(user_id=user_id, outcome=Outcome.DONE)


class BulkOperations:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def submit(self, request: BulkRequest) -> BulkStatus:
        """Start the operation, or find the same one already running (same id)."""
        operation_id = bulk_id(request)
        try:
            await self.client.start_workflow(
                BulkOperationWorkflow.run,
                BulkInput(request=request),
                id=operation_id,
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                rpc_timeout=self.settings.rpc_timeout,
            )
        except RPCError as err:
            raise TemporalUnavailable(err) from err
        return await self.get(operation_id)

    async def get(self, operation_id: str) -> BulkStatus:
        handle = self._handle(operation_id)
        try:
            description = await handle.describe(rpc_timeout=self.settings.rpc_timeout)
            if description.status is WorkflowExecutionStatus.RUNNING:
                progress = await handle.query(
                    BulkOperationWorkflow.progress, rpc_timeout=self.settings.rpc_timeout
                )
            elif description.status is WorkflowExecutionStatus.COMPLETED:
                progress = await handle.result(rpc_timeout=self.settings.rpc_timeout)
            else:  # ended from outside, or failed: its last progress is what it did
                progress = (await self._last_progress(operation_id)) or BulkProgress()
                progress.state = (
                    BulkState.FAILED if description.status in _FAILED else BulkState.CANCELLED
                )
            request = await handle.query(
                BulkOperationWorkflow.request, rpc_timeout=self.settings.rpc_timeout
            )
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise BulkNotFound(operation_id) from None
            raise TemporalUnavailable(err) from err
        return BulkStatus(
            id=operation_id,
            request=request,
            progress=progress,
            remaining=progress.remaining,
            started_at=description.start_time,
            closed_at=description.close_time,
        )

    async def _last_progress(self, operation_id: str) -> BulkProgress | None:
        try:
            return await self._handle(operation_id).query(
                BulkOperationWorkflow.progress, rpc_timeout=self.settings.rpc_timeout
            )
        except (RPCError, WorkflowFailureError):
            return None

    async def stop(self, operation_id: str) -> BulkStatus:
        """Stop after the chunk in hand (an operation that already ended stays as it ended)."""
        handle = self._handle(operation_id)
        try:
            await handle.execute_update(
                BulkOperationWorkflow.stop, rpc_timeout=self.settings.rpc_timeout
            )
        except WorkflowUpdateFailedError:
            pass  # it ended while being asked: get() reports how
        except RPCError as err:
            # A closed workflow answers an update "not found" too: get() tells the two apart.
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise TemporalUnavailable(err) from err
        return await self.get(operation_id)

    def _handle(self, operation_id: str) -> WorkflowHandle[BulkOperationWorkflow, BulkProgress]:
        if not operation_id.startswith(BULK_ID_PREFIX):
            raise BulkNotFound(operation_id)
        return self.client.get_workflow_handle_for(BulkOperationWorkflow.run, operation_id)
