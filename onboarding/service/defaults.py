"""The run-time default timeouts: read them (cached) for every new onboarding, show them with their
audit, change them. Shared by the API, the CLI and the start paths of :class:`Onboardings`.

Where they live: one long-lived workflow (``workflows/defaults.py``), id
``ONBOARDING_DEFAULTS_ID``. The first read that finds none starts it with this process's
environment values (``ONBOARDING_STALL_TIMEOUTS``, ``ONBOARDING_EXPIRE_AFTER``,
``ONBOARDING_SETTLE_WINDOW``); from then on the stored value wins over any process's environment.

Reading for a start costs one describe call (the workflow publishes its current defaults in its
memo, so no worker has to answer), at most once per ``ONBOARDING_DEFAULTS_TTL`` per process, and
by one caller at a time: concurrent starts share the read. A change made through this process
is seen by its next start at once; a change made through another process is seen here within
the TTL. Showing the audit and changing go to the workflow (a query, an update), so they need a
worker. Temporal's failures come out as the service's own errors (``TemporalUnavailable``, …)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from onboarding.core.defaults import (
    CurrentDefaults,
    DefaultsChange,
    DefaultsInput,
    DefaultsState,
    check_change,
    initial_state,
    reset_change,
)
from onboarding.core.models import Timeouts, TimeoutsChange
from onboarding.service.onboardings import (
    InvalidChange,
    _raise_for_rpc,
    _temporal_errors,
)
from workflows.defaults import DEFAULTS_MEMO, DefaultsWorkflow, memo_for

if TYPE_CHECKING:
    from onboarding.service.onboardings import Onboardings

DefaultsHandle = WorkflowHandle[DefaultsWorkflow, None]


@dataclass(frozen=True)
class _Cached:
    current: CurrentDefaults
    read_at: float  # time.monotonic()


class DefaultTimeouts:
    """The defaults of one :class:`Onboardings` (its client, settings and initial options)."""

    def __init__(self, onboardings: Onboardings) -> None:
        self._onboardings = onboardings
        self._cached: _Cached | None = None
        self._reading = asyncio.Lock()

    @property
    def workflow_id(self) -> str:
        return self._onboardings.settings.defaults_id

    @property
    def initial(self) -> Timeouts:
        """This process's environment values: the defaults before anyone changed them."""
        return self._onboardings.default_options.timeouts

    def _handle(self) -> DefaultsHandle:
        return self._onboardings.client.get_workflow_handle_for(
            DefaultsWorkflow.run, self.workflow_id
        )

    def forget(self) -> None:
        """Drop the cached value: the next start reads the defaults again."""
        self._cached = None

    # --- the start path ---------------------------------------------------------------------

    async def timeouts(self, rpc_timeout: timedelta | None = None) -> Timeouts:
        """The timeouts a new onboarding starts with: cached for ``ONBOARDING_DEFAULTS_TTL``."""
        return (await self.current(rpc_timeout)).timeouts

    async def current(self, rpc_timeout: timedelta | None = None) -> CurrentDefaults:
        ttl = self._onboardings.settings.defaults_ttl.total_seconds()
        cached = self._cached
        if cached is not None and time.monotonic() - cached.read_at < ttl:
            return cached.current
        async with self._reading:  # one read at a time; those who waited take its result
            cached = self._cached
            if cached is not None and time.monotonic() - cached.read_at < ttl:
                return cached.current
            read_at = time.monotonic()
            current = await self._read(rpc_timeout or self._onboardings.settings.rpc_timeout)
            self._keep(current, read_at)
            return current

    def _keep(self, current: CurrentDefaults, read_at: float) -> None:
        # A read that started before a change made here must not bring the old value back; one
        # that started after it is the truth, whatever its revision (a terminated workflow
        # starts again at revision 0, and that must be cached too).
        cached = self._cached
        if (
            cached is None
            or read_at >= cached.read_at
            or current.revision >= cached.current.revision
        ):
            self._cached = _Cached(current, read_at)

    async def _read(self, rpc_timeout: timedelta) -> CurrentDefaults:
        """The current defaults from the workflow's memo, starting the workflow if there is none
        (or the last one was terminated: a reset to the environment's values)."""
        await self._onboardings._connected()
        with _temporal_errors():
            current = await self._describe(rpc_timeout)
            if current is None:
                await self._start(rpc_timeout)
                current = await self._describe(rpc_timeout)
        if current is None:  # started and ended at once: only an operator could do that
            return CurrentDefaults(timeouts=self.initial)
        return current

    async def _describe(self, rpc_timeout: timedelta) -> CurrentDefaults | None:
        try:
            description = await self._handle().describe(rpc_timeout=rpc_timeout)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        if description.status is not WorkflowExecutionStatus.RUNNING:
            return None
        current: CurrentDefaults = await description.memo_value(
            DEFAULTS_MEMO, type_hint=CurrentDefaults
        )
        return current

    async def _start(self, rpc_timeout: timedelta) -> None:
        initial = initial_state(self.initial)
        await self._onboardings.client.start_workflow(
            DefaultsWorkflow.run,
            DefaultsInput(state=initial),
            id=self.workflow_id,
            task_queue=self._onboardings.settings.task_queue,
            # Started by whichever process reads first; another racing it uses this one.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            memo=memo_for(initial.current),
            rpc_timeout=rpc_timeout,
        )

    # --- showing and changing ---------------------------------------------------------------

    async def state(self) -> DefaultsState:
        """The current defaults and their audit (a query: needs a worker)."""
        rpc_timeout = self._onboardings.settings.rpc_timeout
        await self.current()  # makes sure the workflow exists
        with _temporal_errors():
            state = await self._handle().query(DefaultsWorkflow.state, rpc_timeout=rpc_timeout)
        self._keep(state.current, time.monotonic())
        return state

    async def change(self, timeouts: TimeoutsChange, actor: str) -> DefaultsState:
        """Change the defaults as ``actor``; new onboardings of this process get them at once.
        Raises ``InvalidChange`` for a change the rules refuse (nothing is changed then)."""
        change = DefaultsChange(actor=actor, timeouts=timeouts)
        try:
            check_change(change)
        except ValueError as err:
            raise InvalidChange(str(err)) from None
        rpc_timeout = self._onboardings.settings.rpc_timeout
        for attempt in (1, 2):
            await self.current()  # makes sure the workflow exists
            try:
                with _temporal_errors():
                    current = await self._handle().execute_update(
                        DefaultsWorkflow.change, change, rpc_timeout=rpc_timeout
                    )
                break
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                raise InvalidChange(
                    cause.message if isinstance(cause, ApplicationError) else str(cause)
                ) from err
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND and attempt == 1:
                    self.forget()  # terminated since it was read: start it again, then change
                    continue
                _raise_for_rpc(err)
                raise
        self._keep(current, time.monotonic())
        return await self.state()

    async def reset(self, actor: str) -> DefaultsState:
        """Set every default back to this process's environment values, as an audited change."""
        return await self.change(reset_change(actor, self.initial).timeouts, actor)
