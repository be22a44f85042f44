"""Failed attempts per caller, in a sliding window: after ``limit`` failures within ``window``,
the caller waits until the oldest of them leaves the window. Used for the console's sign-in.

Pure and bounded: at most ``max_callers`` callers are remembered (the least recently failing
are forgotten first), so a flood of addresses cannot grow it without end."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class FailureThrottle:
    limit: int = 10
    window: timedelta = timedelta(minutes=5)
    max_callers: int = 10_000
    _failures: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= timedelta(0) or self.max_callers < 1:
            raise ValueError("limit, window and max_callers must be positive")

    def retry_after(self, caller: str, now: datetime) -> timedelta | None:
        """How long ``caller`` must wait before trying again; None if it may try now."""
        recent = self._recent(caller, now)
        if len(recent) < self.limit:
            return None
        return recent[0] + self.window - now

    def failed(self, caller: str, now: datetime) -> None:
        recent = self._recent(caller, now)
        recent.append(now)
        while len(recent) > self.limit:  # only the last ``limit`` decide the wait
            recent.popleft()
        self._failures[caller] = recent
        self._failures.move_to_end(caller)
        while len(self._failures) > self.max_callers:
            self._failures.popitem(last=False)

    def succeeded(self, caller: str) -> None:
        self._failures.pop(caller, None)

    def _recent(self, caller: str, now: datetime) -> deque[datetime]:
        recent = self._failures.get(caller, deque())
        while recent and recent[0] + self.window <= now:
            recent.popleft()
        return recent

    def __len__(self) -> int:
        return len(self._failures)
