"""What the service does with Temporal, shared by the HTTP API and the CLI: ingest events, read
one onboarding, list and count them, change timeouts, cancel. Entry points only translate a
request into one of these calls and its outcome into a response."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.smile_models import CreatedUser, CreateUserRequest, LinkToken
from onboarding.core import callback_tokens
from onboarding.core.datapoints import normalise_required_data
from onboarding.core.error_types import ONBOARDING_ENDED, SMILE_CALL_FAILED
from onboarding.core.external_metadata import check_external_metadata
from onboarding.core.identity import workflow_id_for
from onboarding.core.models import (
    CamelModel,
    CancelRequest,
    Event,
    EventBatch,
    NoticeLog,
    OnboardingInput,
    OnboardingOptions,
    OnboardingView,
    RedeliverRequest,
    Stage,
    StartRequest,
    Status,
    Timeouts,
    TimeoutsChange,
    check_timeouts_change,
)
from onboarding.core.selection import OnboardingFilter, visibility_query
from onboarding.service.caching import Snapshot
from onboarding.service.listing import BadPageToken as ListingTokenError
from onboarding.service.listing import (
    ListOrder,
    OnboardingPage,
    OnboardingSummary,
    Visibility,
    decode_newest_token,
    decode_sorted_token,
    encode_newest_token,
    encode_sorted_token,
)
from onboarding.service.settings import Settings
from workflows import search_attributes
from workflows.create_user import CreateSmileUserWorkflow
from workflows.onboarding import INGEST_SIGNAL, OnboardingWorkflow
from workflows.policies import CREATE_TOKEN, RECONCILE_NOW, longest_wait

# Updates that call Smile wait out the activity's bound, and a little more for Temporal itself.
_MARGIN = timedelta(seconds=30)
_TOKEN_WAIT = longest_wait(CREATE_TOKEN) + _MARGIN
_RECONCILE_WAIT = longest_wait(RECONCILE_NOW) + _MARGIN

_T = TypeVar("_T")
OnboardingHandle = WorkflowHandle[OnboardingWorkflow, OnboardingView]

_UNAVAILABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
}


class OnboardingError(Exception):
    """Base for outcomes an entry point turns into a clear response."""


class OnboardingNotFound(OnboardingError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"no onboarding for user {user_id!r}")


class OnboardingEnded(OnboardingError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"the onboarding for user {user_id!r} has already ended")


class InvalidChange(OnboardingError):
    """The workflow rejected an update (its validator said why)."""


class InvalidRequest(OnboardingError):
    """The request itself breaks a rule checked before anything is done (a 400)."""


class SmileCallFailed(OnboardingError):
    """Smile refused or kept failing after the retries (the message says how)."""


class CallbacksNotConfigured(OnboardingError):
    def __init__(self) -> None:
        super().__init__("ONBOARDING_CALLBACK_SECRET is not set: callback tokens cannot be issued")


class EventRefused(OnboardingError):
    """Temporal refused the signal for its size: sending it again would fail again. A single
    event is kept in the dead-letter; a batch is sent again one event at a time."""


# Temporal refuses payloads over its blob size limit (2 MB by default) as an invalid argument.
# Other invalid arguments (a namespace without the search attributes, say) are configuration
# problems that a fix cures, so only a signal this large is taken to be refused for its size.
REFUSED_SIZE = 256 * 1024


class TemporalUnavailable(OnboardingError):
    def __init__(self, cause: BaseException) -> None:
        super().__init__("Temporal is unreachable; try again shortly")
        self.__cause__ = cause


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["accepted", "onboarding_ended", "spooled"]
    workflow_id: str


class IssuedToken(CamelModel):
    """What the front end needs to open the widget and report its callbacks."""

    user_id: str
    link_token: str
    expires_at: datetime
    callback_token: str
    callback_token_expires_at: datetime


class Funnel(CamelModel):
    total: int
    by_stage: dict[Stage, int]
    by_status: dict[Status, int]


class StageStats(CamelModel):
    open: int  # in this stage and not ended
    stalled: int
    oldest: OnboardingSummary | None  # the open one longest in this stage


class Stats(Funnel):
    stages: dict[Stage, StageStats]
    as_of: datetime  # when these figures were counted (at most ONBOARDING_STATS_MAX_AGE ago)


def initial_search_attributes(now: datetime | None = None) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(search_attributes.STAGE, Stage.CREATED.value),
            SearchAttributePair(search_attributes.STATUS, Status.ACTIVE.value),
            SearchAttributePair(search_attributes.STAGE_ENTERED_AT, now or datetime.now(UTC)),
        ]
    )


def _failure_message(err: BaseException) -> str:
    """The innermost application error's message: Smile's own words, never a secret."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        if isinstance(cause, ApplicationError):
            message = cause.message
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return message


