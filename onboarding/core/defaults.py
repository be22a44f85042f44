"""The default timeouts new onboardings start with, changeable at run time, and their audit.

Pure: the defaults workflow (``workflows/defaults.py``) holds a :class:`DefaultsState` and feeds
each accepted :class:`DefaultsChange` through :func:`apply_change`; the service and the API check
a change with :func:`check_change` before sending it. A change is validated by the same rules as
a running onboarding's (``check_timeouts_change``), so a default can never be something that
``PUT /onboardings/{user_id}/timeouts`` would refuse.

Rules, each a property test in ``tests/onboarding/core/test_defaults.py``:
- a change is accepted exactly when the same change to one onboarding's timeouts would be, and it
  names an actor; a refused change leaves the state as it was;
- applying a change sets what it names and keeps every other value;
- every accepted change is audited (actor, time, the values before and after) and advances the
  revision by one; the audit keeps the newest ``MAX_AUDIT`` entries, in order;
- ``apply_change`` never alters the state it is given.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime

from pydantic import Field

from onboarding.core.models import (
    CamelModel,
    Timeouts,
    TimeoutsChange,
    UtcDatetime,
    check_timeouts_change,
    stage_with_stall_timeout,
)

# Audit entries kept in the workflow's state (and carried through continue-as-new). One entry
# is about 600 bytes of JSON at most (two Timeouts and a 200-character actor), so the whole
# state stays near 60 KB, well under Temporal's payload limit. Older changes remain in the
# histories of earlier runs for as long as the namespace retains closed runs.
MAX_AUDIT = 100
MAX_ACTOR_LENGTH = 200


class CurrentDefaults(CamelModel):
    """The defaults in force: what a new onboarding's timeouts are copied from."""

    timeouts: Timeouts
    revision: int = Field(0, ge=0, description="Changes applied so far; 0: the initial value")
    changed_at: UtcDatetime | None = None
    changed_by: str | None = None


class AuditEntry(CamelModel):
    """One accepted change: who, when, and the defaults before and after it."""

    revision: int
    actor: str
    at: UtcDatetime
    old: Timeouts
    new: Timeouts


class DefaultsState(CamelModel):
    """What the defaults workflow holds and carries into each new run; also what it answers."""

    current: CurrentDefaults
    audit: list[AuditEntry] = Field(
        default_factory=list,
        description=f"The newest {MAX_AUDIT} changes at most, oldest first",
    )


class DefaultsChange(CamelModel):
    """A change to the defaults, and who makes it."""

    actor: str
    timeouts: TimeoutsChange


class DefaultsInput(CamelModel):
    """The defaults workflow's argument; also what its continue-as-new carries forward."""

    state: DefaultsState
    changes_per_run: int = Field(500, ge=1)


def initial_state(timeouts: Timeouts) -> DefaultsState:
    """The defaults before any change: the environment's, revision 0, nothing audited."""
    return DefaultsState(current=CurrentDefaults(timeouts=timeouts.model_copy(deep=True)))


def check_actor(actor: str) -> None:
    if not actor.strip():
        raise ValueError("actor must name who makes the change")
    if len(actor) > MAX_ACTOR_LENGTH:
        raise ValueError(f"actor must be at most {MAX_ACTOR_LENGTH} characters long")
    if any(unicodedata.category(c).startswith("C") for c in actor):
        raise ValueError("actor must not contain control characters")


def check_change(change: DefaultsChange) -> None:
    """Raise ValueError, saying why, unless ``change`` names an actor and changes something by
    the rules of a running onboarding's timeouts."""
    check_actor(change.actor)
    timeouts = change.timeouts
    if not timeouts.stall and timeouts.expire_after is None and timeouts.settle_window is None:
        raise ValueError("nothing to change: give stall timeouts, expireAfter or settleWindow")
    check_timeouts_change(timeouts)


def changed_timeouts(timeouts: Timeouts, change: TimeoutsChange) -> Timeouts:
    """``timeouts`` with what ``change`` names replaced; ``timeouts`` itself is left alone."""
    result = timeouts.model_copy(deep=True)
    for name, seconds in change.stall.items():
        result.stall[stage_with_stall_timeout(name)] = seconds
    if change.expire_after is not None:
        result.expire_after = change.expire_after
    if change.settle_window is not None:
        result.settle_window = change.settle_window
    return result


def apply_change(state: DefaultsState, change: DefaultsChange, now: datetime) -> DefaultsState:
    """The state after ``change``, made at ``now``: the new defaults and one more audit entry.
    Raises ValueError (and changes nothing) if the change is refused."""
    check_change(change)
    old = state.current.timeouts
    new = changed_timeouts(old, change.timeouts)
    revision = state.current.revision + 1
    entry = AuditEntry(
        revision=revision, actor=change.actor, at=now, old=old.model_copy(deep=True), new=new
    )
    audit = [e.model_copy(deep=True) for e in state.audit] + [entry]
    return DefaultsState(
        current=CurrentDefaults(
            timeouts=new.model_copy(deep=True),
            revision=revision,
            changed_at=now,
            changed_by=change.actor,
        ),
        audit=audit[-MAX_AUDIT:],
    )


def reset_change(actor: str, timeouts: Timeouts) -> DefaultsChange:
    """A change that sets every default to ``timeouts`` (e.g. the environment's): going back to
    the environment is an ordinary, audited change."""
    return DefaultsChange(
        actor=actor,
        timeouts=TimeoutsChange(
            stall={stage.value: seconds for stage, seconds in timeouts.stall.items()},
            expire_after=timeouts.expire_after,
            settle_window=timeouts.settle_window,
        ),
    )
