"""Load generators for the ingest benchmark: cheap enough not to be what is measured.

- ``closed_loop``: C lanes, each sending its next item as soon as the previous one is answered,
  for a fixed time (both sides of a comparison run for the same time);
- ``open_loop``: a fixed arrival rate, independent of how fast answers come (honest latency);
- ``RawHttp``: HTTP/1.1 over asyncio streams on keep-alive connections, sending requests that
  were built and signed beforehand, so a request costs one write and one read;
- ``run_wrk``: ``wrk`` with a Lua script cycling through a file of pre-signed requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Send = Callable[[Any], Awaitable[None]]


@dataclass
class Figures:
    label: str
    events: int
    seconds: float
    latencies_ms: list[float]
    generator: str = "python"
    reported: dict[int, float] | None = None  # percentiles as the load generator reported them
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process in the run

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def pct(self, q: int) -> float:
        if self.reported is not None:
            return self.reported[q]
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def cpu_ms_per_event(self) -> dict[str, float]:
        return {name: s * 1000 / self.events for name, s in self.cpu.items() if self.events}


async def closed_loop(
    label: str, items: Sequence[Any], concurrency: int, send: Send, seconds: float | None = None
) -> Figures:
    """C lanes, as fast as answers come; stops when the items run out or ``seconds`` pass.
    Items go out in order, so a burst's events are in flight together."""
    latencies: list[float] = []
    queue = list(reversed(items))
    deadline = time.perf_counter() + seconds if seconds else float("inf")

    async def lane() -> None:
        while queue and time.perf_counter() < deadline:
            item = queue.pop()
            started = time.perf_counter()
            await send(item)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Figures(label, len(latencies), time.perf_counter() - started, latencies)


async def open_loop(label: str, items: Sequence[Any], rate: float, send: Send) -> Figures:
    """Item i is sent at start + i/rate, whether or not earlier ones have been answered."""
    latencies: list[float] = []

    async def one(item: Any) -> None:
        started = time.perf_counter()
        await send(item)
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    started = time.perf_counter()
    for index, item in enumerate(items):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(item)))
    await asyncio.gather(*tasks)
    return Figures(label, len(items), time.perf_counter() - started, latencies)


def webhook_request(host: str, body: bytes, signature: str) -> bytes:
    head = (
        f"POST /webhooks/smile HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Smile-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class RawHttp:
    """Keep-alive HTTP/1.1 connections to one server; ``send`` writes a pre-built request and
    reads the answer (Content-Length bodies only, which is what uvicorn sends here)."""

    generator = "asyncio raw HTTP/1.1 client (keep-alive, pre-built requests)"

    def __init__(self, host: str, port: int, expect: int = 202) -> None:
        self.host, self.port, self.expect = host, port, expect
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof():
                return reader, writer, True
            writer.close()
        return *await self._open(), False

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._all.append(writer)
        return reader, writer

    async def send(self, request: bytes) -> None:
        reader, writer, reused = await self._connection()
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
            # The server closed it while idle (uvicorn's keep-alive timeout) before reading
            # this request: send it again on a new connection.
            writer.close()
            reader, writer = await self._open()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        self._idle.append((reader, writer))
        if status != self.expect:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

    async def aclose(self) -> None:
        for writer in self._all:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._all.clear()
        self._idle.clear()


WRK_SCRIPT = """
local requests, threads, counter = {}, {}, 0
function setup(thread)
  counter = counter + 1; thread:set("id", counter); table.insert(threads, thread)
end
function init(args)
  local n, i = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if i % n == id - 1 then
      local sig, body = line:match("^(%S+) (.*)$")
      table.insert(requests, wrk.format("POST", "/webhooks/smile",
        {["Smile-Signature"] = sig, ["Content-Type"] = "application/json"}, body))
    end
    i = i + 1
  end
  next_index = 0
end
function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
function done(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.errors.status))
end
"""


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    label: str,
    url: str,
    signed: list[tuple[bytes, str]],
    concurrency: int,
    workdir: Path,
    seconds: float,
) -> tuple[Figures, float]:
    """wrk for a fixed time, cycling through the pre-signed requests (wrk cannot stop after a
    count); there should be more requests than the service takes in that time, or later ones
    repeat. Returns the figures and wrk's own CPU seconds."""
    threads = max(1, min(2, concurrency))
    data = workdir / f"{label.replace(' ', '_')}.txt"
    data.write_text("".join(f"{s} {b.decode()}\n" for b, s in signed))
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    cpu_before = children_cpu_seconds()
    out = subprocess.run(
        [
            wrk,
            "-t", str(threads),
            "-c", str(concurrency),
            "-d", f"{seconds:.0f}s",
            "--timeout", "30s",
            "-s", str(script),
            url,
            "--", str(data), str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    wrk_cpu = children_cpu_seconds() - cpu_before
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    requests, duration_us, p50, p95, p99, errors = (int(v) for v in line.split()[1:])
    if errors:
        raise RuntimeError(f"{label}: {errors} answers were not 2xx")
    reported = {50: p50 / 1000, 95: p95 / 1000, 99: p99 / 1000}
    figures = Figures(label, requests, duration_us / 1e6, [], generator="wrk", reported=reported)
    return figures, wrk_cpu