async def _settle(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """Collect the start half of a failed update-with-start, which the SDK otherwise leaves as
    a never-retrieved exception."""
    with contextlib.suppress(Exception):
        await operation.workflow_handle()


def _raise_for_rpc(err: RPCError, user_id: str | None = None) -> None:
    if err.status in _UNAVAILABLE:
        raise TemporalUnavailable(err) from err
    if err.status is RPCStatusCode.NOT_FOUND and user_id is not None:
        raise OnboardingNotFound(user_id) from err


@contextmanager
def _temporal_errors(user_id: str | None = None) -> Iterator[None]:
    """Translate the client's errors into the service's own."""
    try:
        yield
    except RPCError as err:
        _raise_for_rpc(err, user_id)
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        # The update's RPC ran out of time (or was cancelled) before Temporal answered.
        raise TemporalUnavailable(err) from err


class Onboardings:
    """The service layer over one Temporal client and the settings."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.visibility = Visibility(client, settings.rpc_timeout)
        # Stats take a hundred visibility calls or so: answered from the last count while a
        # fresh one is made in the background, once it is older than the setting.
        self._stats: Snapshot[Stats] = Snapshot(settings.stats_max_age.total_seconds())
        self._is_connected = False
        # Every new onboarding starts with these; built once, not on every webhook. Their
        # timeouts are only the initial value of the run-time defaults (self.defaults).
        self.default_options = settings.default_options()
        from onboarding.service.defaults import DefaultTimeouts  # it imports this module

        self.defaults = DefaultTimeouts(self)

    async def _connected(self) -> None:
        """A lazy client (the API starts before Temporal may be up) connects on its first call,
        and a connect that fails raises a bare ``RuntimeError``. Make that first connect here,
        where any failure means Temporal is unreachable; after it, failures are ``RPCError``s
        with a status. One call, the first time only."""
        if self._is_connected:
            return
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=self.settings.rpc_timeout
            )
        except RPCError as err:
            _raise_for_rpc(err)
            raise
        except RuntimeError as err:
            raise TemporalUnavailable(err) from err
        self._is_connected = True

    async def _new_options(self, rpc_timeout: timedelta | None = None) -> OnboardingOptions:
        """A new onboarding's options, with the run-time default timeouts (cached)."""
        timeouts = await self.defaults.timeouts(rpc_timeout)
        return self.default_options.model_copy(update={"timeouts": timeouts})

    def _handle(self, user_id: str) -> OnboardingHandle:
        return self.client.get_workflow_handle_for(OnboardingWorkflow.run, workflow_id_for(user_id))

    async def ingest(
        self, user_id: str, events: list[Event], *, rpc_timeout: timedelta | None = None
    ) -> IngestResult:
        """Signal-with-start: deliver the events, starting the onboarding if it is new. Returns
        only once Temporal has durably accepted the signal."""
        workflow_id = workflow_id_for(user_id)
        try:
            await self._connected()
            options = await self._new_options(rpc_timeout)
            with _temporal_errors():
                await self.client.start_workflow(
                    OnboardingWorkflow.run,
                    OnboardingInput(user_id=user_id, options=options),
                    id=workflow_id,
                    task_queue=self.settings.task_queue,
                    start_signal=INGEST_SIGNAL,
                    start_signal_args=[EventBatch(events=events)],
                    # A finished onboarding is never restarted empty by a late event.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=initial_search_attributes(),
                    rpc_timeout=rpc_timeout or self.settings.rpc_timeout,
                )
        except WorkflowAlreadyStartedError:
            return IngestResult("onboarding_ended", workflow_id)
        except RPCError as err:
            if err.status is RPCStatusCode.INVALID_ARGUMENT:
                size = sum(len(event.model_dump_json()) for event in events)
                if size > REFUSED_SIZE:  # over the cluster's payload limit: it always will be
                    raise EventRefused(
                        f"Temporal refused {len(events)} event(s) of {size} bytes as an invalid "
                        "argument (over its payload size limit)"
                    ) from err
            raise  # a configuration problem or a bug: the caller keeps the events to retry
        return IngestResult("accepted", workflow_id)

    async def start(
        self, request: StartRequest, idempotency_key: str | None = None
    ) -> tuple[IssuedToken, OnboardingView]:
        """Create the Smile user (retried by Temporal), then start its onboarding with
        update-with-start, and hand back the first link token and a callback token."""
        secret = self._callback_secret()
        if request.timeouts is not None:
            try:
                check_timeouts_change(request.timeouts)  # before anything is created at Smile
            except ValueError as err:
                raise InvalidChange(f"timeouts: {err}") from None
        try:
            check_external_metadata(request.external_metadata)  # Smile's limits, checked here
        except ValueError as err:
            raise InvalidRequest(f"externalMetadata: {err}") from None
        required_data = None
        if request.required_data is not None:
            try:
                required_data = normalise_required_data(request.required_data)
            except ValueError as err:
                raise InvalidRequest(f"requiredData: {err}") from None
        options = await self._new_options()  # the defaults now, before anything is created
        created = await self._create_smile_user(request, idempotency_key or uuid.uuid4().hex)
        begin = request.model_copy(
            update={"token_expires_at": created.token.expires_at, "required_data": required_data}
        )
        operation = WithStartWorkflowOperation(
            OnboardingWorkflow.run,
            OnboardingInput(user_id=created.user_id, options=options),
            id=workflow_id_for(created.user_id),
            task_queue=self.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(),
        )
        try:
            await self._connected()
            with _temporal_errors():
                await self.client.execute_update_with_start_workflow(
                    OnboardingWorkflow.begin,
                    begin,
                    start_workflow_operation=operation,
                    rpc_timeout=self.settings.rpc_timeout,
                )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == ONBOARDING_ENDED:
                await _settle(operation)
                raise OnboardingEnded(created.user_id) from err
            raise InvalidChange(_failure_message(err)) from err
        except WorkflowAlreadyStartedError as err:
            # The same Idempotency-Key again, after that user's onboarding ended.
            await _settle(operation)
            raise OnboardingEnded(created.user_id) from err
        except OnboardingError:
            await _settle(operation)
            raise
        view = await self.get(created.user_id)
        return self._issued(created.user_id, created.token, secret), view

    async def _create_smile_user(self, request: StartRequest, key: str) -> CreatedUser:
        workflow_id = f"create-smile-user-{key}"
        try:
            await self._connected()
            with _temporal_errors():
                try:
                    handle = await self.client.start_workflow(
                        CreateSmileUserWorkflow.run,
                        CreateUserRequest(external_metadata=request.external_metadata),
                        id=workflow_id,
                        task_queue=self.settings.task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        rpc_timeout=self.settings.rpc_timeout,
                    )
                except WorkflowAlreadyStartedError:
                    # The same idempotency key again: answer with what that request got.
                    handle = self.client.get_workflow_handle_for(
                        CreateSmileUserWorkflow.run, workflow_id
                    )
                return await handle.result()
        except WorkflowFailureError as err:
            raise SmileCallFailed(
                f"Smile did not create the user: {_failure_message(err)}"
            ) from err

    async def link_token(self, user_id: str) -> IssuedToken:
        secret = self._callback_secret()
        token = await self._update(
            user_id,
            lambda h, t: h.execute_update(OnboardingWorkflow.refresh_link_token, rpc_timeout=t),
            rpc_timeout=_TOKEN_WAIT,
        )
        return self._issued(user_id, token, secret)

    async def reconcile(self, user_id: str) -> OnboardingView:
        await self.reconcile_only(user_id)
        return await self.get(user_id)

    async def reconcile_only(self, user_id: str) -> None:
        """Reconcile, without reading the state back (a bulk operation's way)."""
        await self._update(
            user_id,
            lambda h, t: h.execute_update(OnboardingWorkflow.reconcile, rpc_timeout=t),
            rpc_timeout=_RECONCILE_WAIT,
        )

    def _callback_secret(self) -> SecretStr:
        """The newest callback secret: the one tokens are issued with."""
        secrets = self.settings.callback_secrets
        if not secrets:
            raise CallbacksNotConfigured()
        return secrets[0]

    def _issued(self, user_id: str, token: LinkToken, secret: SecretStr) -> IssuedToken:
        callback, callback_expires = callback_tokens.issue(
            user_id, secret, self.settings.callback_token_ttl, datetime.now(UTC)
        )
        return IssuedToken(
            user_id=user_id,
            link_token=token.access_token,
            expires_at=token.expires_at,
            callback_token=callback,
            callback_token_expires_at=callback_expires,
        )

    async def get(self, user_id: str) -> OnboardingView:
        await self._connected()
        with _temporal_errors(user_id):
            return await self._handle(user_id).query(
                OnboardingWorkflow.state, rpc_timeout=self.settings.rpc_timeout
            )

    async def notice_log(self, user_id: str) -> NoticeLog:
        await self._connected()
        with _temporal_errors(user_id):
            return await self._handle(user_id).query(
                OnboardingWorkflow.notice_log, rpc_timeout=self.settings.rpc_timeout
            )

    async def describe(self, user_id: str) -> WorkflowExecutionDescription:
        await self._connected()
        with _temporal_errors(user_id):
            return await self._handle(user_id).describe(rpc_timeout=self.settings.rpc_timeout)

    async def redeliver_notices(self, user_id: str, sequence: int | None) -> list[int]:
        request = RedeliverRequest(sequence=sequence)
        return await self._update(
            user_id, lambda h, t: h.execute_update(OnboardingWorkflow.redeliver_notices, request,
                                                   rpc_timeout=t)
        )  # fmt: skip

    async def set_timeouts(self, user_id: str, change: TimeoutsChange) -> Timeouts:
        return await self._update(
            user_id, lambda h, t: h.execute_update(OnboardingWorkflow.set_timeouts, change,
                                                   rpc_timeout=t)
        )  # fmt: skip

    async def cancel(self, user_id: str, reason: str) -> OnboardingView:
        await self.cancel_only(user_id, reason)
        return await self.get(user_id)

    async def cancel_only(self, user_id: str, reason: str) -> None:
        """Cancel, without reading the state back (a bulk operation's way)."""
        request = CancelRequest(reason=reason)
        await self._update(
            user_id, lambda h, t: h.execute_update(OnboardingWorkflow.cancel, request,
                                                   rpc_timeout=t)
        )  # fmt: skip

    async def _update(
        self,
        user_id: str,
        call: Callable[[OnboardingHandle, timedelta], Awaitable[_T]],
        rpc_timeout: timedelta | None = None,
    ) -> _T:
        """Run one update (``call`` names it by reference) and translate its failures."""
        try:
            await self._connected()
            with _temporal_errors():
                return await call(self._handle(user_id), rpc_timeout or self.settings.rpc_timeout)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            if isinstance(cause, ApplicationError) and cause.type == ONBOARDING_ENDED:
                raise OnboardingEnded(user_id) from err
            if isinstance(cause, ApplicationError) and cause.type == SMILE_CALL_FAILED:
                raise SmileCallFailed(message) from err
            raise InvalidChange(message) from err
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND and await self._exists(user_id):
                raise OnboardingEnded(user_id) from err
            _raise_for_rpc(err, user_id)
            raise

    async def _exists(self, user_id: str) -> bool:
        try:
            await self._handle(user_id).describe(rpc_timeout=self.settings.rpc_timeout)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            _raise_for_rpc(err)
            raise
        return True

    async def list(
        self,
        stage: Stage | None = None,
        status: Status | None = None,
        page_size: int = 50,
        page_token: str | None = None,
        *,
        selection: OnboardingFilter | None = None,
        order: ListOrder = ListOrder.NEWEST,
    ) -> OnboardingPage:
        """One page of the onboardings in ``selection`` (or in ``stage`` and ``status``):
        newest first, or longest in their current stage first."""
        if selection is not None and (stage is not None or status is not None):
            raise TypeError("give a selection, or a stage and status, not both")
        chosen = selection or OnboardingFilter(stage=stage, status=status)
        moment = datetime.now(UTC)
        await self._connected()
        try:
            if order is ListOrder.LONGEST_IN_STAGE:
                after = decode_sorted_token(page_token)
                with _temporal_errors():
                    items, last = await self.visibility.longest_in_stage_page(
                        chosen, page_size, after, moment
                    )
                return OnboardingPage(
                    items=items, next_page_token=encode_sorted_token(last) if last else None
                )
            token = decode_newest_token(page_token)
        except ListingTokenError:
            raise BadPageToken() from None
        with _temporal_errors():
            try:
                items, next_token = await self.visibility.newest_page(
                    chosen, page_size, token, moment
                )
            except RPCError as err:
                if token is not None and err.status in _BAD_TOKEN:
                    raise BadPageToken() from err
                raise
        return OnboardingPage(
            items=items, next_page_token=encode_newest_token(next_token) if next_token else None
        )

    async def count(
        self,
        stage: Stage | None = None,
        status: Status | None = None,
        *,
        selection: OnboardingFilter | None = None,
    ) -> int:
        """How many onboardings are in ``stage`` and/or ``status`` (both: in that stage with
        that status, e.g. stalled in ``connected``), or in ``selection``, by one count."""
        if selection is not None and (stage is not None or status is not None):
            raise TypeError("give a selection, or a stage and status, not both")
        chosen = selection or OnboardingFilter(stage=stage, status=status)
        await self._connected()
        with _temporal_errors():
            return await self.visibility.count(visibility_query(chosen))

    async def funnel(self) -> Funnel:
        # One count per stage and per status, all at once rather than one after another.
        await self._connected()
        total, *counts = await asyncio.gather(
            self.count(),
            *(self.count(stage=stage) for stage in Stage),
            *(self.count(status=status) for status in Status),
        )
        stages = len(Stage)
        return Funnel(
            total=total,
            by_stage=dict(zip(Stage, counts[:stages], strict=True)),
            by_status=dict(zip(Status, counts[stages:], strict=True)),
        )

    async def stats(self) -> Stats:
        """The funnel, and per stage how many are open, how many stalled, and the open one
        longest in it: the last figures counted (``as_of``), at most ``stats_max_age`` old
        before a fresh count is started (the first call waits for one)."""
        return await self._stats.get(self.count_stats)

    async def count_stats(self) -> Stats:
        """:meth:`stats`, counted now; every stage at once."""
        moment = datetime.now(UTC)
        funnel, *per_stage = await asyncio.gather(
            self.funnel(), *(self._stage_stats(stage, moment) for stage in Stage)
        )
        return Stats(
            **funnel.model_dump(), stages=dict(zip(Stage, per_stage, strict=True)), as_of=moment
        )

    async def _stage_stats(self, stage: Stage, moment: datetime) -> StageStats:
        open_now = OnboardingFilter(stage=stage, open_only=True)
        count_open, stalled = await asyncio.gather(
            self.count(selection=open_now),
            self.count(stage, Status.STALLED),
        )
        oldest = None
        if count_open:
            with _temporal_errors():
                oldest = await self.visibility.oldest(open_now, moment)
        return StageStats(open=count_open, stalled=stalled, oldest=oldest)


class BadPageToken(OnboardingError):
    def __init__(self) -> None:
        super().__init__("pageToken is not a token returned by this endpoint")


# What a visibility store answers to a token it did not issue.
_BAD_TOKEN = {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNKNOWN, RPCStatusCode.INTERNAL}
