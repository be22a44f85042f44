"""One bulk operation as a durable workflow: count the selection, page through it, apply the
change a chunk at a time, report progress, stop when asked.

Its id comes from the request (:func:`onboarding.core.bulk.bulk_id`), so the same request twice
is one operation while it runs; run again after it ended, it changes nothing that is already
as asked (every change it applies is idempotent, and ended onboardings are skipped)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities, ChunkInput, PageInput
    from onboarding.core.bulk import (
        BulkProgress,
        BulkRequest,
        BulkState,
        ItemResult,
        Outcome,
        begun,
        chunk_time_limit,
        chunks,
        resolve,
        tally,
    )
    from onboarding.core.models import CamelModel
    from onboarding.core.selection import OnboardingFilter

# Pages per run before continuing as new, so a fleet of any size keeps a short history.
PAGES_PER_RUN = 20

# Retried until they succeed (Temporal away, a worker restarting): an operation waits, not
# fails. What can never succeed is a result (failed, with why), not an error, so it cannot spin.
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
READ = workflow.ActivityConfig(start_to_close_timeout=timedelta(seconds=60), retry_policy=_RETRY)
# A worker that died mid-chunk is noticed within this (the chunk beats every few seconds).
HEARTBEAT = timedelta(seconds=20)


class BulkInput(CamelModel):
    request: BulkRequest
    # Carried by continue-as-new: the selection as resolved when the operation began, where
    # the next page starts, and what was done so far.
    selection: OnboardingFilter | None = None
    token: str | None = None
    progress: BulkProgress | None = None


@workflow.defn(name="BulkOperationWorkflow")
class BulkOperationWorkflow:
    @workflow.init
    def __init__(self, input: BulkInput) -> None:
        self._request = input.request
        self._progress = input.progress or BulkProgress()
        self._stopping = False

    @workflow.run
    async def run(self, input: BulkInput) -> BulkProgress:
        selection = input.selection or resolve(self._request, workflow.now())
        if input.progress is None:
            counted = await workflow.execute_activity_method(
                BulkActivities.count, selection, **READ
            )
            self._progress = begun(counted.matched, counted.still_open)
        # Only open onboardings are paged: one that ends while this runs leaves the pages
        # (it was counted as ended at the start, or is skipped when its turn comes).
        still_open = selection.model_copy(update={"open_only": True})
        apply = workflow.ActivityConfig(
            start_to_close_timeout=chunk_time_limit(self._request),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=_RETRY,
        )
        token, through = input.token, False
        for _ in range(PAGES_PER_RUN):
            page = await workflow.execute_activity_method(
                BulkActivities.page,
                PageInput(selection=still_open, token=token, size=self._request.page),
                **READ,
            )
            ended = [
                ItemResult(user_id=item.user_id, outcome=Outcome.SKIPPED_ENDED)
                for item in page.items
                if item.ended
            ]
            self._progress = tally(self._progress, ended)
            todo = chunks([item.user_id for item in page.items if not item.ended],
                          self._request.chunk)  # fmt: skip
            while todo and not self._stopping:
                output = await workflow.execute_activity_method(
                    BulkActivities.apply,
                    ChunkInput(request=self._request, user_ids=todo.pop(0)),
                    **apply,
                )
                self._progress = tally(self._progress, output.results)
            token = page.next_token
            through = token is None and not todo
            if through or self._stopping:
                break
        if not through:
            # A stop asked for now is answered here, not carried into a new run.
            await workflow.wait_condition(
                lambda: self._stopping or workflow.all_handlers_finished()
            )
        if not through and not self._stopping:
            workflow.continue_as_new(
                BulkInput(
                    request=self._request,
                    selection=selection,
                    token=token,
                    progress=self._progress,
                )
            )
        # A stop that came after the last chunk stopped nothing: the operation went through.
        self._progress.state = BulkState.COMPLETED if through else BulkState.CANCELLED
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    @workflow.query
    def progress(self) -> BulkProgress:
        return self._progress

    @workflow.query
    def request(self) -> BulkRequest:
        return self._request

    @workflow.update
    async def stop(self) -> BulkProgress:
        """Stop after the chunk in hand; answers with the progress once stopped."""
        self._stopping = True
        await workflow.wait_condition(lambda: self._progress.state is not BulkState.RUNNING)
        return self._progress
