"""The spool's contract: where verified events wait while Temporal cannot take them, and where
signed webhooks that cannot be used are kept for an operator (the dead-letter).

Both backends (SQLite for one machine, PostgreSQL for replicas sharing one spool) implement
:class:`Spool`. Every write commits before it returns: the API acknowledges an event only
after ``put`` has returned. Times are aware UTC datetimes given by the caller (the backends
store them as epoch seconds), so tests can drive the clock."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


class SpoolError(Exception):
    """Base for what the spool cannot do."""


class SpoolFull(SpoolError):
    """Taking the event would go beyond ``ONBOARDING_SPOOL_MAX_BYTES``."""


class SpoolUnavailable(SpoolError):
    """The storage cannot be written (disk, database down, …); the message says why, without
    any event content or connection secret."""


@dataclass(frozen=True)
class SpooledEvent:
    seq: int  # assigned by the store; breaks ties between equal ``created_at``
    user_id: str
    event_id: str
    created_at: datetime  # the event's own time (Smile's createdAt): the drain order per user
    spooled_at: datetime
    payload: bytes  # the verified event as the workflow will receive it (``Event`` JSON)
    attempts: int  # failed deliveries so far


@dataclass(frozen=True)
class SpoolStats:
    depth: int  # events waiting
    bytes: int  # their payloads' total size
    oldest_spooled_at: datetime | None
    dead_letters: int


@dataclass(frozen=True)
class DeadLetter:
    id: str  # assigned by the store (uuid4 hex)
    received_at: datetime
    reason: str  # why it could not be used, in our words
    event_id: str | None  # when the body had one
    type: str | None
    body: bytes  # the signed body exactly as received
    replays: int  # replays tried that failed again
    last_error: str | None


class Spool(abc.ABC):
    """One spool backend. ``open`` creates the schema if needed (idempotent; several processes
    may open one spool at once); ``close`` releases connections. An ``open`` that failed (or was
    cancelled) leaves the spool closed: ``open`` may be called again later, and ``close`` does
    nothing."""

    max_bytes: int

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def put(
        self, user_id: str, event_id: str, created_at: datetime, payload: bytes, now: datetime
    ) -> None:
        """Store one event durably (committed when this returns). Raises :class:`SpoolFull`
        when the spool's payload bytes would exceed ``max_bytes`` (the check may use a figure
        up to a second old), :class:`SpoolUnavailable` when the storage fails."""

    @abc.abstractmethod
    async def claim(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[SpooledEvent]:
        """Lease the oldest waiting events of one user to ``owner`` until ``lease_until`` and
        return them in ``(created_at, seq)`` order, at most ``limit``. Empty when no user is
        claimable.

        A user is claimable when none of their events holds a live lease (``lease_until >
        now``): while one owner holds a batch of a user, or a released batch waits for its
        ``retry_at``, no event of that user is claimed, not even one that arrived meanwhile.
        So one user's events are delivered by one owner at a time, in order, and a newer event
        never overtakes an older one. Of the claimable users, the one whose oldest event has
        the earliest ``(created_at, seq)`` is chosen. Two owners never hold events of one user
        at once (unless a lease ran out while its owner was still at work)."""

    @abc.abstractmethod
    async def remove(self, seqs: Sequence[int]) -> None:
        """Delete delivered events (unknown seqs are ignored)."""

    @abc.abstractmethod
    async def release(self, seqs: Sequence[int], retry_at: datetime) -> None:
        """A delivery failed: count an attempt and keep the events unclaimable until
        ``retry_at`` (and with them every other event of their user: see :meth:`claim`)."""

    @abc.abstractmethod
    async def stats(self) -> SpoolStats: ...

    @abc.abstractmethod
    async def check_writable(self) -> None:
        """Prove a write commits (for /readyz); raises :class:`SpoolUnavailable` if not."""

    # --- the dead-letter -----------------------------------------------------------------

    @abc.abstractmethod
    async def add_dead_letter(
        self,
        body: bytes,
        reason: str,
        event_id: str | None,
        type_: str | None,
        now: datetime,
    ) -> DeadLetter:
        """Keep a signed body that cannot be used (committed when this returns); not subject
        to ``max_bytes`` (a signed event is never refused for space). Raises
        :class:`SpoolUnavailable` when the storage fails."""

    @abc.abstractmethod
    async def dead_letters(
        self, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[DeadLetter]:
        """At most ``limit``, oldest first by ``(received_at, id)``, starting after ``after``:
        the ``(received_at, id)`` of the last one of the previous page. The cursor is a place,
        not a letter: a page continues correctly even if that letter was removed meanwhile."""

    @abc.abstractmethod
    async def dead_letter(self, id_: str) -> DeadLetter | None: ...

    @abc.abstractmethod
    async def remove_dead_letter(self, id_: str) -> bool:
        """True when it existed."""

    @abc.abstractmethod
    async def note_replay_failure(self, id_: str, error: str) -> None:
        """A replay failed again: count it and keep the reason."""
