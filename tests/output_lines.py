"""A subprocess's output, line by line, read on a thread so that every wait has a deadline."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any


class OutputLines:
    def __init__(self, stream: Any) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        """The first line (from here on) that holds ``needle``; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} in time; saw {self.seen}")
